//! What the traffic was: per app, over time, per Xiaomi category and country, per domain.

use std::fmt::Write;

use super::super::{Report, counted, human_bytes};
use super::charts::{Bar, hbars, series_timelines, timeline};
use super::{esc, short_utc};

/// Bytes per app as bars, then every app with its contacts and lookups.
pub(super) fn apps(o: &mut String, r: &Report) {
    o.push_str("<section><h2>Apps</h2><p class=\"legend muted\"><span style=\"background:#d9480f\"></span>sent\
                <span style=\"background:#1971c2\"></span>received (an app's bytes include its DNS \
                flows)</p>");
    let rows: Vec<Bar> = r
        .apps
        .iter()
        .take(20)
        .map(|a| Bar {
            label: a.app.clone(),
            segments: vec![(a.bytes_up, "up"), (a.bytes_down, "down")],
            note: format!(
                "{} · {} · {}",
                human_bytes(a.bytes_up + a.bytes_down),
                counted(a.contacts, "contact", "contacts"),
                counted(a.lookups, "lookup", "lookups")
            ),
        })
        .collect();
    o.push_str(&hbars(&rows, 1000));
    o.push_str(
        "<table><tr><th>App</th><th class=\"n\">Contacts</th><th class=\"n\">Lookups</th><th class=\"n\">Up</th><th class=\"n\">Down</th>\
         <th class=\"n\">Xiaomi endpoints</th><th>Categories</th><th>Countries</th>\
         <th class=\"n\">Cleartext</th><th class=\"n\">Leaks</th><th>First / last contact (UTC)</th></tr>",
    );
    for a in &r.apps {
        let cats: String = a
            .categories
            .iter()
            .map(|c| format!("<span class=\"tag\">{}</span>", esc(c)))
            .collect();
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td>{cats}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"t muted\">{}<br>{}</td></tr>",
            esc(&a.app),
            a.contacts,
            a.lookups,
            esc(&human_bytes(a.bytes_up)),
            esc(&human_bytes(a.bytes_down)),
            a.xiaomi_endpoints,
            esc(&a.countries.join(", ")),
            a.cleartext_flows,
            a.leak_flows,
            esc(&short_utc(a.first_contact)),
            esc(&short_utc(a.last_contact))
        );
    }
    o.push_str("</table></section>");
}

/// Contacts over time (all, Xiaomi, markers), then per app and per company.
pub(super) fn timelines(o: &mut String, r: &Report) {
    o.push_str("<section><h2>Timeline</h2>");
    o.push_str(&timeline(r));
    o.push_str("</section>");

    o.push_str(&series_timelines(&r.app_timelines, "app", "app_timelines"));
    o.push_str(&series_timelines(
        &r.company_timelines,
        "company",
        "company_timelines",
    ));
}

/// Xiaomi contacts per catalog category, and contacts per server country.
pub(super) fn categories_and_countries(o: &mut String, r: &Report) {
    o.push_str("<section><h2>Xiaomi endpoints by category</h2>");
    let rows: Vec<Bar> = r
        .categories
        .iter()
        .map(|c| Bar {
            label: c.category.clone(),
            segments: vec![(c.contacts, "mi")],
            note: format!(
                "{} · {}{}",
                counted(c.contacts, "contact", "contacts"),
                counted(c.endpoints, "endpoint", "endpoints"),
                if c.guessed_flows > 0 {
                    format!(" · {} guessed", c.guessed_flows)
                } else {
                    String::new()
                }
            ),
        })
        .collect();
    o.push_str(&hbars(&rows, 1000));
    o.push_str("</section><section><h2>Countries</h2>");
    let rows: Vec<Bar> = r
        .countries
        .iter()
        .take(25)
        .map(|c| Bar {
            label: c.country.clone(),
            segments: vec![
                (c.contacts - c.xiaomi_contacts, "all"),
                (c.xiaomi_contacts, "mi"),
            ],
            note: format!(
                "{} · {}",
                counted(c.contacts, "contact", "contacts"),
                counted(c.apps, "app", "apps")
            ),
        })
        .collect();
    o.push_str(&hbars(&rows, 1000));
    o.push_str("<p class=\"legend muted\"><span style=\"background:#74c0fc\"></span>other contacts\
                <span style=\"background:#e8590c\"></span>Xiaomi contacts &middot; country of the server address (offline database)</p></section>");
}

/// The 50 domains most contacted, with their lookups.
pub(super) fn domains(o: &mut String, r: &Report) {
    let _ = write!(
        o,
        "<section><h2>Top domains</h2><p class=\"muted\">Bytes are those of the contacts; a \
         lookup's bytes stay with the app that made it.</p><table><tr><th>Domain</th><th>Vendor / category</th><th>Purpose</th>\
         <th class=\"n\">Contacts</th><th class=\"n\">Lookups</th><th class=\"n\">Bytes</th><th>Apps</th><th>Countries</th></tr>"
    );
    for d in r.domains.iter().take(50) {
        let cat = match (&d.vendor, &d.category) {
            (Some(v), Some(c)) => format!(
                "{} <span class=\"tag{}\">{}</span>",
                esc(v),
                if d.category_guessed { " guess" } else { "" },
                esc(c)
            ),
            (Some(v), None) => esc(v),
            _ => String::new(),
        };
        let _ = write!(
            o,
            "<tr><td>{}{}</td><td>{cat}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td>{}</td><td>{}</td></tr>",
            esc(&d.domain),
            if d.named {
                ""
            } else {
                " <span class=\"muted\">(no name)</span>"
            },
            esc(d.purpose.as_deref().unwrap_or("")),
            d.contacts,
            d.lookups,
            esc(&human_bytes(d.bytes_up + d.bytes_down)),
            esc(&d.apps.join(", ")),
            esc(&d.countries.join(", "))
        );
    }
    o.push_str("</table></section>");
}
