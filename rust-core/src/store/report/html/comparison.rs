//! The before/after comparison: who kept phoning home after "off", per app and category.

use std::fmt::Write;

use super::super::text::rate;
use super::super::{counted, human_bytes, human_duration};
use super::charts::{Bar, hbars};
use super::{esc, short_utc};
use crate::store::experiment::{Comparison, Counts};

/// The comparison of the two windows of an experiment.
pub(super) fn section(o: &mut String, c: &Comparison) {
    let _ = write!(
        o,
        "<section><h2>Still phoning home after &ldquo;off&rdquo;</h2>\
         <p>Before: <b>{}</b> ({}, {} with Xiaomi, {}, {}). After: <b>{}</b> \
         ({}, {} with Xiaomi, {}, {}).</p>",
        esc(&c.before.label),
        counted(c.before.totals.contacts, "contact", "contacts"),
        c.before.totals.xiaomi_contacts,
        counted(c.before.totals.lookups, "lookup", "lookups"),
        esc(&human_duration(c.before.duration_ms)),
        esc(&c.after.label),
        counted(c.after.totals.contacts, "contact", "contacts"),
        c.after.totals.xiaomi_contacts,
        counted(c.after.totals.lookups, "lookup", "lookups"),
        esc(&human_duration(c.after.duration_ms))
    );
    if let Some(note) = &c.note {
        let _ = write!(o, "<p class=\"warn\"><b>{}</b></p>", esc(note));
    }
    if c.still_phoning_home.is_empty() {
        o.push_str("<p>No Xiaomi endpoint was contacted in the &ldquo;after&rdquo; window.</p>");
    } else {
        let _ = write!(
            o,
            "<p>{} Xiaomi endpoint(s) from {} app(s) kept phoning home: {}.</p>\
             <table><tr><th>Endpoint</th><th>Category</th><th>Purpose</th><th>Apps</th>\
             <th class=\"n\">Contacts after</th><th class=\"n\">Bytes after</th><th>Last contact (UTC)</th></tr>",
            c.still_phoning_home.len(),
            c.apps_still_phoning_home.len(),
            esc(&c.apps_still_phoning_home.join(", "))
        );
        const ROWS: usize = 40;
        for s in c.still_phoning_home.iter().take(ROWS) {
            let _ = write!(
                o,
                "<tr><td>{}{}</td><td>{}</td><td>{}</td><td class=\"apps\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"t\">{}</td></tr>",
                esc(&s.endpoint),
                if s.seen_before {
                    ""
                } else {
                    " <span class=\"new\">new</span>"
                },
                esc(s.category.as_deref().unwrap_or("")),
                esc(s.purpose.as_deref().unwrap_or("")),
                esc(&s.apps.join(", ")),
                s.contacts_after,
                esc(&human_bytes(s.bytes_after)),
                esc(&short_utc(s.last_contact))
            );
        }
        o.push_str("</table>");
        if c.still_phoning_home.len() > ROWS {
            let _ = write!(
                o,
                "<p class=\"muted\">... and {} more endpoints contacted less often (all of them \
                 are in the JSON report).</p>",
                c.still_phoning_home.len() - ROWS
            );
        }
    }
    if !c.stopped.is_empty() {
        let _ = write!(
            o,
            "<p>Stopped after &ldquo;off&rdquo;: {}.</p>",
            esc(&c.stopped.join(", "))
        );
    }
    o.push_str("<h2>Xiaomi contacts per hour, per app: before vs after</h2>");
    let rows: Vec<Bar> = c
        .apps
        .iter()
        .filter(|a| a.xiaomi_contacts_before + a.xiaomi_contacts_after > 0)
        .take(20)
        .flat_map(|a| {
            // None when the window is too short for a rate: shown as "n/a", not as 0.
            let hours = |w: &Counts, x: i64| {
                w.contacts_per_hour.map(|rate| {
                    if w.contacts > 0 {
                        rate * x as f64 / w.contacts as f64
                    } else {
                        0.0
                    }
                })
            };
            let before = hours(&a.before, a.xiaomi_contacts_before);
            let after = hours(&a.after, a.xiaomi_contacts_after);
            let note = |r: Option<f64>| r.map_or_else(|| "n/a".into(), |r| format!("{r:.1}/h"));
            [
                Bar {
                    label: format!("{} (before)", a.app),
                    segments: vec![((before.unwrap_or(0.0) * 10.0) as i64, "before")],
                    note: note(before),
                },
                Bar {
                    label: "after".into(),
                    segments: vec![((after.unwrap_or(0.0) * 10.0) as i64, "after")],
                    note: note(after),
                },
            ]
        })
        .collect();
    o.push_str(&hbars(&rows, 1000));
    o.push_str(
        "<h2>Xiaomi categories: contacts before vs after</h2><table><tr><th>Category</th>\
                <th class=\"n\">Before</th><th class=\"n\">After</th><th class=\"n\">Before /h</th>\
                <th class=\"n\">After /h</th></tr>",
    );
    for cat in &c.categories {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td></tr>",
            esc(&cat.category),
            cat.before.contacts,
            cat.after.contacts,
            rate(cat.before.contacts_per_hour),
            rate(cat.after.contacts_per_hour)
        );
    }
    o.push_str("</table></section>");
}
