//! The report's evidence sections (issue 8 points 3-5), as text and HTML: contacts per company
//! with their hourly/daily numbers, identifier kinds per app and endpoint, and the cleartext
//! requests kept.

use std::fmt::Write;

use super::text::wrap;
use super::{Report, counted, human_bytes, utc};

/// The text report's width.
const WIDTH: usize = 118;

fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}

/// The experiment's per-company comparison for a terminal.
pub fn comparison_text(r: &Report, o: &mut String) {
    let Some(changes) = &r.comparison_companies else {
        return;
    };
    let _ = writeln!(
        o,
        "\nCOMPANIES BEFORE VS AFTER (contacts = connections; lookups = DNS queries)"
    );
    let _ = writeln!(
        o,
        "  {:18} {:>10} {:>10} {:>10} {:>10}  APPS AFTER",
        "COMPANY", "CONT BEF", "CONT AFT", "LOOK BEF", "LOOK AFT"
    );
    for c in changes {
        let _ = writeln!(
            o,
            "  {:18} {:>10} {:>10} {:>10} {:>10}  {}",
            c.company,
            c.contacts_before,
            c.contacts_after,
            c.lookups_before,
            c.lookups_after,
            c.apps_after.join(", ")
        );
    }
}

/// The experiment's per-company comparison as HTML.
pub fn comparison_html(r: &Report, o: &mut String, esc: fn(&str) -> String) {
    let Some(changes) = &r.comparison_companies else {
        return;
    };
    o.push_str(
        "<section><h2>Companies before vs after</h2><table><tr><th>Company</th>\
         <th>Contacts before</th><th>Contacts after</th><th>Lookups before</th>\
         <th>Lookups after</th><th>Apps after</th></tr>",
    );
    for c in changes {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.company),
            c.contacts_before,
            c.contacts_after,
            c.lookups_before,
            c.lookups_after,
            esc(&c.apps_after.join(", "))
        );
    }
    o.push_str("</table></section>");
}

/// The three sections for a terminal.
pub fn text(r: &Report, o: &mut String) {
    comparison_text(r, o);
    let _ = writeln!(
        o,
        "\nCOMPANIES (contacts = connections; lookups = DNS queries for their names; bytes of the contacts)"
    );
    let _ = writeln!(
        o,
        "  {:18} {:>8} {:>8} {:>10} {:>10} {:>4}  {:16} {:16} VIA",
        "COMPANY", "CONTACTS", "LOOKUPS", "UP", "DOWN", "APPS", "FIRST", "LAST"
    );
    for c in &r.companies {
        let time = |t: Option<i64>| {
            t.map(|t| utc(t).chars().take(16).collect())
                .unwrap_or_else(|| "-".to_string())
        };
        let _ = writeln!(
            o,
            "  {:18} {:>8} {:>8} {:>10} {:>10} {:>4}  {:16} {:16} {}",
            c.company,
            c.contacts,
            c.lookups,
            human_bytes(c.bytes_up),
            human_bytes(c.bytes_down),
            c.apps.len(),
            time(c.first_contact),
            time(c.last_contact),
            if c.via_providers.is_empty() {
                "-".to_string()
            } else {
                c.via_providers.join(", ")
            }
        );
    }
    let hourly: Vec<_> = r
        .companies
        .iter()
        .filter(|c| !c.per_hour.is_empty())
        .collect();
    if !hourly.is_empty() {
        let _ = writeln!(
            o,
            "\nCONTACTS PER HOUR PER COMPANY (UTC; hours without contacts left out)"
        );
        for c in hourly.iter().take(20) {
            let cells: Vec<String> = c
                .per_hour
                .iter()
                .map(|b| format!("{}h={}", &utc(b.start)[5..13], b.contacts))
                .collect();
            let indent = " ".repeat(21);
            let _ = writeln!(
                o,
                "  {:18} {}",
                c.company,
                wrap(&cells.join(" "), WIDTH - 21, &indent)
            );
        }
        for c in hourly.iter().filter(|c| !c.per_day.is_empty()).take(20) {
            let cells: Vec<String> = c
                .per_day
                .iter()
                .map(|b| format!("{}={}", &utc(b.start)[..10], b.contacts))
                .collect();
            let indent = " ".repeat(21);
            let _ = writeln!(
                o,
                "  {:18} {}",
                format!("{} per day", c.company),
                wrap(&cells.join(" "), WIDTH - 21, &indent)
            );
        }
    }

    let _ = writeln!(
        o,
        "\nIDENTIFIERS SENT IN CLEARTEXT (per app and endpoint; flows = flows carrying an identifier;\n  model/OS version are device descriptors, listed apart and not counted)"
    );
    if r.identifiers.is_empty() {
        let _ = writeln!(o, "  none seen");
    }
    for u in &r.identifiers {
        let line = format!(
            "{} -> {} ({}): {}; {}, {} .. {}{}",
            u.app,
            u.endpoint,
            or_dash(u.company.as_deref()),
            u.identifiers.join(", "),
            counted(u.flows, "flow", "flows"),
            utc(u.first_seen),
            utc(u.last_seen),
            if u.descriptors.is_empty() {
                String::new()
            } else {
                format!("; descriptors: {}", u.descriptors.join(", "))
            }
        );
        let _ = writeln!(o, "  {}", wrap(&line, WIDTH, "    "));
    }

    let _ = writeln!(
        o,
        "\nCLEARTEXT HTTP REQUESTS (first requests per flow; identifier values replaced by <kind>)"
    );
    if r.cleartext_requests.is_empty() {
        let _ = writeln!(o, "  none kept");
    }
    for q in &r.cleartext_requests {
        let _ = writeln!(o, "  {} {} {}", utc(q.time), q.app, q.method);
        let url: Vec<char> = format!(
            "http://{}{}",
            q.host.as_deref().unwrap_or(&q.endpoint),
            q.path
        )
        .chars()
        .collect();
        // Long URLs continue on the next lines, cut at the width (no spaces to wrap at).
        for piece in url.chunks(WIDTH - 4) {
            let _ = writeln!(o, "    {}", piece.iter().collect::<String>());
        }
    }
}

/// The three sections as HTML; `esc` escapes text.
pub fn html(r: &Report, o: &mut String, esc: fn(&str) -> String) {
    comparison_html(r, o, esc);
    let time = |t: Option<i64>| {
        t.map(|t| utc(t).chars().take(16).collect())
            .unwrap_or_else(|| "-".to_string())
    };
    o.push_str(
        "<section><h2>Companies</h2><p class=\"muted\">Contacts are connections to the company's \
         endpoints; lookups are DNS queries for its names, counted apart. Up and down are the bytes \
         of the contacts. \"Via\": whose network served the connections (a CDN or cloud).</p><table><tr><th>Company</th><th>Contacts</th>\
         <th>Lookups</th><th>Up</th><th>Down</th><th>Apps</th><th>First</th><th>Last</th>\
         <th>Via</th><th>Contacts per hour</th></tr>",
    );
    for c in &r.companies {
        let hours: Vec<String> = c
            .per_hour
            .iter()
            .map(|b| format!("{}h={}", &utc(b.start)[5..13], b.contacts))
            .collect();
        let _ = write!(
            o,
            "<tr><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(c.description.as_deref().unwrap_or("")),
            esc(&c.company),
            c.contacts,
            c.lookups,
            human_bytes(c.bytes_up),
            human_bytes(c.bytes_down),
            esc(&c.apps.join(", ")),
            time(c.first_contact),
            time(c.last_contact),
            esc(&c.via_providers.join(", ")),
            esc(&hours.join(" "))
        );
    }
    o.push_str("</table></section>");

    o.push_str(
        "<section><h2>Identifiers sent in cleartext</h2><p class=\"muted\">Per app and endpoint. \
         Flows: flows carrying at least one identifier. The model and OS version are device \
         descriptors: shown apart, not counted.</p><table><tr><th>App</th><th>Endpoint</th>\
         <th>Company</th><th>Identifiers</th><th>Flows</th><th>First</th><th>Last</th>\
         <th>Descriptors</th></tr>",
    );
    if r.identifiers.is_empty() {
        o.push_str("<tr><td colspan=\"8\" class=\"muted\">none seen</td></tr>");
    }
    for u in &r.identifiers {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td></tr>",
            esc(&u.app),
            esc(&u.endpoint),
            esc(or_dash(u.company.as_deref())),
            esc(&u.identifiers.join(", ")),
            u.flows,
            time(Some(u.first_seen)),
            time(Some(u.last_seen)),
            esc(&u.descriptors.join(", "))
        );
    }
    o.push_str("</table></section>");

    o.push_str(
        "<section><h2>Cleartext HTTP requests</h2><p class=\"muted\">The first requests of each \
         unencrypted flow (at most 8 per flow, 1 KB each); identifier values are replaced by \
         their kind, bodies are never kept.</p><table><tr><th>Time</th><th>App</th>\
         <th>Company</th><th>Method</th><th>URL</th></tr>",
    );
    if r.cleartext_requests.is_empty() {
        o.push_str("<tr><td colspan=\"5\" class=\"muted\">none kept</td></tr>");
    }
    for q in &r.cleartext_requests {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td style=\"word-break:break-all\"><code>http://{}{}</code></td></tr>",
            time(Some(q.time)),
            esc(&q.app),
            esc(or_dash(q.company.as_deref())),
            esc(&q.method),
            esc(q.host.as_deref().unwrap_or(&q.endpoint)),
            esc(&q.path)
        );
    }
    o.push_str("</table></section>");
}
