//! The report for a terminal: plain text, at most ~100 columns, most important first.

use std::fmt::Write;

use super::{Report, counted, human_bytes, human_duration, noun, utc};
use crate::store::timeline::{ContactTimelines, DAY_MS};

/// Cuts `s` to `width` characters, marking the cut with '~'.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
        out.push('~');
        out
    }
}

/// Word-wraps `text` to `width` columns; continuation lines start with `indent`.
pub(super) fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if line_len > 0 && line_len + 1 + len > width {
            out.push('\n');
            out.push_str(indent);
            line_len = indent.chars().count();
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += len;
    }
    out
}

const BARS: &[char] = &[' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

fn sparkline(values: &[i64]) -> String {
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    values
        .iter()
        .map(|&v| BARS[((v * 8 + max - 1) / max).clamp(0, 8) as usize])
        .collect()
}

pub fn render(r: &Report) -> String {
    let mut o = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let title = format!("PhoneHome report: {} ({})", r.scope.label, r.database);
    let _ = writeln!(o, "{}", wrap(&title, 100, "  "));
    let t = &r.totals;
    if let (Some(a), Some(b)) = (t.first_contact, t.last_contact) {
        let _ = writeln!(
            o,
            "Traffic from {} to {} ({})",
            utc(a),
            utc(b),
            human_duration(b - a)
        );
    }
    let _ = writeln!(
        o,
        "{} (connections, DNS not counted), {}, {}, {}",
        counted(t.contacts, "contact", "contacts"),
        counted(t.lookups, "DNS lookup", "DNS lookups"),
        counted(t.apps, "app", "apps"),
        counted(t.domains, "domain", "domains")
    );
    let _ = writeln!(
        o,
        "{} up / {} down in all flows (DNS included)",
        human_bytes(t.bytes_up),
        human_bytes(t.bytes_down)
    );
    let _ = writeln!(
        o,
        "Xiaomi: {} with {}. Cleartext contacts: {}. Flows leaking identifiers: {}.",
        counted(t.xiaomi_contacts, "contact", "contacts"),
        counted(t.xiaomi_endpoints, "endpoint", "endpoints"),
        t.cleartext_flows,
        t.leak_flows
    );

    if !r.sessions.is_empty() {
        let _ = writeln!(o, "\nSESSIONS");
        for s in r.sessions.iter().rev().take(10) {
            let state = if s.running {
                "running".to_string()
            } else if let Some(e) = s.ended {
                format!("ran {}", human_duration(e - s.started))
            } else {
                "interrupted".to_string()
            };
            let device = [s.device.as_deref(), s.os.as_deref()]
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                o,
                "  #{:<4} {:<8} {}  {:>7} {:<8} {:>7} {:<7}  {:<12} {}",
                s.id,
                s.kind,
                utc(s.started),
                s.contacts,
                noun(&s.contacts, "contact", "contacts"),
                s.lookups,
                noun(&s.lookups, "lookup", "lookups"),
                state,
                fit(&device, 30)
            );
        }
        if r.sessions.len() > 10 {
            let _ = writeln!(o, "  ... {} older sessions", r.sessions.len() - 10);
        }
    }
    if !r.markers.is_empty() {
        let _ = writeln!(o, "\nMARKERS");
        for m in &r.markers {
            let _ = writeln!(
                o,
                "  m{:<4} session {:<4} {}  {}",
                m.id,
                m.session,
                utc(m.time),
                fit(&m.label, 50)
            );
        }
    }

    if let Some(c) = &r.comparison {
        let _ = writeln!(o, "\nBEFORE / AFTER");
        for (name, w) in [("before", &c.before), ("after", &c.after)] {
            let span = human_duration(w.duration_ms);
            let _ = writeln!(
                o,
                "  {name:<7} {}: {} ({} Xiaomi), {} over {span}",
                w.label,
                counted(w.totals.contacts, "contact", "contacts"),
                w.totals.xiaomi_contacts,
                counted(w.totals.lookups, "lookup", "lookups")
            );
        }
        if let Some(note) = &c.note {
            let _ = writeln!(o, "  NOTE: {}", wrap(note, 94, "    "));
        }
        let _ = writeln!(
            o,
            "\nSTILL PHONING HOME after \"off\" ({} Xiaomi endpoints)",
            c.still_phoning_home.len()
        );
        let _ = writeln!(
            o,
            "  {:<36} {:<20} {:>7} {:>10}  apps",
            "endpoint", "category", "contacts", "bytes"
        );
        for s in c.still_phoning_home.iter().take(30) {
            let _ = writeln!(
                o,
                "  {:<36} {:<20} {:>7} {:>10}  {}{}",
                fit(&s.endpoint, 36),
                fit(s.category.as_deref().unwrap_or("-"), 20),
                s.contacts_after,
                human_bytes(s.bytes_after),
                fit(&s.apps.join(","), 30),
                if s.seen_before { "" } else { " (new)" }
            );
        }
        if !c.stopped.is_empty() {
            let stopped = format!(
                "  Stopped after \"off\": {}",
                fit(&c.stopped.join(", "), 400)
            );
            let _ = writeln!(o, "{}", wrap(&stopped, 100, "    "));
        }
        let _ = writeln!(
            o,
            "\nAPPS BEFORE -> AFTER (contacts per hour of each window's real length; Xiaomi contacts)"
        );
        for a in c.apps.iter().take(20) {
            let _ = writeln!(
                o,
                "  {:<36} {:>8} -> {:<8} Xiaomi {:>5} -> {:<5}",
                fit(&a.app, 36),
                rate(a.before.contacts_per_hour),
                rate(a.after.contacts_per_hour),
                a.xiaomi_contacts_before,
                a.xiaomi_contacts_after
            );
        }
        let _ = writeln!(o, "\nXIAOMI CATEGORIES BEFORE -> AFTER (contacts)");
        for cat in &c.categories {
            let _ = writeln!(
                o,
                "  {:<24} {:>7} -> {:<7}",
                fit(&cat.category, 24),
                cat.before.contacts,
                cat.after.contacts
            );
        }
    }

    let _ = writeln!(o, "\nAPPS (by bytes; an app's bytes include its DNS flows)");
    let _ = writeln!(
        o,
        "  {:<34} {:>8} {:>7} {:>9} {:>9} {:>6} {:>5}  countries",
        "app", "contacts", "lookups", "up", "down", "xiaomi", "clear"
    );
    for a in r.apps.iter().take(25) {
        let _ = writeln!(
            o,
            "  {:<34} {:>8} {:>7} {:>9} {:>9} {:>6} {:>5}  {}",
            fit(&a.app, 34),
            a.contacts,
            a.lookups,
            human_bytes(a.bytes_up),
            human_bytes(a.bytes_down),
            a.xiaomi_endpoints,
            a.cleartext_flows,
            fit(&a.countries.join(","), 20)
        );
    }
    if r.apps.len() > 25 {
        let _ = writeln!(o, "  ... {} more apps", r.apps.len() - 25);
    }

    if !r.categories.is_empty() {
        let _ = writeln!(o, "\nXIAOMI CATEGORIES");
        for c in &r.categories {
            let guessed = if c.guessed_flows > 0 {
                format!(" ({} guessed)", c.guessed_flows)
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "  {:<24} {:>7} {:<8} {:>9}  {:>3} {:<9} {:>3} {}{guessed}",
                fit(&c.category, 24),
                c.contacts,
                noun(&c.contacts, "contact", "contacts"),
                human_bytes(c.bytes_up + c.bytes_down),
                c.endpoints,
                noun(&c.endpoints, "endpoint", "endpoints"),
                c.apps,
                noun(&c.apps, "app", "apps")
            );
        }
    }

    let _ = writeln!(o, "\nTOP DOMAINS (bytes of the contacts)");
    let _ = writeln!(
        o,
        "  {:<38} {:>8} {:>7} {:>9}  {:<26} apps",
        "endpoint", "contacts", "lookups", "bytes", "vendor: category"
    );
    for d in r.domains.iter().take(20) {
        let tag = match (d.vendor.as_deref(), d.category.as_deref()) {
            (Some(v), Some(c)) => format!("{v}: {c}"),
            (Some(v), None) => v.to_string(),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "  {:<38} {:>8} {:>7} {:>9}  {:<26} {}",
            fit(&d.domain, 38),
            d.contacts,
            d.lookups,
            human_bytes(d.bytes_up + d.bytes_down),
            fit(&tag, 26),
            fit(&d.apps.join(","), 22)
        );
    }

    if !r.countries.is_empty() {
        let _ = writeln!(o, "\nCOUNTRIES (contacts)");
        let line: Vec<String> = r
            .countries
            .iter()
            .map(|c| format!("{} {}", c.country, c.contacts))
            .collect();
        let _ = writeln!(o, "  {}", line.join("  "));
    }

    if let (Some(first), Some(last)) = (r.timeline.buckets.first(), r.timeline.buckets.last()) {
        // Empty buckets are absent from the data; show them as gaps.
        let step = r.timeline.bucket_ms.max(1);
        let n = ((last.start - first.start) / step + 1).clamp(1, 96) as usize;
        let mut values = vec![0i64; n];
        for b in &r.timeline.buckets {
            let i = ((b.start - first.start) / step) as usize;
            if i < n {
                values[i] = b.contacts;
            }
        }
        let _ = writeln!(
            o,
            "\nTIMELINE (contacts per {} from {})\n  {}",
            human_duration(step),
            utc(first.start),
            sparkline(&values)
        );
    }

    series_table(&mut o, &r.app_timelines, "app");
    series_table(&mut o, &r.company_timelines, "company");
    super::evidence::text(r, &mut o);

    let _ = writeln!(o, "\nWHAT THIS CAPTURE COULD NOT SEE");
    for n in &r.visibility.notes {
        let _ = writeln!(o, "  - {}", wrap(n, 96, "    "));
    }

    if let Some(g) = &r.experiment {
        let _ = writeln!(o, "\nTHE EXPERIMENT\n  {}", wrap(g.intro, 98, "  "));
        for s in g.steps {
            let line = format!(
                "{:>2}. {} - search \"{}\"",
                s.number,
                s.title,
                s.search.join("\" / \"")
            );
            let _ = writeln!(o, "  {}", wrap(&line, 98, "      "));
        }
    }
    o
}

/// Contacts per hour (per day past two days) per app or company (`of`): one row per bucket, one
/// column per series (the five with most contacts, the rest summed), and the total.
fn series_table(o: &mut String, t: &ContactTimelines, of: &str) {
    const COLUMNS: usize = 5;
    const MAX_ROWS: usize = 72;
    let b = t.daily.as_ref().unwrap_or(&t.hourly);
    if b.starts.is_empty() {
        return;
    }
    let per = if b.bucket_ms == DAY_MS { "day" } else { "hour" };
    let _ = writeln!(
        o,
        "\nCONTACTS PER {} PER {} (UTC; DNS lookups not counted)",
        per.to_uppercase(),
        of.to_uppercase()
    );
    let shown = b.series.len().min(COLUMNS);
    let mut header = format!("  {:<17}", if per == "day" { "day" } else { "hour" });
    for s in &b.series[..shown] {
        let _ = write!(header, " {:>14}", fit(&s.name, 14));
    }
    if b.series.len() > shown {
        let _ = write!(header, " {:>8}", "others");
    }
    let _ = write!(header, " {:>7}", "total");
    let _ = writeln!(o, "{header}");
    let rows = b.starts.len();
    let skip = rows.saturating_sub(MAX_ROWS);
    if skip > 0 {
        let _ = writeln!(o, "  ({skip} earlier {per}s are in the JSON report)");
    }
    for (i, start) in b.starts.iter().enumerate().skip(skip) {
        let when = utc(*start);
        let when = if per == "day" {
            when.get(..10).unwrap_or(&when).to_string()
        } else {
            when.get(..16).unwrap_or(&when).to_string()
        };
        let mut line = format!("  {when:<17}");
        for s in &b.series[..shown] {
            let _ = write!(line, " {:>14}", s.contacts[i]);
        }
        if b.series.len() > shown {
            let others: i64 = b.series[shown..].iter().map(|s| s.contacts[i]).sum();
            let _ = write!(line, " {others:>8}");
        }
        let _ = write!(line, " {:>7}", b.total[i]);
        let _ = writeln!(o, "{line}");
    }
}

/// A per-hour rate, or "n/a" when the window is too short for one.
pub(super) fn rate(per_hour: Option<f64>) -> String {
    per_hour.map_or_else(|| "n/a".into(), |r| format!("{r:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_wrap_and_sparkline() {
        assert_eq!(wrap("aaa bbb ccc", 7, "  "), "aaa bbb\n  ccc");
        assert_eq!(fit("abcdef", 4), "abc~");
        assert_eq!(fit("abc", 4), "abc");
        assert_eq!(sparkline(&[0, 4, 8]), " ▄█");
    }
}
