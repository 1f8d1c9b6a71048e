//! The context of the numbers: what the capture could not see, how to run the experiment, and
//! the sessions and markers the report covers.

use std::fmt::Write;

use super::super::{ExperimentGuide, Report, human_duration, utc};
use super::esc;

/// The blind spots (DNS over TLS/HTTPS, ECH, unnamed traffic) as notes.
pub(super) fn visibility(o: &mut String, r: &Report) {
    o.push_str("<section><h2>What this capture could not see</h2><ul class=\"notes\">");
    for n in &r.visibility.notes {
        let _ = write!(o, "<li>{}</li>", esc(n));
    }
    o.push_str("</ul></section>");
}

/// The guided "data sharing off" experiment.
pub(super) fn experiment(o: &mut String, g: &ExperimentGuide) {
    let _ = write!(
        o,
        "<section><h2>The &ldquo;data sharing off&rdquo; experiment</h2><p>{}</p><ol class=\"steps\">",
        esc(g.intro)
    );
    for s in g.steps {
        let _ = write!(
            o,
            "<li><b>{}</b> &mdash; search Settings for &ldquo;{}&rdquo;. <span class=\"muted\">{}</span> {}</li>",
            esc(s.title),
            esc(&s.search.join("” / “")),
            esc(s.path),
            esc(s.note)
        );
    }
    o.push_str("</ol></section>");
}

/// Every session in scope, then the markers.
pub(super) fn sessions_and_markers(o: &mut String, r: &Report) {
    o.push_str(
        "<section><h2>Sessions and markers</h2><table><tr><th>#</th><th>Kind</th><th>Started</th>\
                <th>Duration</th><th>Device</th><th>Note</th><th class=\"n\">Contacts</th><th class=\"n\">Lookups</th></tr>",
    );
    for s in &r.sessions {
        let duration = match (s.running, s.ended) {
            (true, _) => "running".to_string(),
            (false, Some(e)) => human_duration(e - s.started),
            (false, None) => "interrupted".to_string(),
        };
        let device = [
            s.device.as_deref(),
            s.os.as_deref(),
            s.app_version.as_deref(),
        ]
        .iter()
        .flatten()
        .copied()
        .collect::<Vec<_>>()
        .join(" · ");
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            s.id,
            esc(&s.kind),
            esc(&utc(s.started)),
            esc(&duration),
            esc(&device),
            esc(s.note.as_deref().unwrap_or("")),
            s.contacts,
            s.lookups
        );
    }
    o.push_str("</table>");
    if !r.markers.is_empty() {
        o.push_str("<table><tr><th>Marker</th><th>Session</th><th>Time</th><th>Label</th></tr>");
        for m in &r.markers {
            let _ = write!(
                o,
                "<tr><td>m{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                m.id,
                m.session,
                esc(&utc(m.time)),
                esc(&m.label)
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section>");
}
