//! The report for a terminal: plain text, at most ~100 columns, most important first.

use std::fmt::Write;

use super::{Report, human_bytes, human_duration, utc};

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
        "{} flows, {} up / {} down, {} apps, {} domains, {} DNS queries",
        t.flows,
        human_bytes(t.bytes_up),
        human_bytes(t.bytes_down),
        t.apps,
        t.domains,
        t.dns_queries
    );
    let _ = writeln!(
        o,
        "Xiaomi: {} flows to {} endpoints. Cleartext flows: {}. Flows leaking identifiers: {}.",
        t.xiaomi_flows, t.xiaomi_endpoints, t.cleartext_flows, t.leak_flows
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
                "  #{:<4} {:<8} {}  {:>8} flows  {:<12} {}",
                s.id,
                s.kind,
                utc(s.started),
                s.flows,
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
            let span = match (w.start, w.end) {
                (Some(a), Some(b)) => human_duration(b - a),
                _ => "-".into(),
            };
            let _ = writeln!(
                o,
                "  {name:<7} {}: {} flows ({} Xiaomi) over {span}",
                w.label, w.totals.flows, w.totals.xiaomi_flows
            );
        }
        let _ = writeln!(
            o,
            "\nSTILL PHONING HOME after \"off\" ({} Xiaomi endpoints)",
            c.still_phoning_home.len()
        );
        let _ = writeln!(
            o,
            "  {:<36} {:<20} {:>7} {:>10}  apps",
            "endpoint", "category", "flows", "bytes"
        );
        for s in c.still_phoning_home.iter().take(30) {
            let _ = writeln!(
                o,
                "  {:<36} {:<20} {:>7} {:>10}  {}{}",
                fit(&s.endpoint, 36),
                fit(s.category.as_deref().unwrap_or("-"), 20),
                s.flows_after,
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
        let _ = writeln!(o, "\nAPPS BEFORE -> AFTER (flows per hour; Xiaomi flows)");
        for a in c.apps.iter().take(20) {
            let _ = writeln!(
                o,
                "  {:<36} {:>8.1} -> {:<8.1} Xiaomi {:>5} -> {:<5}",
                fit(&a.app, 36),
                a.before.flows_per_hour,
                a.after.flows_per_hour,
                a.xiaomi_flows_before,
                a.xiaomi_flows_after
            );
        }
        let _ = writeln!(o, "\nXIAOMI CATEGORIES BEFORE -> AFTER (flows)");
        for cat in &c.categories {
            let _ = writeln!(
                o,
                "  {:<24} {:>7} -> {:<7}",
                fit(&cat.category, 24),
                cat.before.flows,
                cat.after.flows
            );
        }
    }

    let _ = writeln!(o, "\nAPPS (by bytes)");
    let _ = writeln!(
        o,
        "  {:<34} {:>7} {:>9} {:>9} {:>6} {:>5}  countries",
        "app", "flows", "up", "down", "xiaomi", "clear"
    );
    for a in r.apps.iter().take(25) {
        let _ = writeln!(
            o,
            "  {:<34} {:>7} {:>9} {:>9} {:>6} {:>5}  {}",
            fit(&a.app, 34),
            a.flows,
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
                "  {:<24} {:>7} flows {:>9}  {:>3} endpoints {:>3} apps{guessed}",
                fit(&c.category, 24),
                c.flows,
                human_bytes(c.bytes_up + c.bytes_down),
                c.endpoints,
                c.apps
            );
        }
    }

    let _ = writeln!(o, "\nTOP DOMAINS");
    for d in r.domains.iter().take(20) {
        let tag = match (d.vendor.as_deref(), d.category.as_deref()) {
            (Some(v), Some(c)) => format!("{v}: {c}"),
            (Some(v), None) => v.to_string(),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "  {:<40} {:>7} {:>9}  {:<26} {}",
            fit(&d.domain, 40),
            d.flows,
            human_bytes(d.bytes_up + d.bytes_down),
            fit(&tag, 26),
            fit(&d.apps.join(","), 24)
        );
    }

    if !r.countries.is_empty() {
        let _ = writeln!(o, "\nCOUNTRIES");
        let line: Vec<String> = r
            .countries
            .iter()
            .map(|c| format!("{} {}", c.country, c.flows))
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
                values[i] = b.flows;
            }
        }
        let _ = writeln!(
            o,
            "\nTIMELINE (flows per {} from {})\n  {}",
            human_duration(step),
            utc(first.start),
            sparkline(&values)
        );
    }

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
