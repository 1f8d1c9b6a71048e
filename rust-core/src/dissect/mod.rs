//! Dissectors: name a flow from its first bytes (TLS ClientHello SNI, QUIC Initial SNI, HTTP
//! Host, DNS) and flag cleartext device identifiers. Every parser returns an error on malformed
//! input and never panics.
//!
//! The [`Inspector`] is the per-flow state machine the live engine and the pcap observer share:
//! it is fed the first bytes of each direction, decides what the flow speaks, and keeps an
//! [`Inspection`]. It buffers a bounded prefix only (a ClientHello at most [`tls::MAX_HELLO_LEN`],
//! [`SCAN_LIMIT`] bytes per direction for the identifier scan) and never stores payload beyond
//! the flow's life.
//!
//! Lengths and offsets read from input must not wrap on 32-bit phones: clippy's
//! `arithmetic_side_effects` and `cast_possible_truncation` are on for this module and all
//! its parsers.
#![warn(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

pub mod dns;
pub mod http;
pub mod leaks;
pub mod mipush;
pub mod quic;
pub mod tls;
pub mod x509;

use std::collections::BTreeSet;
use std::sync::Arc;

pub use leaks::{DeviceContext, DeviceScan};

use crate::flow::{AppInfo, Direction, NameSource, Proto};

/// Bytes per direction scanned for device identifiers in cleartext flows.
pub const SCAN_LIMIT: usize = 16 * 1024;
/// Bytes kept from the start of a scan window for patterns that straddle two chunks.
const SCAN_OVERLAP: usize = 128;
/// Datagrams per direction looked at in a UDP flow we could not name.
const MAX_UDP_DATAGRAMS: u32 = 16;

/// Application protocols the inspector names in `AppInfo::l7`.
pub const L7_TLS: &str = "tls";
pub const L7_QUIC: &str = "quic";
pub const L7_HTTP: &str = "http";
pub const L7_DNS: &str = "dns";
pub const L7_MIPUSH: &str = "mipush";
pub const L7_SSH: &str = "ssh";
pub const L7_DTLS: &str = "dtls";

/// What an [`Inspector`] has learned so far about one flow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    pub hostname: Option<(String, NameSource)>,
    pub app_info: AppInfo,
    /// Set once the flow is known to carry no TLS/QUIC (cleartext).
    pub cleartext: bool,
    pub leaks: Vec<String>,
    /// The config_id of the hello's outer ECH extension: the [`crate::naming::Namer`] calls
    /// the ECH real only if a DNS answer gave this destination (or this outer name) that
    /// config, and sets `app_info.ech` accordingly.
    pub ech_config_id: Option<u8>,
}

/// What the flow was found to speak.
#[derive(Debug)]
enum State {
    /// Not enough bytes yet.
    Undecided,
    /// TLS: waiting for (or done with) the ClientHello.
    Tls { done: bool },
    /// QUIC: decrypting client Initials.
    Quic(Box<quic::ClientInitials>),
    /// HTTP/1.x: waiting for the Host header.
    Http { done: bool },
    /// DNS over UDP or TCP: the first question names the flow.
    Dns { done: bool },
    /// An encrypted protocol we do not name further (SSH, DTLS).
    Opaque,
    /// Mi Push, or anything else without TLS/QUIC: cleartext, scanned for identifiers.
    Cleartext,
}

/// The bounded prefix of one direction.
#[derive(Debug, Default)]
struct Side {
    /// The first bytes (TCP) of this direction, bounded; in a cleartext flow only those a
    /// later step can still read (see `Inspector::release_consumed`).
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`: the bytes before it were dropped once consumed.
    base: usize,
    /// Bytes of this direction already scanned for identifiers, from its start.
    scanned: usize,
    /// Bytes scanned from datagrams (UDP), bounded by SCAN_LIMIT.
    datagram_bytes: usize,
    datagrams: u32,
}

impl Side {
    /// Bytes of this direction seen so far (within the limit), kept or not.
    fn seen(&self) -> usize {
        self.base.saturating_add(self.buf.len())
    }

    /// Drop the bytes before stream offset `keep_from`, and the room they took.
    fn drop_before(&mut self, keep_from: usize) {
        let n = keep_from.saturating_sub(self.base).min(self.buf.len());
        if n == 0 {
            return;
        }
        self.buf.drain(..n);
        self.buf.shrink_to_fit();
        self.base = self.base.saturating_add(n);
    }

    /// Room for `more` bytes in `buf`, which never holds more than `limit`: doubling, but not
    /// past the limit. Left to `Vec`, a 16 KiB window filled by 1,448-byte segments ends in a
    /// 23 KiB buffer.
    fn grow_within(&mut self, more: usize, limit: usize) {
        let len = self.buf.len();
        if self.buf.capacity().saturating_sub(len) >= more {
            return;
        }
        let want = self
            .buf
            .capacity()
            .saturating_mul(2)
            .max(len.saturating_add(more))
            .min(limit);
        self.buf.reserve_exact(want.saturating_sub(len));
    }
}

/// Per-flow dissection state. Fed in-order stream bytes (TCP) or whole datagrams (UDP) for the
/// first bytes of each direction, until `wants_more` says it is done.
#[derive(Debug)]
pub struct Inspector {
    proto: Proto,
    dst_port: u16,
    ctx: Option<Arc<DeviceScan>>,
    state: State,
    up: Side,
    down: Side,
    found: BTreeSet<&'static str>,
    /// Up-stream offset from which to look for a STARTTLS hello.
    tls_probe: usize,
    /// A ClientHello was seen (directly or after STARTTLS).
    saw_hello: bool,
    /// The server's certificate was read, or will not come in clear.
    cert_done: bool,
    /// Up-stream offset of the next HTTP request to record; None once no more can be found.
    http_next: Option<usize>,
    /// Nothing more to learn; buffers released.
    finished: bool,
    result: Inspection,
}

impl Inspector {
    pub fn new(proto: Proto, dst_port: u16) -> Inspector {
        Inspector {
            proto,
            dst_port,
            ctx: None,
            state: State::Undecided,
            up: Side::default(),
            down: Side::default(),
            found: BTreeSet::new(),
            tls_probe: 0,
            saw_hello: false,
            cert_done: false,
            http_next: Some(0),
            finished: false,
            result: Inspection::default(),
        }
    }

    /// Give the inspector what is known about the phone (its addresses, model, OS version) so
    /// that these can be recognised in cleartext payloads.
    pub fn with_context(mut self, ctx: Arc<DeviceScan>) -> Inspector {
        self.ctx = Some(ctx);
        self
    }

    /// In-order TCP payload bytes in direction `dir`.
    pub fn on_stream(&mut self, dir: Direction, data: &[u8]) {
        if data.is_empty() || !self.wants_more() {
            return;
        }
        if dir == Direction::Down
            && matches!(self.state, State::Tls { .. })
            && !self.wants_certificate()
        {
            return; // The client's hello named the flow; don't buffer the server's records.
        }
        if dir == Direction::Up && matches!(self.state, State::Tls { done: true }) {
            return; // Waiting for the certificate: the client's records teach nothing more.
        }
        let limit = match self.state {
            State::Undecided | State::Tls { done: false } if dir == Direction::Up => {
                tls::MAX_HELLO_LEN
            }
            _ => SCAN_LIMIT,
        };
        let side = self.side_mut(dir);
        let room = limit.saturating_sub(side.seen());
        let take = data.len().min(room);
        side.grow_within(take, limit);
        side.buf.extend_from_slice(&data[..take]);
        if matches!(self.state, State::Undecided) {
            self.decide_stream(dir);
        }
        self.advance_stream(dir);
        if dir == Direction::Up && matches!(self.state, State::Http { .. }) {
            self.record_http_requests();
        }
        self.scan_stream(dir);
        self.release_consumed(dir);
        self.finish_if_done();
    }

    /// In a cleartext flow that is not Mi Push, keep only what a later step can still read:
    /// the scan's overlap, on the client's side the bytes from where a STARTTLS hello may
    /// still start, and on the server's side everything while an unnamed hello waits for the
    /// certificate. Keeping the whole window until both directions were scanned, a thousand
    /// new echo flows held up to 4.7 MB of 16 KiB windows at once.
    fn release_consumed(&mut self, dir: Direction) {
        if !matches!(self.state, State::Cleartext)
            || self.result.app_info.l7.as_deref() == Some(L7_MIPUSH)
        {
            return;
        }
        let scan_from = self.side(dir).scanned.saturating_sub(SCAN_OVERLAP);
        let keep_from = match dir {
            // The byte before a candidate tells whether it starts a line.
            Direction::Up if self.result.hostname.is_none() => {
                scan_from.min(self.tls_probe.saturating_sub(1))
            }
            Direction::Down if self.wants_certificate() => return,
            _ => scan_from,
        };
        self.side_mut(dir).drop_before(keep_from);
    }

    /// One UDP payload in direction `dir`.
    pub fn on_datagram(&mut self, dir: Direction, data: &[u8]) {
        if data.is_empty() || !self.wants_more() {
            return;
        }
        let side = self.side_mut(dir);
        side.datagrams = side.datagrams.saturating_add(1);
        if matches!(self.state, State::Undecided) {
            self.decide_datagram(dir, data);
        }
        let mut found_hello = None;
        if let State::Quic(initials) = &mut self.state
            && dir == Direction::Up
            && initials.wants_more()
        {
            // Errors (garbage, a packet we cannot decrypt) just mean "no name from this
            // datagram"; `wants_more` bounds the attempts.
            if let Ok(Some(hello)) = initials.on_datagram(data) {
                found_hello = Some((hello.clone(), initials.version()));
            }
        }
        if let Some((hello, version)) = found_hello {
            self.apply_hello(&hello, NameSource::Quic);
            if version.and_then(quic::family) == Some(quic::Family::GoogleClear) {
                self.result.app_info.tls_version = None; // A CHLO is not TLS.
            }
        }
        if let State::Dns { done: false } = self.state {
            self.state = State::Dns { done: true };
            self.name_from_dns(dir, data);
        }
        if self.result.cleartext {
            let ctx = self.ctx.clone();
            let side = self.side_mut(dir);
            let budget = SCAN_LIMIT.saturating_sub(side.datagram_bytes);
            let window = &data[..data.len().min(budget)];
            side.datagram_bytes = side.datagram_bytes.saturating_add(window.len());
            leaks::scan(window, ctx.as_deref(), &mut self.found);
            self.sync_leaks();
        }
        self.finish_if_done();
    }

    /// False once nothing more can be learned; the caller stops feeding bytes.
    pub fn wants_more(&self) -> bool {
        !self.finished && self.still_learning()
    }

    /// Once done, drop the buffered prefixes: a long-lived flow keeps only its result.
    fn finish_if_done(&mut self) {
        if !self.finished && !self.still_learning() {
            self.finished = true;
            self.up.buf = Vec::new();
            self.down.buf = Vec::new();
            if let State::Quic(_) = self.state {
                self.state = State::Opaque;
            }
        }
    }

    fn still_learning(&self) -> bool {
        match &self.state {
            State::Undecided => match self.proto {
                Proto::Udp => {
                    self.up.datagrams.saturating_add(self.down.datagrams)
                        < MAX_UDP_DATAGRAMS.saturating_mul(2)
                }
                // A flow where only the server talks: stop once its scan budget is used.
                _ => {
                    self.up.seen() < tls::MAX_HELLO_LEN
                        && (self.up.seen() > 0 || self.down.seen() < SCAN_LIMIT)
                }
            },
            State::Tls { done } => !done || self.wants_certificate(),
            State::Quic(initials) => {
                initials.wants_more() && self.down.datagrams < MAX_UDP_DATAGRAMS
            }
            State::Opaque => false,
            State::Http { .. } | State::Dns { .. } | State::Cleartext => match self.proto {
                Proto::Udp => {
                    (self.up.datagram_bytes < SCAN_LIMIT || self.down.datagram_bytes < SCAN_LIMIT)
                        && self.up.datagrams.saturating_add(self.down.datagrams)
                            < MAX_UDP_DATAGRAMS.saturating_mul(2)
                }
                _ => self.up.scanned < SCAN_LIMIT || self.down.scanned < SCAN_LIMIT,
            },
        }
    }

    pub fn result(&self) -> &Inspection {
        &self.result
    }

    fn side(&self, dir: Direction) -> &Side {
        match dir {
            Direction::Up => &self.up,
            Direction::Down => &self.down,
        }
    }

    fn side_mut(&mut self, dir: Direction) -> &mut Side {
        match dir {
            Direction::Up => &mut self.up,
            Direction::Down => &mut self.down,
        }
    }

    fn set_l7(&mut self, l7: &str) {
        self.result.app_info.l7 = Some(l7.to_string());
    }

    /// Decide what a TCP flow speaks from its first bytes.
    fn decide_stream(&mut self, dir: Direction) {
        let up = &self.up.buf;
        if dir == Direction::Down && up.is_empty() {
            // The server spoke first: a banner protocol (SMTP, POP3, IMAP, FTP, SSH), Mi Push
            // (whose server may send its header first), or a capture that starts with a reply.
            let down = &self.down.buf;
            if down.starts_with(b"SSH-") {
                self.state = State::Opaque;
                self.set_l7(L7_SSH);
                return;
            }
            match mipush::recognise(down) {
                mipush::Verdict::MiPush => return self.become_mipush(),
                mipush::Verdict::NeedMore => return,
                mipush::Verdict::NotMiPush => {}
            }
            if down.len() >= 4 && !tls::looks_like_record(down) {
                // Readable bytes crossed the network; what the client speaks is still to be
                // seen (an HTTP request after a reply, a STARTTLS hello after a banner).
                self.result.cleartext = true;
            }
            return;
        }
        if up.len() < 3 {
            return;
        }
        if tls::looks_like_record(up) {
            self.state = State::Tls { done: false };
            self.set_l7(L7_TLS);
            self.result.cleartext = false;
            return;
        }
        if up.starts_with(b"SSH-") {
            self.state = State::Opaque;
            self.set_l7(L7_SSH);
            return;
        }
        match mipush::recognise(up) {
            mipush::Verdict::MiPush => return self.become_mipush(),
            mipush::Verdict::NeedMore => return,
            mipush::Verdict::NotMiPush => {}
        }
        if http::may_be_request(up) {
            if up.len() < 8 {
                return; // "GET" could still become "GETTING": wait for the space.
            }
            self.state = State::Http { done: false };
            self.set_l7(L7_HTTP);
            self.result.cleartext = true;
            return;
        }
        if self.dst_port == 53 {
            self.state = State::Dns { done: false };
            self.set_l7(L7_DNS);
            self.result.cleartext = true;
            return;
        }
        self.state = State::Cleartext;
        self.result.cleartext = true;
    }

    fn become_mipush(&mut self) {
        self.state = State::Cleartext;
        self.set_l7(L7_MIPUSH);
        self.result.cleartext = true;
    }

    /// Run the named protocol's parser on the buffered stream.
    fn advance_stream(&mut self, dir: Direction) {
        match self.state {
            State::Tls { done: false } if dir == Direction::Up => {
                match tls::client_hello_from_records(&self.up.buf) {
                    Ok(Some(hello)) => {
                        self.apply_hello(&hello, NameSource::Sni);
                        self.state = State::Tls { done: true };
                    }
                    Ok(None) if self.up.buf.len() < tls::MAX_HELLO_LEN => {}
                    // Not a hello (joined mid-flow, or a server's first record) or too long.
                    _ => self.state = State::Tls { done: true },
                }
            }
            State::Http { done: false } if dir == Direction::Up => {
                match http::parse_request(&self.up.buf) {
                    Ok(Some(req)) => {
                        self.result.app_info.http_method = Some(req.method);
                        if let Some(host) = req.host {
                            self.result.hostname = Some((host, NameSource::Http));
                            self.state = State::Http { done: true };
                        } else if req.complete || self.up.buf.len() >= http::MAX_HEAD_LEN {
                            self.state = State::Http { done: true };
                        }
                    }
                    Ok(None) => {}
                    Err(_) => self.state = State::Http { done: true },
                }
            }
            State::Dns { done: false } => {
                let buf = match dir {
                    Direction::Up => &self.up.buf,
                    Direction::Down => &self.down.buf,
                };
                let (msgs, _) = dns::split_tcp(buf);
                if let Some(first) = msgs.first() {
                    let first = first.to_vec();
                    self.state = State::Dns { done: true };
                    self.name_from_dns(dir, &first);
                }
            }
            State::Tls { .. } | State::Cleartext if dir == Direction::Down => {
                self.name_from_certificate();
            }
            State::Cleartext if dir == Direction::Up => {
                if self.result.app_info.l7.as_deref() == Some(L7_MIPUSH) {
                    if mipush::carries_model(&self.up.buf) {
                        self.found.insert(leaks::MODEL);
                        self.sync_leaks();
                    }
                } else if self.result.hostname.is_none() {
                    self.probe_starttls();
                }
            }
            _ => {}
        }
    }

    /// Record the complete request heads buffered so far, identifier values redacted.
    fn record_http_requests(&mut self) {
        use crate::flow::{HttpRequest, MAX_HTTP_REQUEST_LEN, MAX_HTTP_REQUESTS};
        while let Some(at) = self.http_next {
            if self.result.app_info.http_requests.len() >= MAX_HTTP_REQUESTS {
                self.http_next = None;
                return;
            }
            let Some(rest) = self.up.buf.get(at..).filter(|r| !r.is_empty()) else {
                return; // wait for the next request's bytes
            };
            match http::next_request(rest) {
                Ok(Some(line)) => {
                    let mut path = leaks::redact(&line.target, self.ctx.as_deref());
                    let room = MAX_HTTP_REQUEST_LEN.saturating_sub(
                        line.method
                            .len()
                            .saturating_add(line.host.as_ref().map_or(0, String::len)),
                    );
                    if path.len() > room {
                        let mut cut = room;
                        while !path.is_char_boundary(cut) {
                            cut = cut.saturating_sub(1); // 0 is a boundary: the loop ends
                        }
                        path.truncate(cut);
                    }
                    self.result.app_info.http_requests.push(HttpRequest {
                        method: line.method,
                        host: line.host,
                        path,
                    });
                    self.http_next = line.length.and_then(|len| at.checked_add(len));
                }
                Ok(None) if rest.len() < http::MAX_HEAD_LEN && self.up.buf.len() < SCAN_LIMIT => {
                    return;
                }
                _ => self.http_next = None,
            }
        }
    }

    /// Scan the not yet scanned part of a cleartext direction.
    fn scan_stream(&mut self, dir: Direction) {
        if !self.result.cleartext {
            return;
        }
        let ctx = self.ctx.clone();
        let side = match dir {
            Direction::Up => &mut self.up,
            Direction::Down => &mut self.down,
        };
        let end = side.seen().min(SCAN_LIMIT);
        if end <= side.scanned {
            return;
        }
        // `release_consumed` keeps the overlap: `base` is at most `start`.
        let start = side.scanned.saturating_sub(SCAN_OVERLAP);
        let window = side
            .buf
            .get(start.saturating_sub(side.base)..end.saturating_sub(side.base))
            .unwrap_or_default();
        leaks::scan(window, ctx.as_deref(), &mut self.found);
        side.scanned = end;
        if end >= SCAN_LIMIT {
            // Nothing more will be scanned on this side: free the buffer beyond what parsers
            // might still need.
            side.buf.shrink_to_fit();
        }
        self.sync_leaks();
    }

    fn sync_leaks(&mut self) {
        if self.found.len() != self.result.leaks.len() {
            self.result.leaks = self.found.iter().map(|k| k.to_string()).collect();
        }
    }

    /// Decide what a UDP flow speaks from its first datagram.
    fn decide_datagram(&mut self, dir: Direction, data: &[u8]) {
        if matches!(self.dst_port, 53 | 5353 | 5355) && dns::parse_lenient(data).is_ok() {
            self.state = State::Dns { done: false };
            self.set_l7(L7_DNS);
            self.result.cleartext = true;
            return;
        }
        // A client packet, or (capture joined late) a server's long-header packet.
        let server_long = dir == Direction::Down
            && data[0] & 0x80 != 0
            && data
                .get(1..5)
                .and_then(|v| <[u8; 4]>::try_from(v).ok())
                .and_then(|v| quic::family(u32::from_be_bytes(v)))
                .is_some();
        if quic::client_version(data).is_some() || server_long {
            self.state = State::Quic(Box::new(quic::ClientInitials::new()));
            self.set_l7(L7_QUIC);
            return;
        }
        // DTLS 1.0/1.2 records (content types 20-25, versions 0xfeff/0xfefd).
        if data.len() >= 13
            && (20..=25).contains(&data[0])
            && data[1] == 0xfe
            && matches!(data[2], 0xff | 0xfd)
        {
            self.state = State::Opaque;
            self.set_l7(L7_DTLS);
            return;
        }
        if dir == Direction::Up && data[0] & 0xc0 == 0xc0 && data.len() >= 1200 {
            // A padded long-header packet of a QUIC version we cannot read (a future one, or a
            // greased version forcing negotiation): encrypted, not cleartext.
            self.state = State::Opaque;
            self.set_l7(L7_QUIC);
            return;
        }
        if self.dst_port == 443 && dir == Direction::Up && data[0] & 0x40 != 0 {
            // A QUIC short-header packet of a connection we joined late: encrypted.
            self.state = State::Opaque;
            self.set_l7(L7_QUIC);
            return;
        }
        self.state = State::Cleartext;
        self.result.cleartext = true;
    }

    /// Name a DNS flow from its first message's question (the query, or the response's copy of
    /// it when only the answer was seen).
    fn name_from_dns(&mut self, _dir: Direction, msg: &[u8]) {
        let Ok(m) = dns::parse_lenient(msg) else {
            return;
        };
        // An inverse query (opcode 1) asks about the owner of its answer record instead.
        let name = match m.query_name() {
            Some(q) => Some(q),
            None if m.opcode == 1 => m.answers.first().map(|rr| rr.name.as_str()),
            None => None,
        };
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            self.result.hostname = Some((name.to_string(), NameSource::DnsQuery));
        }
    }

    /// After STARTTLS/STLS in a cleartext protocol, the client's next bytes are a TLS hello:
    /// look for one starting a line of the client's stream.
    fn probe_starttls(&mut self) {
        let (buf, base) = (&self.up.buf, self.up.base);
        let mut from = self.tls_probe.saturating_sub(base);
        while let Some(i) = (from..buf.len()).find(|&i| {
            (base.saturating_add(i) == 0 || buf.get(i.wrapping_sub(1)) == Some(&b'\n'))
                && buf[i] == 22
                && buf.get(i.saturating_add(1)) == Some(&3)
                && buf.get(i.saturating_add(5)).is_none_or(|&t| t == 1)
        }) {
            match tls::client_hello_from_records(&buf[i..]) {
                Ok(Some(hello)) => {
                    self.apply_hello(&hello, NameSource::Sni);
                    return;
                }
                Ok(None) => {
                    // Incomplete: look here again with more bytes.
                    self.tls_probe = base.saturating_add(i);
                    return;
                }
                Err(_) => from = i.saturating_add(1),
            }
        }
        self.tls_probe = base.saturating_add(buf.len());
    }

    /// A TLS flow whose hello carried no SNI, the server's certificate still unread: TLS 1.2
    /// and older send it in clear, and its name is the best the flow will give.
    fn wants_certificate(&self) -> bool {
        self.saw_hello
            && self.result.hostname.is_none()
            && !self.cert_done
            && self.down.seen() < SCAN_LIMIT
    }

    /// Look for the server's certificate in its stream: from the start for a TLS flow, after
    /// the last cleartext line (the STARTTLS go-ahead) otherwise.
    fn name_from_certificate(&mut self) {
        if !self.saw_hello || self.result.hostname.is_some() || self.cert_done {
            return;
        }
        let (down, base) = (&self.down.buf, self.down.base);
        let start = if matches!(self.state, State::Tls { .. }) {
            Some(0)
        } else {
            (0..down.len()).find(|&i| {
                (base.saturating_add(i) == 0 || down.get(i.wrapping_sub(1)) == Some(&b'\n'))
                    && tls::looks_like_record(&down[i..])
            })
        };
        let Some(start) = start else {
            return;
        };
        match tls::server_certificate_name(&down[start..]) {
            Ok(None) if self.down.seen() < SCAN_LIMIT => {}
            Ok(Some(name)) => {
                self.result.hostname = Some((name, NameSource::Cert));
                self.cert_done = true;
            }
            _ => self.cert_done = true,
        }
    }

    fn apply_hello(&mut self, hello: &tls::ClientHello, source: NameSource) {
        self.saw_hello = true;
        if let Some(sni) = &hello.sni {
            self.result.hostname = Some((sni.clone(), source));
        }
        let info = &mut self.result.app_info;
        info.alpn = hello.alpn.clone();
        info.tls_version = tls::version_name(hello.version).map(str::to_string);
        info.ech = hello.ech;
        self.result.ech_config_id = hello.ech_config_id;
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::dissect::tls::build;

    fn hello_stream(host: &str, pad: usize) -> Vec<u8> {
        let hs = build::client_hello(&[
            build::sni(host),
            build::alpn(&["h2"]),
            build::versions(&[0x0304]),
            (51, vec![7; pad]),
        ]);
        build::records(&hs, 16384)
    }

    #[test]
    fn tls_hello_across_segments() {
        let stream = hello_stream("api.example.net", 1500);
        let mut ins = Inspector::new(Proto::Tcp, 443);
        for seg in stream.chunks(536) {
            assert!(ins.wants_more());
            ins.on_stream(Direction::Up, seg);
        }
        let r = ins.result();
        assert_eq!(
            r.hostname,
            Some(("api.example.net".into(), NameSource::Sni))
        );
        assert_eq!(r.app_info.l7.as_deref(), Some("tls"));
        assert_eq!(r.app_info.tls_version.as_deref(), Some("TLSv1.3"));
        assert_eq!(r.app_info.alpn, vec!["h2"]);
        assert!(!r.cleartext);
        assert!(!ins.wants_more());
        assert_eq!(ins.up.buf.capacity(), 0, "buffers are released once done");
    }

    #[test]
    fn a_window_grows_by_doubling_up_to_its_limit() {
        // An HTTP upload: its first 16 KiB are kept for the requests they may hold.
        let mut stream = b"POST /upload HTTP/1.1\r\nHost: up.example\r\n\r\n".to_vec();
        stream.resize(SCAN_LIMIT + 4000, b'x');
        let mut ins = Inspector::new(Proto::Tcp, 80);
        let mut most = 0;
        for segment in stream.chunks(1448) {
            ins.on_stream(Direction::Up, segment);
            most = most.max(ins.up.buf.capacity());
        }
        assert_eq!(ins.result().hostname.as_ref().unwrap().0, "up.example");
        assert_eq!(ins.up.seen(), SCAN_LIMIT);
        assert_eq!(most, SCAN_LIMIT, "doubling stops at the window");
    }

    #[test]
    fn a_cleartext_flow_keeps_only_what_is_still_to_be_read() {
        // 16 KiB each way in 1,448-byte segments, an IMEI split across two of them.
        let mut up = vec![b'a'; SCAN_LIMIT];
        up[1440..1462].copy_from_slice(b"&imei=490154203237518&");
        let down = vec![b'b'; SCAN_LIMIT];
        let mut ins = Inspector::new(Proto::Tcp, 7);
        let mut most = 0;
        for (u, d) in up.chunks(1448).zip(down.chunks(1448)) {
            ins.on_stream(Direction::Up, u);
            ins.on_stream(Direction::Down, d);
            most = most.max(ins.up.buf.capacity()).max(ins.down.buf.capacity());
        }
        assert!(ins.result().cleartext);
        assert_eq!(ins.result().leaks, vec![leaks::IMEI.to_string()]);
        assert!(most <= SCAN_OVERLAP + 1448, "held {most} bytes");
        assert!(!ins.wants_more(), "both directions scanned to the limit");
    }

    #[test]
    fn tls12_without_sni_is_named_by_the_certificate() {
        let hello = build::records(&build::client_hello(&[build::alpn(&["http/1.1"])]), 16384);
        let cert = x509::build::certificate(Some("legacy.example.org"), &[]);
        let flight = build::server_flight(&cert, 16384);
        let mut ins = Inspector::new(Proto::Tcp, 443);
        ins.on_stream(Direction::Up, &hello);
        assert_eq!(ins.result().hostname, None);
        assert!(ins.wants_more(), "waits for the server's certificate");
        for seg in flight.chunks(100) {
            ins.on_stream(Direction::Down, seg);
        }
        assert_eq!(
            ins.result().hostname,
            Some(("legacy.example.org".into(), NameSource::Cert))
        );
        assert!(!ins.wants_more());
        assert!(ins.up.buf.is_empty() && ins.down.buf.is_empty());

        // With an SNI the server's records are not even buffered.
        let mut named = Inspector::new(Proto::Tcp, 443);
        named.on_stream(Direction::Up, &hello_stream("sni.example", 0));
        named.on_stream(Direction::Down, &flight);
        assert_eq!(named.result().hostname.as_ref().unwrap().1, NameSource::Sni);
        assert!(named.down.buf.is_empty());
    }

    #[test]
    fn smtp_starttls_is_named_by_the_certificate() {
        let hello = build::records(&build::client_hello(&[]), 16384);
        let cert = x509::build::certificate(Some("mx.google.com"), &["smtp.google.com"]);
        let mut ins = Inspector::new(Proto::Tcp, 25);
        ins.on_stream(Direction::Down, b"220 mx.google.com ESMTP\r\n");
        ins.on_stream(Direction::Up, b"EHLO me\r\n");
        ins.on_stream(Direction::Down, b"250-mx.google.com\r\n250 STARTTLS\r\n");
        ins.on_stream(Direction::Up, b"STARTTLS\r\n");
        ins.on_stream(Direction::Down, b"220 2.0.0 Ready to start TLS\r\n");
        ins.on_stream(Direction::Up, &hello);
        ins.on_stream(Direction::Down, &build::server_flight(&cert, 16384));
        assert_eq!(
            ins.result().hostname,
            Some(("mx.google.com".into(), NameSource::Cert))
        );
    }

    #[test]
    fn http_request_in_pieces_with_leaks() {
        let ctx = Arc::new(DeviceScan::new(DeviceContext {
            model: Some("M2101K7BG".into()),
            ..DeviceContext::default()
        }));
        let mut ins = Inspector::new(Proto::Tcp, 80).with_context(ctx);
        let req = b"GET /api?oaid=3f2a9b1c7d4e5f60&m=M2101K7BG HTTP/1.1\r\nHost: tracking.intl.miui.com:80\r\n\r\n";
        for piece in req.chunks(5) {
            ins.on_stream(Direction::Up, piece);
        }
        ins.on_stream(Direction::Down, b"HTTP/1.1 200 OK\r\n\r\n");
        let r = ins.result();
        assert_eq!(
            r.hostname,
            Some(("tracking.intl.miui.com".into(), NameSource::Http))
        );
        assert_eq!(r.app_info.http_method.as_deref(), Some("GET"));
        assert!(r.cleartext);
        assert_eq!(r.leaks, vec!["model", "oaid"]);
        // The request is kept as evidence, the identifier's value replaced by its kind.
        assert_eq!(
            r.app_info.http_requests,
            vec![crate::flow::HttpRequest {
                method: "GET".into(),
                host: Some("tracking.intl.miui.com".into()),
                path: "/api?oaid=<oaid>&m=M2101K7BG".into(),
            }]
        );
        // Still scanning: more cleartext may follow.
        assert!(ins.wants_more());
    }

    #[test]
    fn http_requests_are_capped_in_number_and_length() {
        let mut ins = Inspector::new(Proto::Tcp, 80);
        let long = "a".repeat(3000);
        let mut stream = Vec::new();
        for i in 0..10 {
            stream.extend_from_slice(
                format!("GET /r{i}?q={long} HTTP/1.1\r\nHost: h.example\r\n\r\n").as_bytes(),
            );
        }
        for piece in stream.chunks(1400) {
            ins.on_stream(Direction::Up, piece);
        }
        let reqs = &ins.result().app_info.http_requests;
        // 16 KB of stream are buffered: 5 requests of ~3 KB fit; never more than 8.
        assert!(!reqs.is_empty() && reqs.len() <= crate::flow::MAX_HTTP_REQUESTS);
        for (i, r) in reqs.iter().enumerate() {
            assert!(r.path.starts_with(&format!("/r{i}?q=aaa")), "{}", r.path);
            assert_eq!(r.method.len() + "h.example".len() + r.path.len(), 1024);
        }
        let mut ins = Inspector::new(Proto::Tcp, 80);
        for i in 0..10 {
            ins.on_stream(
                Direction::Up,
                format!("GET /s{i} HTTP/1.1\r\nHost: h.example\r\n\r\n").as_bytes(),
            );
        }
        let reqs = &ins.result().app_info.http_requests;
        assert_eq!(reqs.len(), crate::flow::MAX_HTTP_REQUESTS);
        assert_eq!(reqs[7].path, "/s7");
    }

    #[test]
    fn scan_stops_after_the_limit() {
        let mut ins = Inspector::new(Proto::Tcp, 8080);
        ins.on_stream(Direction::Up, &vec![b'x'; SCAN_LIMIT + 10]);
        ins.on_stream(Direction::Down, &vec![b'y'; SCAN_LIMIT]);
        assert!(ins.result().cleartext);
        assert!(!ins.wants_more());
        // A pattern straddling two chunks is found.
        let mut ins = Inspector::new(Proto::Tcp, 8080);
        ins.on_stream(
            Direction::Up,
            b"POST /x HTTP/1.1\r\nHost: a.b\r\n\r\nandroid_id=9774d5",
        );
        ins.on_stream(Direction::Up, b"6d682e549c&z=1");
        assert_eq!(ins.result().leaks, vec!["android_id"]);
    }

    #[test]
    fn mipush_without_dns() {
        let mut ins = Inspector::new(Proto::Tcp, 5222);
        ins.on_stream(Direction::Up, &[0xc2, 0xfe, 0x00, 0x05, 0, 0, 0]);
        assert_eq!(ins.result().app_info.l7, None);
        ins.on_stream(Direction::Up, &[0x30, 0x00, 0x02, 0x00, 0x16, 0, 0, 0, 0]);
        assert_eq!(ins.result().app_info.l7.as_deref(), Some("mipush"));
        assert!(ins.result().cleartext);
    }

    #[test]
    fn dns_flow_named_by_its_question() {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x04data\x06mistat\x06xiaomi\x03com\x00\x00\x01\x00\x01");
        let mut ins = Inspector::new(Proto::Udp, 53);
        assert_eq!(
            dns::parse(&q).unwrap().query_name(),
            Some("data.mistat.xiaomi.com")
        );
        ins.on_datagram(Direction::Up, &q);
        assert_eq!(
            ins.result().hostname,
            Some(("data.mistat.xiaomi.com".into(), NameSource::DnsQuery))
        );
        assert_eq!(ins.result().app_info.l7.as_deref(), Some("dns"));
        // Over TCP, with the length prefix and split in two.
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        let mut ins = Inspector::new(Proto::Tcp, 53);
        ins.on_stream(Direction::Up, &framed[..10]);
        assert_eq!(ins.result().hostname, None);
        ins.on_stream(Direction::Up, &framed[10..]);
        assert_eq!(
            ins.result().hostname,
            Some(("data.mistat.xiaomi.com".into(), NameSource::DnsQuery))
        );
    }

    #[test]
    fn quic_initial_names_the_flow() {
        let hex = include_str!("testdata/rfc9001-a2-client-initial.hex");
        let s: String = hex.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        let packet: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        let mut ins = Inspector::new(Proto::Udp, 443);
        ins.on_datagram(Direction::Up, &packet);
        let r = ins.result();
        assert_eq!(r.hostname, Some(("example.com".into(), NameSource::Quic)));
        assert_eq!(r.app_info.l7.as_deref(), Some("quic"));
        assert!(!r.cleartext);
        assert!(!ins.wants_more());
    }

    #[test]
    fn garbage_udp_is_cleartext_and_bounded() {
        let mut ins = Inspector::new(Proto::Udp, 9999);
        let mut n = 0;
        while ins.wants_more() {
            ins.on_datagram(Direction::Up, &[0x01; 1400]);
            n += 1;
            assert!(n < 100);
        }
        assert!(ins.result().cleartext);
        assert!(ins.result().hostname.is_none());
    }

    #[test]
    fn reply_first_then_request() {
        let mut ins = Inspector::new(Proto::Tcp, 80);
        ins.on_stream(
            Direction::Down,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert!(ins.result().cleartext);
        assert!(ins.wants_more());
        ins.on_stream(
            Direction::Up,
            b"GET /x HTTP/1.1\r\nHost: 198.18.0.9\r\n\r\n",
        );
        // An address in Host is reported as is; the Namer prefers a DNS name over it.
        assert_eq!(
            ins.result().hostname,
            Some(("198.18.0.9".into(), NameSource::Http))
        );
        assert_eq!(ins.result().app_info.http_method.as_deref(), Some("GET"));
    }

    #[test]
    fn starttls_hello_after_banner() {
        let mut ins = Inspector::new(Proto::Tcp, 25);
        ins.on_stream(Direction::Down, b"220 mx.example ESMTP\r\n");
        ins.on_stream(Direction::Up, b"EHLO me\r\n");
        ins.on_stream(Direction::Down, b"250-mx.example\r\n250 STARTTLS\r\n");
        ins.on_stream(Direction::Up, b"STARTTLS\r\n");
        ins.on_stream(Direction::Down, b"220 go ahead\r\n");
        let hello = hello_stream("mx.example", 300);
        ins.on_stream(Direction::Up, &hello[..100]);
        assert_eq!(ins.result().hostname, None);
        ins.on_stream(Direction::Up, &hello[100..]);
        assert_eq!(
            ins.result().hostname,
            Some(("mx.example".into(), NameSource::Sni))
        );
        assert!(ins.result().cleartext);
    }

    #[test]
    fn inverse_query_named_by_its_answer_owner() {
        // IQUERY (opcode 1), no question, one empty A record owned by "216.58.202.4".
        let mut m = vec![0x77, 0xfc, 0x09, 0x00, 0, 0, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(
            b"\x03216\x0258\x03202\x014\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00",
        );
        let mut ins = Inspector::new(Proto::Udp, 53);
        ins.on_datagram(Direction::Up, &m);
        assert_eq!(
            ins.result().hostname,
            Some(("216.58.202.4".into(), NameSource::DnsQuery))
        );
    }

    #[test]
    fn unknown_quic_version_is_not_cleartext() {
        let mut packet = vec![0xc3, 0x1a, 0x2a, 0x3a, 0x4a, 8];
        packet.resize(1250, 0x5c);
        let mut ins = Inspector::new(Proto::Udp, 443);
        ins.on_datagram(Direction::Up, &packet);
        assert_eq!(ins.result().app_info.l7.as_deref(), Some("quic"));
        assert!(!ins.result().cleartext);
        assert!(!ins.wants_more());
    }
}
