//! The database layout and its forward migrations, keyed by `PRAGMA user_version`.
//!
//! A PhoneHome database carries `PRAGMA application_id = 0x50484F4D` ("PHOM") so that a
//! random SQLite file is refused with a clear message instead of being written into.
//! Migrations only ever move forward; a database written by a newer PhoneHome is refused
//! rather than misread.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// "PHOM" as a big-endian 32-bit integer.
pub const APPLICATION_ID: i32 = 0x5048_4F4D;

/// How long a connection waits for another writer (a `mark` while a capture commits).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Each entry moves the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: sessions, markers, apps, flows, dns, settings, and views for sqlite3/pandas users.
    r#"
CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    started     INTEGER NOT NULL,   -- ms since the Unix epoch (wall clock)
    ended       INTEGER,            -- NULL while running or after a crash
    heartbeat   INTEGER,            -- last commit of the writer, ms
    device      TEXT,
    os          TEXT,
    app_version TEXT,
    note        TEXT
);
CREATE TABLE markers (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL REFERENCES sessions(id),
    time        INTEGER NOT NULL,
    label       TEXT NOT NULL
);
CREATE INDEX markers_session ON markers(session_id, time);
CREATE TABLE apps (
    session_id  INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    PRIMARY KEY (session_id, uid)
) WITHOUT ROWID;
CREATE TABLE flows (
    id               INTEGER PRIMARY KEY,
    session_id       INTEGER NOT NULL,
    flow_id          INTEGER NOT NULL,
    uid              INTEGER,
    app              TEXT,              -- copy of apps.name, so per-app views need no join
    proto            TEXT NOT NULL,
    src_ip           TEXT NOT NULL,
    src_port         INTEGER NOT NULL,
    dst_ip           TEXT NOT NULL,
    dst_port         INTEGER NOT NULL,
    hostname         TEXT,
    hostname_source  TEXT,
    l7               TEXT,
    alpn             TEXT,              -- comma-separated
    tls_version      TEXT,
    ech              INTEGER NOT NULL DEFAULT 0,
    http_method      TEXT,
    vendor           TEXT,
    category         TEXT,
    category_guessed INTEGER NOT NULL DEFAULT 0,
    purpose          TEXT,
    country          TEXT,
    asn              INTEGER,
    as_name          TEXT,
    first_seen       INTEGER NOT NULL,  -- ms
    last_seen        INTEGER NOT NULL,  -- ms
    bytes_up         INTEGER NOT NULL DEFAULT 0,
    bytes_down       INTEGER NOT NULL DEFAULT 0,
    packets_up       INTEGER NOT NULL DEFAULT 0,
    packets_down     INTEGER NOT NULL DEFAULT 0,
    close_reason     TEXT,              -- NULL while open
    cleartext        INTEGER NOT NULL DEFAULT 0,
    leaks            TEXT,              -- comma-separated identifier kinds, NULL when none
    UNIQUE (session_id, flow_id)
);
CREATE INDEX flows_first_seen ON flows(first_seen);
CREATE INDEX flows_session_time ON flows(session_id, first_seen);
CREATE INDEX flows_session_uid ON flows(session_id, uid);
CREATE TABLE dns (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL,
    time        INTEGER NOT NULL,
    uid         INTEGER,
    app         TEXT,
    flow_id     INTEGER,
    client_ip   TEXT NOT NULL,
    client_port INTEGER NOT NULL,
    server_ip   TEXT NOT NULL,
    server_port INTEGER NOT NULL,
    transport   TEXT NOT NULL,
    query       TEXT NOT NULL,
    qtype       INTEGER NOT NULL,
    rcode       INTEGER,
    answers     TEXT,                  -- comma-separated
    answer_ips  TEXT,                  -- comma-separated
    ttl         INTEGER
);
CREATE INDEX dns_session_time ON dns(session_id, time);
CREATE INDEX dns_time ON dns(time);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Sums of flows per (session, hour, uid, endpoint, country), kept exact by triggers, so
-- views and timelines read a small table instead of every flow; windows cut at markers add
-- the flows of their partial hours.
CREATE TABLE rollup (
    session_id      INTEGER NOT NULL,
    bucket          INTEGER NOT NULL,   -- first_seen floored to the hour, ms
    uid             INTEGER NOT NULL,   -- -1 when unknown
    endpoint        TEXT NOT NULL,      -- hostname, or dst_ip when unnamed
    country         TEXT NOT NULL,      -- '' when unknown
    named           INTEGER NOT NULL,
    vendor          TEXT,
    category        TEXT,
    purpose         TEXT,
    flows           INTEGER NOT NULL,
    bytes_up        INTEGER NOT NULL,
    bytes_down      INTEGER NOT NULL,
    cleartext_flows INTEGER NOT NULL,
    leak_flows      INTEGER NOT NULL,
    guessed_flows   INTEGER NOT NULL,
    ech_flows       INTEGER NOT NULL,
    dot_flows       INTEGER NOT NULL,
    first_contact   INTEGER NOT NULL,
    last_contact    INTEGER NOT NULL,
    PRIMARY KEY (session_id, bucket, uid, endpoint, country)
) WITHOUT ROWID;
-- The same per whole session: whole-session and all-history views read only this.
CREATE TABLE session_rollup (
    session_id      INTEGER NOT NULL,
    uid             INTEGER NOT NULL,   -- -1 when unknown
    endpoint        TEXT NOT NULL,      -- hostname, or dst_ip when unnamed
    country         TEXT NOT NULL,      -- '' when unknown
    named           INTEGER NOT NULL,
    vendor          TEXT,
    category        TEXT,
    purpose         TEXT,
    flows           INTEGER NOT NULL,
    bytes_up        INTEGER NOT NULL,
    bytes_down      INTEGER NOT NULL,
    cleartext_flows INTEGER NOT NULL,
    leak_flows      INTEGER NOT NULL,
    guessed_flows   INTEGER NOT NULL,
    ech_flows       INTEGER NOT NULL,
    dot_flows       INTEGER NOT NULL,
    first_contact   INTEGER NOT NULL,
    last_contact    INTEGER NOT NULL,
    PRIMARY KEY (session_id, uid, endpoint, country)
) WITHOUT ROWID;
CREATE TRIGGER flows_rollup_insert AFTER INSERT ON flows BEGIN
    INSERT INTO rollup VALUES (NEW.session_id, NEW.first_seen - NEW.first_seen % 3600000, coalesce(NEW.uid, -1),
        coalesce(NEW.hostname, NEW.dst_ip), coalesce(NEW.country, ''), NEW.hostname IS NOT NULL,
        NEW.vendor, NEW.category, NEW.purpose, 1, NEW.bytes_up, NEW.bytes_down, NEW.cleartext,
        NEW.leaks IS NOT NULL, NEW.category_guessed, NEW.ech, NEW.dst_port = 853, NEW.first_seen,
        NEW.last_seen)
    ON CONFLICT DO UPDATE SET flows = flows + 1, bytes_up = bytes_up + excluded.bytes_up,
        bytes_down = bytes_down + excluded.bytes_down,
        cleartext_flows = cleartext_flows + excluded.cleartext_flows,
        leak_flows = leak_flows + excluded.leak_flows,
        guessed_flows = guessed_flows + excluded.guessed_flows,
        ech_flows = ech_flows + excluded.ech_flows, dot_flows = dot_flows + excluded.dot_flows,
        named = excluded.named, vendor = coalesce(excluded.vendor, vendor),
        category = coalesce(excluded.category, category), purpose = coalesce(excluded.purpose, purpose),
        first_contact = min(first_contact, excluded.first_contact),
        last_contact = max(last_contact, excluded.last_contact);
    INSERT INTO session_rollup VALUES (NEW.session_id, coalesce(NEW.uid, -1),
        coalesce(NEW.hostname, NEW.dst_ip), coalesce(NEW.country, ''), NEW.hostname IS NOT NULL,
        NEW.vendor, NEW.category, NEW.purpose, 1, NEW.bytes_up, NEW.bytes_down, NEW.cleartext,
        NEW.leaks IS NOT NULL, NEW.category_guessed, NEW.ech, NEW.dst_port = 853, NEW.first_seen,
        NEW.last_seen)
    ON CONFLICT DO UPDATE SET flows = flows + 1, bytes_up = bytes_up + excluded.bytes_up,
        bytes_down = bytes_down + excluded.bytes_down,
        cleartext_flows = cleartext_flows + excluded.cleartext_flows,
        leak_flows = leak_flows + excluded.leak_flows,
        guessed_flows = guessed_flows + excluded.guessed_flows,
        ech_flows = ech_flows + excluded.ech_flows, dot_flows = dot_flows + excluded.dot_flows,
        named = excluded.named, vendor = coalesce(excluded.vendor, vendor),
        category = coalesce(excluded.category, category), purpose = coalesce(excluded.purpose, purpose),
        first_contact = min(first_contact, excluded.first_contact),
        last_contact = max(last_contact, excluded.last_contact);
END;
CREATE TRIGGER flows_rollup_update AFTER UPDATE OF uid, hostname, dst_ip, country, first_seen, session_id, vendor, category, purpose,
    bytes_up, bytes_down, cleartext, leaks, category_guessed, ech, last_seen ON flows
WHEN coalesce(OLD.uid, -1) = coalesce(NEW.uid, -1)
    AND coalesce(OLD.hostname, OLD.dst_ip) = coalesce(NEW.hostname, NEW.dst_ip)
    AND coalesce(OLD.country, '') = coalesce(NEW.country, '') AND OLD.first_seen = NEW.first_seen
    AND OLD.session_id = NEW.session_id BEGIN
    UPDATE rollup SET bytes_up = bytes_up + NEW.bytes_up - OLD.bytes_up,
        bytes_down = bytes_down + NEW.bytes_down - OLD.bytes_down,
        cleartext_flows = cleartext_flows + NEW.cleartext - OLD.cleartext,
        leak_flows = leak_flows + (NEW.leaks IS NOT NULL) - (OLD.leaks IS NOT NULL),
        guessed_flows = guessed_flows + NEW.category_guessed - OLD.category_guessed,
        ech_flows = ech_flows + NEW.ech - OLD.ech,
        vendor = coalesce(NEW.vendor, vendor), category = coalesce(NEW.category, category),
        purpose = coalesce(NEW.purpose, purpose), last_contact = max(last_contact, NEW.last_seen)
    WHERE session_id = NEW.session_id AND bucket = NEW.first_seen - NEW.first_seen % 3600000 AND uid = coalesce(NEW.uid, -1)
        AND endpoint = coalesce(NEW.hostname, NEW.dst_ip) AND country = coalesce(NEW.country, '');
    UPDATE session_rollup SET bytes_up = bytes_up + NEW.bytes_up - OLD.bytes_up,
        bytes_down = bytes_down + NEW.bytes_down - OLD.bytes_down,
        cleartext_flows = cleartext_flows + NEW.cleartext - OLD.cleartext,
        leak_flows = leak_flows + (NEW.leaks IS NOT NULL) - (OLD.leaks IS NOT NULL),
        guessed_flows = guessed_flows + NEW.category_guessed - OLD.category_guessed,
        ech_flows = ech_flows + NEW.ech - OLD.ech,
        vendor = coalesce(NEW.vendor, vendor), category = coalesce(NEW.category, category),
        purpose = coalesce(NEW.purpose, purpose), last_contact = max(last_contact, NEW.last_seen)
    WHERE session_id = NEW.session_id AND uid = coalesce(NEW.uid, -1)
        AND endpoint = coalesce(NEW.hostname, NEW.dst_ip) AND country = coalesce(NEW.country, '');
END;
CREATE TRIGGER flows_rollup_rekey AFTER UPDATE OF uid, hostname, dst_ip, country, first_seen, session_id, vendor, category, purpose,
    bytes_up, bytes_down, cleartext, leaks, category_guessed, ech, last_seen ON flows
WHEN NOT (coalesce(OLD.uid, -1) = coalesce(NEW.uid, -1)
    AND coalesce(OLD.hostname, OLD.dst_ip) = coalesce(NEW.hostname, NEW.dst_ip)
    AND coalesce(OLD.country, '') = coalesce(NEW.country, '') AND OLD.first_seen = NEW.first_seen
    AND OLD.session_id = NEW.session_id) BEGIN
    UPDATE rollup SET flows = flows - 1, bytes_up = bytes_up - OLD.bytes_up,
        bytes_down = bytes_down - OLD.bytes_down, cleartext_flows = cleartext_flows - OLD.cleartext,
        leak_flows = leak_flows - (OLD.leaks IS NOT NULL),
        guessed_flows = guessed_flows - OLD.category_guessed, ech_flows = ech_flows - OLD.ech,
        dot_flows = dot_flows - (OLD.dst_port = 853)
    WHERE session_id = OLD.session_id AND bucket = OLD.first_seen - OLD.first_seen % 3600000 AND uid = coalesce(OLD.uid, -1)
        AND endpoint = coalesce(OLD.hostname, OLD.dst_ip) AND country = coalesce(OLD.country, '');
    DELETE FROM rollup WHERE session_id = OLD.session_id AND bucket = OLD.first_seen - OLD.first_seen % 3600000 AND uid = coalesce(OLD.uid, -1)
        AND endpoint = coalesce(OLD.hostname, OLD.dst_ip) AND country = coalesce(OLD.country, '') AND flows <= 0;
    INSERT INTO rollup VALUES (NEW.session_id, NEW.first_seen - NEW.first_seen % 3600000, coalesce(NEW.uid, -1),
        coalesce(NEW.hostname, NEW.dst_ip), coalesce(NEW.country, ''), NEW.hostname IS NOT NULL,
        NEW.vendor, NEW.category, NEW.purpose, 1, NEW.bytes_up, NEW.bytes_down, NEW.cleartext,
        NEW.leaks IS NOT NULL, NEW.category_guessed, NEW.ech, NEW.dst_port = 853, NEW.first_seen,
        NEW.last_seen)
    ON CONFLICT DO UPDATE SET flows = flows + 1, bytes_up = bytes_up + excluded.bytes_up,
        bytes_down = bytes_down + excluded.bytes_down,
        cleartext_flows = cleartext_flows + excluded.cleartext_flows,
        leak_flows = leak_flows + excluded.leak_flows,
        guessed_flows = guessed_flows + excluded.guessed_flows,
        ech_flows = ech_flows + excluded.ech_flows, dot_flows = dot_flows + excluded.dot_flows,
        named = excluded.named, vendor = coalesce(excluded.vendor, vendor),
        category = coalesce(excluded.category, category), purpose = coalesce(excluded.purpose, purpose),
        first_contact = min(first_contact, excluded.first_contact),
        last_contact = max(last_contact, excluded.last_contact);
    UPDATE session_rollup SET flows = flows - 1, bytes_up = bytes_up - OLD.bytes_up,
        bytes_down = bytes_down - OLD.bytes_down, cleartext_flows = cleartext_flows - OLD.cleartext,
        leak_flows = leak_flows - (OLD.leaks IS NOT NULL),
        guessed_flows = guessed_flows - OLD.category_guessed, ech_flows = ech_flows - OLD.ech,
        dot_flows = dot_flows - (OLD.dst_port = 853)
    WHERE session_id = OLD.session_id AND uid = coalesce(OLD.uid, -1)
        AND endpoint = coalesce(OLD.hostname, OLD.dst_ip) AND country = coalesce(OLD.country, '');
    DELETE FROM session_rollup WHERE session_id = OLD.session_id AND uid = coalesce(OLD.uid, -1)
        AND endpoint = coalesce(OLD.hostname, OLD.dst_ip) AND country = coalesce(OLD.country, '') AND flows <= 0;
    INSERT INTO session_rollup VALUES (NEW.session_id, coalesce(NEW.uid, -1),
        coalesce(NEW.hostname, NEW.dst_ip), coalesce(NEW.country, ''), NEW.hostname IS NOT NULL,
        NEW.vendor, NEW.category, NEW.purpose, 1, NEW.bytes_up, NEW.bytes_down, NEW.cleartext,
        NEW.leaks IS NOT NULL, NEW.category_guessed, NEW.ech, NEW.dst_port = 853, NEW.first_seen,
        NEW.last_seen)
    ON CONFLICT DO UPDATE SET flows = flows + 1, bytes_up = bytes_up + excluded.bytes_up,
        bytes_down = bytes_down + excluded.bytes_down,
        cleartext_flows = cleartext_flows + excluded.cleartext_flows,
        leak_flows = leak_flows + excluded.leak_flows,
        guessed_flows = guessed_flows + excluded.guessed_flows,
        ech_flows = ech_flows + excluded.ech_flows, dot_flows = dot_flows + excluded.dot_flows,
        named = excluded.named, vendor = coalesce(excluded.vendor, vendor),
        category = coalesce(excluded.category, category), purpose = coalesce(excluded.purpose, purpose),
        first_contact = min(first_contact, excluded.first_contact),
        last_contact = max(last_contact, excluded.last_contact);
END;
CREATE TRIGGER flows_rollup_delete AFTER DELETE ON flows BEGIN
    UPDATE rollup SET flows = flows - 1, bytes_up = bytes_up - OLD.bytes_up,
        bytes_down = bytes_down - OLD.bytes_down, cleartext_flows = cleartext_flows - OLD.cleartext,
        leak_flows = leak_flows - (OLD.leaks IS NOT NULL),
        guessed_flows = guessed_flows - OLD.category_guessed, ech_flows = ech_flows - OLD.ech,
        dot_flows = dot_flows - (OLD.dst_port = 853)
    WHERE session_id = OLD.session_id AND bucket = OLD.first_seen - OLD.first_seen % 3600000 AND uid = coalesce(OLD.uid, -1)
        AND endpoint = coalesce(OLD.hostname, OLD.dst_ip) AND country = coalesce(OLD.country, '');
    DELETE FROM rollup WHERE session_id = OLD.session_id AND bucket = OLD.first_seen - OLD.first_seen % 3600000 AND uid = coalesce(OLD.uid, -1)
        AND endpoint = coalesce(OLD.hostname, OLD.dst_ip) AND country = coalesce(OLD.country, '') AND flows <= 0;
    UPDATE session_rollup SET flows = flows - 1, bytes_up = bytes_up - OLD.bytes_up,
        bytes_down = bytes_down - OLD.bytes_down, cleartext_flows = cleartext_flows - OLD.cleartext,
        leak_flows = leak_flows - (OLD.leaks IS NOT NULL),
        guessed_flows = guessed_flows - OLD.category_guessed, ech_flows = ech_flows - OLD.ech,
        dot_flows = dot_flows - (OLD.dst_port = 853)
    WHERE session_id = OLD.session_id AND uid = coalesce(OLD.uid, -1)
        AND endpoint = coalesce(OLD.hostname, OLD.dst_ip) AND country = coalesce(OLD.country, '');
    DELETE FROM session_rollup WHERE session_id = OLD.session_id AND uid = coalesce(OLD.uid, -1)
        AND endpoint = coalesce(OLD.hostname, OLD.dst_ip) AND country = coalesce(OLD.country, '') AND flows <= 0;
END;

CREATE VIEW app_summary AS
SELECT session_id, coalesce(app, 'uid ' || uid, 'unknown') AS app,
       count(*) AS flows, sum(bytes_up) AS bytes_up, sum(bytes_down) AS bytes_down,
       count(DISTINCT CASE WHEN lower(vendor) = 'xiaomi' THEN hostname END) AS xiaomi_endpoints,
       group_concat(DISTINCT category) AS categories,
       group_concat(DISTINCT country) AS countries,
       min(first_seen) AS first_contact, max(last_seen) AS last_contact,
       sum(cleartext) AS cleartext_flows
FROM flows GROUP BY session_id, 2;
CREATE VIEW domain_summary AS
SELECT session_id, coalesce(hostname, dst_ip) AS domain, vendor, category,
       count(*) AS flows, sum(bytes_up) AS bytes_up, sum(bytes_down) AS bytes_down,
       count(DISTINCT coalesce(app, uid)) AS apps,
       min(first_seen) AS first_contact, max(last_seen) AS last_contact
FROM flows GROUP BY session_id, 2;
CREATE VIEW country_summary AS
SELECT session_id, coalesce(country, '??') AS country,
       count(*) AS flows, sum(bytes_up) AS bytes_up, sum(bytes_down) AS bytes_down,
       count(DISTINCT coalesce(app, uid)) AS apps
FROM flows GROUP BY session_id, 2;
"#,
    r#"
-- 2: a contact is a connection (issue 8.1). A plain DNS flow is a lookup: it reached the
-- resolver, not the name it asked about. `flows.lookup` says which flows are lookups and
-- `flows.endpoint` is the key every view groups by: the resolver's address for a lookup, the
-- hostname (or address when unnamed) otherwise. The rollups count lookups in `dns_flows`;
-- contacts = flows - dns_flows. Recorded DNS flows lose the Xiaomi attribution of the name
-- they asked about (the name stays in `hostname` and in the dns table).
ALTER TABLE flows ADD COLUMN lookup INTEGER GENERATED ALWAYS AS
    (coalesce(l7 = 'dns' OR hostname_source = 'dns-query', 0)) VIRTUAL;
ALTER TABLE flows ADD COLUMN endpoint TEXT GENERATED ALWAYS AS
    (CASE WHEN lookup THEN dst_ip ELSE coalesce(hostname, dst_ip) END) VIRTUAL;
DROP TRIGGER flows_rollup_insert;
DROP TRIGGER flows_rollup_update;
DROP TRIGGER flows_rollup_rekey;
DROP TRIGGER flows_rollup_delete;
UPDATE flows SET vendor = NULL, category = NULL, category_guessed = 0, purpose = 'DNS' WHERE lookup;
ALTER TABLE rollup ADD COLUMN dns_flows INTEGER NOT NULL DEFAULT 0;
ALTER TABLE session_rollup ADD COLUMN dns_flows INTEGER NOT NULL DEFAULT 0;
DELETE FROM rollup;
INSERT INTO rollup (session_id, bucket, uid, endpoint, country, named, vendor, category, purpose, flows, bytes_up, bytes_down, cleartext_flows, leak_flows, guessed_flows, ech_flows, dot_flows, first_contact, last_contact, dns_flows)
SELECT session_id, first_seen - first_seen % 3600000, coalesce(uid, -1), endpoint, coalesce(country, ''),
    max(hostname IS NOT NULL AND NOT lookup), max(vendor), max(category), max(purpose), count(*),
    sum(bytes_up), sum(bytes_down), sum(cleartext), sum(leaks IS NOT NULL), sum(category_guessed),
    sum(ech), sum(dst_port = 853), min(first_seen), max(last_seen), sum(lookup)
FROM flows GROUP BY 1, 2, 3, 4, 5;
DELETE FROM session_rollup;
INSERT INTO session_rollup (session_id, uid, endpoint, country, named, vendor, category, purpose, flows, bytes_up, bytes_down, cleartext_flows, leak_flows, guessed_flows, ech_flows, dot_flows, first_contact, last_contact, dns_flows)
SELECT session_id, coalesce(uid, -1), endpoint, coalesce(country, ''),
    max(hostname IS NOT NULL AND NOT lookup), max(vendor), max(category), max(purpose), count(*),
    sum(bytes_up), sum(bytes_down), sum(cleartext), sum(leaks IS NOT NULL), sum(category_guessed),
    sum(ech), sum(dst_port = 853), min(first_seen), max(last_seen), sum(lookup)
FROM flows GROUP BY 1, 2, 3, 4;
CREATE INDEX dns_session_query ON dns(session_id, query);
CREATE TRIGGER flows_rollup_insert AFTER INSERT ON flows BEGIN
    INSERT INTO rollup (session_id, bucket, uid, endpoint, country, named, vendor, category, purpose, flows, bytes_up, bytes_down, cleartext_flows, leak_flows, guessed_flows, ech_flows, dot_flows, first_contact, last_contact, dns_flows)
    VALUES (NEW.session_id, NEW.first_seen - NEW.first_seen % 3600000, coalesce(NEW.uid, -1), NEW.endpoint, coalesce(NEW.country, ''),
        NEW.hostname IS NOT NULL AND NOT NEW.lookup, NEW.vendor, NEW.category, NEW.purpose, 1,
        NEW.bytes_up, NEW.bytes_down, NEW.cleartext, NEW.leaks IS NOT NULL, NEW.category_guessed,
        NEW.ech, NEW.dst_port = 853, NEW.first_seen, NEW.last_seen, NEW.lookup)
    ON CONFLICT DO UPDATE SET flows = flows + 1, bytes_up = bytes_up + excluded.bytes_up,
        bytes_down = bytes_down + excluded.bytes_down,
        cleartext_flows = cleartext_flows + excluded.cleartext_flows,
        leak_flows = leak_flows + excluded.leak_flows,
        guessed_flows = guessed_flows + excluded.guessed_flows,
        ech_flows = ech_flows + excluded.ech_flows, dot_flows = dot_flows + excluded.dot_flows,
        dns_flows = dns_flows + excluded.dns_flows,
        named = excluded.named, vendor = coalesce(excluded.vendor, vendor),
        category = coalesce(excluded.category, category), purpose = coalesce(excluded.purpose, purpose),
        first_contact = min(first_contact, excluded.first_contact),
        last_contact = max(last_contact, excluded.last_contact);
    INSERT INTO session_rollup (session_id, uid, endpoint, country, named, vendor, category, purpose, flows, bytes_up, bytes_down, cleartext_flows, leak_flows, guessed_flows, ech_flows, dot_flows, first_contact, last_contact, dns_flows)
    VALUES (NEW.session_id, coalesce(NEW.uid, -1), NEW.endpoint, coalesce(NEW.country, ''),
        NEW.hostname IS NOT NULL AND NOT NEW.lookup, NEW.vendor, NEW.category, NEW.purpose, 1,
        NEW.bytes_up, NEW.bytes_down, NEW.cleartext, NEW.leaks IS NOT NULL, NEW.category_guessed,
        NEW.ech, NEW.dst_port = 853, NEW.first_seen, NEW.last_seen, NEW.lookup)
    ON CONFLICT DO UPDATE SET flows = flows + 1, bytes_up = bytes_up + excluded.bytes_up,
        bytes_down = bytes_down + excluded.bytes_down,
        cleartext_flows = cleartext_flows + excluded.cleartext_flows,
        leak_flows = leak_flows + excluded.leak_flows,
        guessed_flows = guessed_flows + excluded.guessed_flows,
        ech_flows = ech_flows + excluded.ech_flows, dot_flows = dot_flows + excluded.dot_flows,
        dns_flows = dns_flows + excluded.dns_flows,
        named = excluded.named, vendor = coalesce(excluded.vendor, vendor),
        category = coalesce(excluded.category, category), purpose = coalesce(excluded.purpose, purpose),
        first_contact = min(first_contact, excluded.first_contact),
        last_contact = max(last_contact, excluded.last_contact);
END;
CREATE TRIGGER flows_rollup_update AFTER UPDATE OF uid, hostname, hostname_source, l7, dst_ip, country, first_seen, session_id, vendor,
    category, purpose, bytes_up, bytes_down, cleartext, leaks, category_guessed, ech, last_seen ON flows
WHEN coalesce(OLD.uid, -1) = coalesce(NEW.uid, -1) AND OLD.endpoint = NEW.endpoint
    AND OLD.lookup = NEW.lookup AND coalesce(OLD.country, '') = coalesce(NEW.country, '')
    AND OLD.first_seen = NEW.first_seen AND OLD.session_id = NEW.session_id BEGIN
    UPDATE rollup SET bytes_up = bytes_up + NEW.bytes_up - OLD.bytes_up,
        bytes_down = bytes_down + NEW.bytes_down - OLD.bytes_down,
        cleartext_flows = cleartext_flows + NEW.cleartext - OLD.cleartext,
        leak_flows = leak_flows + (NEW.leaks IS NOT NULL) - (OLD.leaks IS NOT NULL),
        guessed_flows = guessed_flows + NEW.category_guessed - OLD.category_guessed,
        ech_flows = ech_flows + NEW.ech - OLD.ech,
        vendor = coalesce(NEW.vendor, vendor), category = coalesce(NEW.category, category),
        purpose = coalesce(NEW.purpose, purpose), last_contact = max(last_contact, NEW.last_seen)
    WHERE session_id = NEW.session_id AND bucket = NEW.first_seen - NEW.first_seen % 3600000 AND uid = coalesce(NEW.uid, -1)
        AND endpoint = NEW.endpoint AND country = coalesce(NEW.country, '');
    UPDATE session_rollup SET bytes_up = bytes_up + NEW.bytes_up - OLD.bytes_up,
        bytes_down = bytes_down + NEW.bytes_down - OLD.bytes_down,
        cleartext_flows = cleartext_flows + NEW.cleartext - OLD.cleartext,
        leak_flows = leak_flows + (NEW.leaks IS NOT NULL) - (OLD.leaks IS NOT NULL),
        guessed_flows = guessed_flows + NEW.category_guessed - OLD.category_guessed,
        ech_flows = ech_flows + NEW.ech - OLD.ech,
        vendor = coalesce(NEW.vendor, vendor), category = coalesce(NEW.category, category),
        purpose = coalesce(NEW.purpose, purpose), last_contact = max(last_contact, NEW.last_seen)
    WHERE session_id = NEW.session_id AND uid = coalesce(NEW.uid, -1)
        AND endpoint = NEW.endpoint AND country = coalesce(NEW.country, '');
END;
CREATE TRIGGER flows_rollup_rekey AFTER UPDATE OF uid, hostname, hostname_source, l7, dst_ip, country, first_seen, session_id, vendor,
    category, purpose, bytes_up, bytes_down, cleartext, leaks, category_guessed, ech, last_seen ON flows
WHEN NOT (coalesce(OLD.uid, -1) = coalesce(NEW.uid, -1) AND OLD.endpoint = NEW.endpoint
    AND OLD.lookup = NEW.lookup AND coalesce(OLD.country, '') = coalesce(NEW.country, '')
    AND OLD.first_seen = NEW.first_seen AND OLD.session_id = NEW.session_id) BEGIN
    UPDATE rollup SET flows = flows - 1, bytes_up = bytes_up - OLD.bytes_up,
        bytes_down = bytes_down - OLD.bytes_down, cleartext_flows = cleartext_flows - OLD.cleartext,
        leak_flows = leak_flows - (OLD.leaks IS NOT NULL),
        guessed_flows = guessed_flows - OLD.category_guessed, ech_flows = ech_flows - OLD.ech,
        dot_flows = dot_flows - (OLD.dst_port = 853), dns_flows = dns_flows - OLD.lookup
    WHERE session_id = OLD.session_id AND bucket = OLD.first_seen - OLD.first_seen % 3600000 AND uid = coalesce(OLD.uid, -1)
        AND endpoint = OLD.endpoint AND country = coalesce(OLD.country, '');
    DELETE FROM rollup WHERE session_id = OLD.session_id AND bucket = OLD.first_seen - OLD.first_seen % 3600000 AND uid = coalesce(OLD.uid, -1)
        AND endpoint = OLD.endpoint AND country = coalesce(OLD.country, '') AND flows <= 0;
    INSERT INTO rollup (session_id, bucket, uid, endpoint, country, named, vendor, category, purpose, flows, bytes_up, bytes_down, cleartext_flows, leak_flows, guessed_flows, ech_flows, dot_flows, first_contact, last_contact, dns_flows)
    VALUES (NEW.session_id, NEW.first_seen - NEW.first_seen % 3600000, coalesce(NEW.uid, -1), NEW.endpoint, coalesce(NEW.country, ''),
        NEW.hostname IS NOT NULL AND NOT NEW.lookup, NEW.vendor, NEW.category, NEW.purpose, 1,
        NEW.bytes_up, NEW.bytes_down, NEW.cleartext, NEW.leaks IS NOT NULL, NEW.category_guessed,
        NEW.ech, NEW.dst_port = 853, NEW.first_seen, NEW.last_seen, NEW.lookup)
    ON CONFLICT DO UPDATE SET flows = flows + 1, bytes_up = bytes_up + excluded.bytes_up,
        bytes_down = bytes_down + excluded.bytes_down,
        cleartext_flows = cleartext_flows + excluded.cleartext_flows,
        leak_flows = leak_flows + excluded.leak_flows,
        guessed_flows = guessed_flows + excluded.guessed_flows,
        ech_flows = ech_flows + excluded.ech_flows, dot_flows = dot_flows + excluded.dot_flows,
        dns_flows = dns_flows + excluded.dns_flows,
        named = excluded.named, vendor = coalesce(excluded.vendor, vendor),
        category = coalesce(excluded.category, category), purpose = coalesce(excluded.purpose, purpose),
        first_contact = min(first_contact, excluded.first_contact),
        last_contact = max(last_contact, excluded.last_contact);
    UPDATE session_rollup SET flows = flows - 1, bytes_up = bytes_up - OLD.bytes_up,
        bytes_down = bytes_down - OLD.bytes_down, cleartext_flows = cleartext_flows - OLD.cleartext,
        leak_flows = leak_flows - (OLD.leaks IS NOT NULL),
        guessed_flows = guessed_flows - OLD.category_guessed, ech_flows = ech_flows - OLD.ech,
        dot_flows = dot_flows - (OLD.dst_port = 853), dns_flows = dns_flows - OLD.lookup
    WHERE session_id = OLD.session_id AND uid = coalesce(OLD.uid, -1)
        AND endpoint = OLD.endpoint AND country = coalesce(OLD.country, '');
    DELETE FROM session_rollup WHERE session_id = OLD.session_id AND uid = coalesce(OLD.uid, -1)
        AND endpoint = OLD.endpoint AND country = coalesce(OLD.country, '') AND flows <= 0;
    INSERT INTO session_rollup (session_id, uid, endpoint, country, named, vendor, category, purpose, flows, bytes_up, bytes_down, cleartext_flows, leak_flows, guessed_flows, ech_flows, dot_flows, first_contact, last_contact, dns_flows)
    VALUES (NEW.session_id, coalesce(NEW.uid, -1), NEW.endpoint, coalesce(NEW.country, ''),
        NEW.hostname IS NOT NULL AND NOT NEW.lookup, NEW.vendor, NEW.category, NEW.purpose, 1,
        NEW.bytes_up, NEW.bytes_down, NEW.cleartext, NEW.leaks IS NOT NULL, NEW.category_guessed,
        NEW.ech, NEW.dst_port = 853, NEW.first_seen, NEW.last_seen, NEW.lookup)
    ON CONFLICT DO UPDATE SET flows = flows + 1, bytes_up = bytes_up + excluded.bytes_up,
        bytes_down = bytes_down + excluded.bytes_down,
        cleartext_flows = cleartext_flows + excluded.cleartext_flows,
        leak_flows = leak_flows + excluded.leak_flows,
        guessed_flows = guessed_flows + excluded.guessed_flows,
        ech_flows = ech_flows + excluded.ech_flows, dot_flows = dot_flows + excluded.dot_flows,
        dns_flows = dns_flows + excluded.dns_flows,
        named = excluded.named, vendor = coalesce(excluded.vendor, vendor),
        category = coalesce(excluded.category, category), purpose = coalesce(excluded.purpose, purpose),
        first_contact = min(first_contact, excluded.first_contact),
        last_contact = max(last_contact, excluded.last_contact);
END;
CREATE TRIGGER flows_rollup_delete AFTER DELETE ON flows BEGIN
    UPDATE rollup SET flows = flows - 1, bytes_up = bytes_up - OLD.bytes_up,
        bytes_down = bytes_down - OLD.bytes_down, cleartext_flows = cleartext_flows - OLD.cleartext,
        leak_flows = leak_flows - (OLD.leaks IS NOT NULL),
        guessed_flows = guessed_flows - OLD.category_guessed, ech_flows = ech_flows - OLD.ech,
        dot_flows = dot_flows - (OLD.dst_port = 853), dns_flows = dns_flows - OLD.lookup
    WHERE session_id = OLD.session_id AND bucket = OLD.first_seen - OLD.first_seen % 3600000 AND uid = coalesce(OLD.uid, -1)
        AND endpoint = OLD.endpoint AND country = coalesce(OLD.country, '');
    DELETE FROM rollup WHERE session_id = OLD.session_id AND bucket = OLD.first_seen - OLD.first_seen % 3600000 AND uid = coalesce(OLD.uid, -1)
        AND endpoint = OLD.endpoint AND country = coalesce(OLD.country, '') AND flows <= 0;
    UPDATE session_rollup SET flows = flows - 1, bytes_up = bytes_up - OLD.bytes_up,
        bytes_down = bytes_down - OLD.bytes_down, cleartext_flows = cleartext_flows - OLD.cleartext,
        leak_flows = leak_flows - (OLD.leaks IS NOT NULL),
        guessed_flows = guessed_flows - OLD.category_guessed, ech_flows = ech_flows - OLD.ech,
        dot_flows = dot_flows - (OLD.dst_port = 853), dns_flows = dns_flows - OLD.lookup
    WHERE session_id = OLD.session_id AND uid = coalesce(OLD.uid, -1)
        AND endpoint = OLD.endpoint AND country = coalesce(OLD.country, '');
    DELETE FROM session_rollup WHERE session_id = OLD.session_id AND uid = coalesce(OLD.uid, -1)
        AND endpoint = OLD.endpoint AND country = coalesce(OLD.country, '') AND flows <= 0;
END;
DROP VIEW app_summary;
DROP VIEW domain_summary;
DROP VIEW country_summary;
-- contacts: non-DNS flows; lookups: DNS queries (dns rows), dns_flows: DNS flows to resolvers.
CREATE VIEW app_summary AS
SELECT session_id, coalesce(app, 'uid ' || uid, 'unknown') AS app,
       sum(NOT lookup) AS contacts, sum(lookup) AS dns_flows,
       sum(bytes_up) AS bytes_up, sum(bytes_down) AS bytes_down,
       count(DISTINCT CASE WHEN vendor = 'xiaomi' AND NOT lookup THEN hostname END) AS xiaomi_endpoints,
       group_concat(DISTINCT category) AS categories,
       group_concat(DISTINCT country) AS countries,
       min(first_seen) AS first_contact, max(last_seen) AS last_contact,
       sum(cleartext AND NOT lookup) AS cleartext_flows
FROM flows GROUP BY session_id, 2;
CREATE VIEW domain_summary AS
SELECT f.session_id, f.endpoint AS domain, max(f.vendor) AS vendor, max(f.category) AS category,
       count(*) AS contacts,
       (SELECT count(*) FROM dns d WHERE d.session_id = f.session_id AND d.query = f.endpoint) AS lookups,
       sum(f.bytes_up) AS bytes_up, sum(f.bytes_down) AS bytes_down,
       count(DISTINCT coalesce(f.app, f.uid)) AS apps,
       min(f.first_seen) AS first_contact, max(f.last_seen) AS last_contact
FROM flows f WHERE NOT f.lookup GROUP BY f.session_id, f.endpoint;
CREATE VIEW country_summary AS
SELECT session_id, coalesce(country, '??') AS country,
       sum(NOT lookup) AS contacts, sum(bytes_up) AS bytes_up, sum(bytes_down) AS bytes_down,
       count(DISTINCT coalesce(app, uid)) AS apps
FROM flows GROUP BY session_id, 2;
"#,
    // Evidence content (issue 8.4, 8.5): the first cleartext HTTP requests of a flow, and device
    // descriptors (model, OS version) kept apart from identifiers so that `leaks` (and every
    // count of leaking flows) means identifiers only. Must come after the contacts migration
    // (issue 8.1); self-contained, so its position among other migrations does not matter.
    r#"
ALTER TABLE flows ADD COLUMN http_requests TEXT;  -- JSON [{method, host, path}], identifier values redacted
ALTER TABLE flows ADD COLUMN descriptors TEXT;    -- comma-separated descriptor kinds, NULL when none
UPDATE flows SET
    descriptors = nullif(
        CASE WHEN instr(',' || leaks || ',', ',miui_version,') > 0 THEN 'miui_version' ELSE '' END ||
        CASE WHEN instr(',' || leaks || ',', ',miui_version,') > 0
              AND instr(',' || leaks || ',', ',model,') > 0 THEN ',' ELSE '' END ||
        CASE WHEN instr(',' || leaks || ',', ',model,') > 0 THEN 'model' ELSE '' END, ''),
    leaks = nullif(trim(replace(replace(',' || leaks || ',', ',model,', ','), ',miui_version,', ','), ','), '')
WHERE instr(',' || leaks || ',', ',model,') > 0 OR instr(',' || leaks || ',', ',miui_version,') > 0;
"#,
];

/// The schema version this build writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

pub(crate) fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn other(path: &Path, message: impl Into<String>) -> StoreError {
    StoreError::Other {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// How [`open`] treats the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the file if missing (a capture).
    Create,
    /// The file must exist; open it for reading and small writes (markers, settings).
    Existing,
    /// The file must exist and is only read (a read-only medium works).
    ReadOnly,
}

/// Opens a PhoneHome database, checks that it is one, and migrates it to the current schema
/// (except in `ReadOnly` mode, where an older schema is read as it is if it is current).
pub fn open(path: &Path, mode: OpenMode) -> Result<Connection, StoreError> {
    if mode != OpenMode::Create {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                return Err(other(path, "is a directory, not a database file"));
            }
            Ok(meta) => check_header(path, meta.len())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(other(
                    path,
                    "does not exist (only `phonehome capture` and `analyze` create a database)",
                ));
            }
            Err(e) => return Err(other(path, e.to_string())),
        }
    }
    let flags = match mode {
        OpenMode::Create => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        OpenMode::Existing => OpenFlags::SQLITE_OPEN_READ_WRITE,
        OpenMode::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = match Connection::open_with_flags(path, flags) {
        Ok(conn) => conn,
        // A WAL database on read-only media without its -shm file: read it as immutable.
        Err(_) if mode == OpenMode::ReadOnly => {
            Connection::open_with_flags(immutable_uri(path), flags)
                .map_err(|e| describe_open_error(path, e))?
        }
        Err(e) => return Err(describe_open_error(path, e)),
    };
    // Opening is lazy: a WAL file whose -shm cannot be created fails on the first read.
    let readable = |c: &Connection| {
        c.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .is_ok()
    };
    let conn = if mode == OpenMode::ReadOnly && !readable(&conn) {
        Connection::open_with_flags(immutable_uri(path), flags)
            .map_err(|e| describe_open_error(path, e))?
    } else {
        conn
    };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite_err(path))?;
    check_identity(&conn, path)?;
    if mode != OpenMode::ReadOnly {
        // WAL lets a reader (report, export, mark) work while the capture writes; NORMAL
        // sync keeps every committed batch across a process kill (only power loss can cost
        // the last commits).
        let journal: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| describe_open_error(path, e))?;
        if !journal.eq_ignore_ascii_case("wal") {
            log::warn!("{}: journal mode is {journal}, not WAL", path.display());
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;")
            .map_err(sqlite_err(path))?;
        migrate(&conn, path)?;
    } else {
        let version = user_version(&conn, path)?;
        if version < current_version() {
            return Err(other(
                path,
                format!(
                    "schema version {version} is older than this phonehome's ({}); open it once \
                     without read-only access to upgrade it",
                    current_version()
                ),
            ));
        }
    }
    conn.execute_batch("PRAGMA cache_size=-32000;")
        .map_err(sqlite_err(path))?;
    Ok(conn)
}

/// Refuses, before SQLite touches the file, anything that cannot be a PhoneHome database: an
/// empty file (SQLite would happily turn it into a new database) or one without the SQLite
/// header. Only `capture` and `analyze` ([`OpenMode::Create`]) may create a database.
fn check_header(path: &Path, len: u64) -> Result<(), StoreError> {
    use std::io::Read;
    const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";
    if len == 0 {
        return Err(other(path, "not a PhoneHome database (empty file)"));
    }
    let mut header = [0u8; 16];
    let read = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map(|()| &header == SQLITE_HEADER);
    match read {
        Ok(true) => Ok(()),
        Ok(false) => Err(other(path, "not a PhoneHome database (not an SQLite file)")),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(other(path, "not a PhoneHome database (not an SQLite file)"))
        }
        Err(e) => Err(other(path, e.to_string())),
    }
}

/// `file:PATH?immutable=1`, percent-encoding what a URI would misread.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            _ => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// The file (or the directory it would be created in) is on a read-only mount.
fn on_read_only_fs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let probe = if path.exists() {
        path.to_path_buf()
    } else {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => Path::new(".").to_path_buf(),
        }
    };
    let Ok(c_path) = std::ffi::CString::new(probe.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statvfs writes only into `stat`, a zeroed plain-old-data struct we own, and
    // reads a NUL-terminated path that outlives the call.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        libc::statvfs(c_path.as_ptr(), &mut stat) == 0 && stat.f_flag & libc::ST_RDONLY != 0
    }
}

fn describe_open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, _) = &e {
        match code.code {
            rusqlite::ErrorCode::NotADatabase => {
                return other(path, "not a PhoneHome database (not an SQLite file)");
            }
            rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly
                if on_read_only_fs(path) =>
            {
                return other(
                    path,
                    "read-only file system: cannot write the database there",
                );
            }
            rusqlite::ErrorCode::CannotOpen => {
                return other(
                    path,
                    "cannot open or create it (missing directory, no permission, or a read-only file system)",
                );
            }
            rusqlite::ErrorCode::ReadOnly => {
                return other(path, "read-only file or directory");
            }
            _ => {}
        }
    }
    StoreError::Sqlite {
        path: path.display().to_string(),
        source: e,
    }
}

fn user_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| describe_open_error(path, e))
}

/// Refuses files that are SQLite but not ours, and databases from a newer PhoneHome.
fn check_identity(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let app_id: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| describe_open_error(path, e))?;
    let version = user_version(conn, path)?;
    if app_id == 0 && version == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| describe_open_error(path, e))?;
        if tables == 0 {
            return Ok(()); // empty: a new database
        }
    }
    if app_id != APPLICATION_ID {
        return Err(other(
            path,
            "not a PhoneHome database (SQLite file with other tables)",
        ));
    }
    if version > current_version() {
        return Err(other(
            path,
            format!(
                "schema version {version} is newer than this phonehome supports ({}); upgrade phonehome",
                current_version()
            ),
        ));
    }
    Ok(())
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let err = sqlite_err(path);
    loop {
        // Re-read inside the write lock: another process may have migrated meanwhile.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(&err)?;
        let version = user_version(conn, path)?;
        if version >= current_version() {
            conn.execute_batch("COMMIT").map_err(&err)?;
            return Ok(());
        }
        let step = usize::try_from(version).unwrap_or(0);
        let result = conn.execute_batch(MIGRATIONS[step]).and_then(|_| {
            conn.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {};",
                version + 1
            ))
        });
        match result {
            Ok(()) => conn.execute_batch("COMMIT").map_err(&err)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(describe_open_error(path, e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database written by the schema before descriptors and HTTP requests existed: its model
    /// and OS-version findings move out of `leaks`, and the leak counts follow.
    #[test]
    fn migration_moves_descriptors_out_of_leaks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;"
            ))
            .unwrap();
            conn.execute_batch("INSERT INTO sessions (id, kind, started) VALUES (1, 'analyze', 0)")
                .unwrap();
            for (id, leaks) in [
                (1, Some("miui_version,model,oaid")),
                (2, Some("model")),
                (3, Some("imei")),
                (4, Some("miui_version,model")),
                (5, None),
            ] {
                conn.execute(
                    "INSERT INTO flows (session_id, flow_id, proto, src_ip, src_port, dst_ip,
                        dst_port, hostname, first_seen, last_seen, leaks)
                     VALUES (1, ?1, 'tcp', '10.0.0.2', 40000 + ?1, '192.0.2.1', 80, 'h.example',
                        1000, 2000, ?2)",
                    rusqlite::params![id, leaks],
                )
                .unwrap();
            }
            let before: i64 = conn
                .query_row("SELECT sum(leak_flows) FROM session_rollup", [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(before, 4);
        }
        let conn = open(&path, OpenMode::Existing).unwrap();
        assert_eq!(user_version(&conn, &path).unwrap(), current_version());
        let rows: Vec<(i64, Option<String>, Option<String>)> = conn
            .prepare("SELECT flow_id, leaks, descriptors FROM flows ORDER BY flow_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            rows,
            vec![
                (1, s("oaid"), s("miui_version,model")),
                (2, None, s("model")),
                (3, s("imei"), None),
                (4, None, s("miui_version,model")),
                (5, None, None),
            ]
        );
        // Identifiers only: flows 1 and 3.
        let after: i64 = conn
            .query_row("SELECT sum(leak_flows) FROM session_rollup", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(after, 2);
    }

    #[test]
    fn creates_and_reopens_at_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(open(&path, OpenMode::Create).unwrap());
        let conn = open(&path, OpenMode::Existing).unwrap();
        assert_eq!(user_version(&conn, &path).unwrap(), current_version());
        let id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, APPLICATION_ID);
    }

    /// A database written by schema 1 (DNS flows named after their question and classified
    /// as Xiaomi) migrates: its DNS flows become lookups attributed to the resolver.
    #[test]
    fn schema_1_database_migrates_dns_flows_to_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;"
            ))
            .unwrap();
            c.execute_batch(
                "INSERT INTO sessions (id, kind, started) VALUES (1, 'capture', 0);
                 INSERT INTO apps VALUES (1, 10123, 'com.android.browser');",
            )
            .unwrap();
            for i in 0..9i64 {
                let dns = i % 3 != 0;
                c.execute(
                    "INSERT INTO flows (session_id, flow_id, uid, app, proto, src_ip, src_port,
                        dst_ip, dst_port, hostname, hostname_source, l7, vendor, category, purpose,
                        first_seen, last_seen, bytes_up, bytes_down)
                     VALUES (1, ?1, 10123, 'com.android.browser', ?2, '10.0.0.2', ?1, ?3, ?4,
                        'sa.api.intl.miui.com', ?5, ?6, 'xiaomi', 'analytics/telemetry', 'stats',
                        ?7, ?7, 100, 200)",
                    rusqlite::params![
                        i,
                        if dns { "udp" } else { "tcp" },
                        if dns { "10.0.0.1" } else { "161.117.0.10" },
                        if dns { 53 } else { 443 },
                        if dns { "dns-query" } else { "sni" },
                        if dns { "dns" } else { "tls" },
                        i * 1000
                    ],
                )
                .unwrap();
            }
        }
        let conn = open(&path, OpenMode::Existing).unwrap();
        assert_eq!(user_version(&conn, &path).unwrap(), current_version());
        let rollup = |table: &str| -> Vec<(String, i64, i64, Option<String>)> {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT endpoint, sum(flows), sum(dns_flows), max(vendor) FROM {table}
                     GROUP BY endpoint ORDER BY endpoint"
                ))
                .unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let want = vec![
            ("10.0.0.1".to_string(), 6, 6, None),
            (
                "sa.api.intl.miui.com".to_string(),
                3,
                0,
                Some("xiaomi".to_string()),
            ),
        ];
        assert_eq!(rollup("rollup"), want);
        assert_eq!(rollup("session_rollup"), want);
        let purposes: i64 = conn
            .query_row(
                "SELECT count(*) FROM flows WHERE purpose = 'DNS' AND vendor IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(purposes, 6);
        // The triggers keep counting after the migration: a new DNS flow is a lookup.
        conn.execute(
            "INSERT INTO flows (session_id, flow_id, uid, proto, src_ip, src_port, dst_ip,
                dst_port, hostname, hostname_source, l7, first_seen, last_seen)
             VALUES (1, 99, 10123, 'udp', '10.0.0.2', 99, '10.0.0.1', 53, 'x.example',
                'dns-query', 'dns', 0, 0)",
            [],
        )
        .unwrap();
        assert_eq!(rollup("session_rollup")[0], ("10.0.0.1".into(), 7, 7, None));
        let contacts: i64 = conn
            .query_row(
                "SELECT contacts FROM app_summary WHERE app = 'com.android.browser'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(contacts, 3);
    }

    #[test]
    fn refuses_foreign_newer_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.db");
        let e = open(&missing, OpenMode::Existing).unwrap_err().to_string();
        assert!(
            e.contains("missing.db") && e.contains("does not exist"),
            "{e}"
        );

        let foreign = dir.path().join("foreign.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t(x)")
            .unwrap();
        let e = open(&foreign, OpenMode::Existing).unwrap_err().to_string();
        assert!(e.contains("not a PhoneHome database"), "{e}");

        let text = dir.path().join("text.db");
        std::fs::write(
            &text,
            b"this is not sqlite at all, just some text to fill a page....",
        )
        .unwrap();
        let e = open(&text, OpenMode::Existing).unwrap_err().to_string();
        assert!(
            e.contains("text.db") && e.contains("not a PhoneHome database"),
            "{e}"
        );

        let newer = dir.path().join("newer.db");
        drop(open(&newer, OpenMode::Create).unwrap());
        Connection::open(&newer)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99")
            .unwrap();
        let e = open(&newer, OpenMode::Existing).unwrap_err().to_string();
        assert!(e.contains("schema version 99 is newer"), "{e}");
    }
}
