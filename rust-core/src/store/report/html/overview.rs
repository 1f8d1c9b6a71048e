//! The page's head and the summary cards.

use std::fmt::Write;

use super::super::{Report, human_bytes, human_duration, utc};
use super::{STYLE, esc};

/// The document head (inline style, a CSP that forbids every fetch) and the page header.
pub(super) fn head(o: &mut String, r: &Report) {
    let title = format!("PhoneHome report: {}", r.scope.label);
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <title>{}</title><style>{STYLE}</style></head><body>\
         <header><h1>{}</h1><p>Generated {} from {} &middot; {}</p></header><main>",
        esc(&title),
        esc(&title),
        esc(&utc(r.generated_at)),
        esc(&r.database),
        esc(r.schema)
    );
}

/// The totals as cards: contacts and lookups apart, Xiaomi and cleartext counts flagged.
pub(super) fn summary(o: &mut String, r: &Report) {
    let t = &r.totals;
    o.push_str("<section><h2>Summary</h2><div class=\"cards\">");
    card(o, &t.contacts.to_string(), "contacts (connections)", false);
    card(o, &t.lookups.to_string(), "DNS lookups", false);
    card(
        o,
        &human_bytes(t.bytes_up),
        "sent (up), DNS flows included",
        false,
    );
    card(
        o,
        &human_bytes(t.bytes_down),
        "received (down), DNS flows included",
        false,
    );
    card(o, &t.apps.to_string(), "apps", false);
    card(o, &t.domains.to_string(), "domains", false);
    // Flagged when not zero: each is a finding the reader should not miss.
    let flagged = [
        (t.xiaomi_contacts, "contacts with Xiaomi"),
        (t.xiaomi_endpoints, "Xiaomi endpoints"),
        (t.cleartext_flows, "cleartext contacts"),
        (t.leak_flows, "flows leaking identifiers"),
    ];
    for (count, label) in flagged {
        card(o, &count.to_string(), label, count > 0);
    }
    o.push_str("</div>");
    if let (Some(a), Some(b)) = (t.first_contact, t.last_contact) {
        let _ = write!(
            o,
            "<p class=\"muted\">Traffic from {} to {} ({}).</p>",
            esc(&utc(a)),
            esc(&utc(b)),
            esc(&human_duration(b - a))
        );
    }
    o.push_str("</section>");
}

fn card(o: &mut String, value: &str, label: &str, alert: bool) {
    let _ = write!(
        o,
        "<div class=\"card{}\"><b>{}</b><span>{}</span></div>",
        if alert { " alert" } else { "" },
        esc(value),
        esc(label)
    );
}
