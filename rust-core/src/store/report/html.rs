//! The report as one self-contained HTML file: inline CSS and inline SVG charts, no script,
//! no font, image or style sheet fetched from anywhere, so it opens offline and leaks nothing.

use std::fmt::Write;

use super::{Report, human_bytes, human_duration, utc};
use crate::flow::Millis;
use crate::store::timeline::{ContactTimelines, DAY_MS};

/// "2026-11-21 05:47" (UTC; the header says so).
fn short_utc(ms: i64) -> String {
    utc(ms).chars().take(16).collect()
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { --up: #d9480f; --down: #1971c2; --mi: #e8590c; --ok: #2b8a3e; --muted: #868e96; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #212529; background: #f8f9fa; line-height: 1.4; }
header { background: #212529; color: #f8f9fa; padding: 16px 24px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #ced4da; font-size: 13px; }
main { max-width: 1100px; margin: 0 auto; padding: 16px 24px 48px; }
section { background: #fff; border: 1px solid #dee2e6; border-radius: 8px; padding: 12px 16px;
          margin: 16px 0; }
h2 { font-size: 17px; margin: 4px 0 10px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { flex: 1 1 140px; background: #f1f3f5; border-radius: 6px; padding: 8px 10px; }
.card b { display: block; font-size: 20px; }
.card span { font-size: 12px; color: var(--muted); }
.card.alert b { color: var(--mi); }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid #e9ecef; vertical-align: top; }
th { background: #f1f3f5; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.tag { display: inline-block; background: #fff4e6; color: #d9480f; border-radius: 4px;
       padding: 0 5px; font-size: 11px; margin: 1px; }
.tag.guess { background: #f1f3f5; color: #495057; }
.new { color: #c92a2a; font-weight: 600; }
svg text { font-family: inherit; font-size: 11px; fill: #343a40; }
svg .up { fill: var(--up); } svg .down { fill: var(--down); } svg .mi { fill: var(--mi); }
svg .all { fill: #74c0fc; } svg .before { fill: #adb5bd; } svg .after { fill: var(--mi); }
svg .grid { stroke: #e9ecef; } svg .marker { stroke: #c92a2a; stroke-dasharray: 4 3; }
.legend span { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px;
               border-radius: 2px; vertical-align: middle; }
ul.notes li { margin: 4px 0; }
.muted { color: var(--muted); font-size: 12px; }
td.apps { font-size: 11px; color: #495057; max-width: 260px; }
td.t { white-space: nowrap; font-size: 12px; }
table + table { margin-top: 14px; }
ol.steps li { margin: 6px 0; }
"#;

/// One labelled row of a horizontal bar chart: segments (value, css class) stacked.
struct Bar {
    label: String,
    segments: Vec<(i64, &'static str)>,
    note: String,
}

fn hbars(rows: &[Bar], width: u32) -> String {
    if rows.is_empty() {
        return "<p class=\"muted\">No data.</p>".into();
    }
    let label_w = 230u32;
    let note_w = 280u32;
    let chart_w = width.saturating_sub(label_w + note_w).max(100);
    let row_h = 20u32;
    let max = rows
        .iter()
        .map(|r| r.segments.iter().map(|s| s.0.max(0)).sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let height = row_h * rows.len() as u32 + 4;
    let mut s = format!(
        "<svg role=\"img\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
    );
    for (i, row) in rows.iter().enumerate() {
        let y = i as u32 * row_h + 2;
        let label: String = row.label.chars().take(34).collect();
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}<title>{}</title></text>",
            label_w - 6,
            y + 13,
            esc(&label),
            esc(&row.label)
        );
        let mut x = f64::from(label_w);
        for (value, class) in &row.segments {
            let w = (*value).max(0) as f64 / max as f64 * f64::from(chart_w);
            if w > 0.0 {
                let _ = write!(
                    s,
                    "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" rx=\"2\"></rect>",
                    w.max(1.0),
                    row_h - 5
                );
            }
            x += w;
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{}\">{}</text>",
            x + 5.0,
            y + 13,
            esc(&row.note)
        );
    }
    s.push_str("</svg>");
    s
}

fn timeline(r: &Report) -> String {
    let buckets = &r.timeline.buckets;
    let (Some(first), Some(last)) = (buckets.first(), buckets.last()) else {
        return "<p class=\"muted\">No traffic.</p>".into();
    };
    let (w, h, left, bottom) = (1000.0f64, 220.0f64, 48.0f64, 30.0f64);
    let t0 = first.start;
    let t1 = last.start + r.timeline.bucket_ms;
    let span = (t1 - t0).max(1) as f64;
    let max = buckets.iter().map(|b| b.contacts).max().unwrap_or(1).max(1) as f64;
    let plot_w = w - left - 10.0;
    let plot_h = h - bottom - 20.0;
    let x_of = |t: i64| left + (t - t0) as f64 / span * plot_w;
    let bar_w = (r.timeline.bucket_ms as f64 / span * plot_w).max(1.0);
    let mut s = format!(
        "<svg role=\"img\" width=\"100%\" viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"xMidYMid meet\">"
    );
    for i in 0..=4 {
        let y = 20.0 + plot_h * f64::from(i) / 4.0;
        let v = max * (1.0 - f64::from(i) / 4.0);
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"></line>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.0}</text>",
            w - 10.0,
            left - 4.0,
            y + 4.0
        );
    }
    for b in buckets {
        let x = x_of(b.start);
        let bh = b.contacts as f64 / max * plot_h;
        let mh = b.xiaomi_contacts as f64 / max * plot_h;
        let _ = write!(
            s,
            "<rect class=\"all\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\">\
             <title>{}: {} contacts, {} with Xiaomi</title></rect>\
             <rect class=\"mi\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{mh:.1}\"></rect>",
            20.0 + plot_h - bh,
            (bar_w - 0.5).max(0.8),
            esc(&utc(b.start)),
            b.contacts,
            b.xiaomi_contacts,
            20.0 + plot_h - mh,
            (bar_w - 0.5).max(0.8)
        );
    }
    let shown: Vec<_> = r
        .markers
        .iter()
        .filter(|m| m.time >= t0 && m.time <= t1)
        .collect();
    for (i, m) in shown.iter().enumerate() {
        let x = x_of(m.time);
        // A label gets the room up to the next marker (~6 px a character); the full text is
        // in the tooltip.
        let room = shown.get(i + 1).map_or(w - 10.0, |n| x_of(n.time)) - x - 6.0;
        let chars = (room / 6.0).max(0.0) as usize;
        let full = format!("m{} {}", m.id, m.label);
        let label: String = if full.chars().count() <= chars {
            full.clone()
        } else if chars > 4 {
            full.chars()
                .take(chars - 1)
                .chain(std::iter::once('…'))
                .collect()
        } else {
            format!("m{}", m.id)
        };
        let _ = write!(
            s,
            "<line class=\"marker\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"14\" y2=\"{:.1}\"><title>{}</title></line>\
             <text x=\"{:.1}\" y=\"12\">{}<title>{}</title></text>",
            20.0 + plot_h,
            esc(&full),
            x + 3.0,
            esc(&label),
            esc(&full)
        );
    }
    let _ = write!(
        s,
        "<text x=\"{left}\" y=\"{:.1}\">{}</text><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text></svg>",
        h - 8.0,
        esc(&utc(t0)),
        w - 10.0,
        h - 8.0,
        esc(&utc(t1))
    );
    s.push_str(&format!(
        "<p class=\"legend muted\"><span style=\"background:#74c0fc\"></span>contacts (DNS lookups not counted)\
         <span style=\"background:#e8590c\"></span>contacts with Xiaomi endpoints \
         &nbsp;(one bar per {}; dashed lines are markers)</p>",
        esc(&human_duration(r.timeline.bucket_ms))
    ));
    s
}

const SERIES_COLOURS: &[&str] = &[
    "#e8590c", "#1971c2", "#2f9e44", "#9c36b5", "#f08c00", "#0c8599", "#c2255c", "#5f3dc4",
    "#66a80f", "#495057", "#adb5bd",
];

/// Contacts per hour (per day past two days) per app or company (`of`): one line per series in
/// an inline SVG, and the numbers in a table. `field` names the JSON field with the same arrays.
fn series_timelines(t: &ContactTimelines, of: &str, field: &str) -> String {
    let b = t.daily.as_ref().unwrap_or(&t.hourly);
    if b.starts.is_empty() {
        return String::new();
    }
    let per = if b.bucket_ms == DAY_MS { "day" } else { "hour" };
    let mut o = format!(
        "<section><h2>Contacts per {per}, per {of}</h2><p class=\"muted\">Connections (DNS \
         lookups not counted) started in each {per} (UTC); {per}s without any contact are \
         left out. The same numbers are in the JSON \
         report (<code>{field}</code>).</p>"
    );
    let (w, h, left, bottom) = (1000.0f64, 240.0f64, 48.0f64, 30.0f64);
    let plot_w = w - left - 10.0;
    let plot_h = h - bottom - 20.0;
    let n = b.starts.len();
    let max = b
        .series
        .iter()
        .flat_map(|s| s.contacts.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    // Position by time, so the hours left out (no contact) show as gaps in time.
    let (t0, t1) = (b.starts[0], b.starts[n - 1]);
    let x_at = |t: Millis| {
        if t1 == t0 {
            left + plot_w / 2.0
        } else {
            left + (t - t0) as f64 / (t1 - t0) as f64 * plot_w
        }
    };
    let x_of = |i: usize| x_at(b.starts[i]);
    let y_of = |v: i64| 20.0 + plot_h - v as f64 / max * plot_h;
    let _ = write!(
        o,
        "<svg role=\"img\" width=\"100%\" viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"xMidYMid meet\">"
    );
    for i in 0..=4 {
        let v = (max * f64::from(i) / 4.0).round() as i64;
        let y = y_of(v);
        let _ = write!(
            o,
            "<line class=\"grid\" x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"></line>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>",
            w - 10.0,
            left - 4.0,
            y + 4.0
        );
    }
    for (k, series) in b.series.iter().enumerate() {
        let colour = SERIES_COLOURS[k.min(SERIES_COLOURS.len() - 1)];
        // Buckets left out had no contact: the line drops to 0 across them instead of
        // joining two busy hours months apart.
        let mut points: Vec<String> = Vec::with_capacity(series.contacts.len());
        for (i, v) in series.contacts.iter().enumerate() {
            if i > 0 && b.starts[i] - b.starts[i - 1] > b.bucket_ms {
                let zero = y_of(0);
                let after = x_at(b.starts[i - 1] + b.bucket_ms);
                let before = x_at(b.starts[i] - b.bucket_ms);
                points.push(format!("{after:.1},{zero:.1} {before:.1},{zero:.1}"));
            }
            points.push(format!("{:.1},{:.1}", x_of(i), y_of(*v)));
        }
        let _ = write!(
            o,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\">\
             <title>{}: {} contacts</title></polyline>",
            points.join(" "),
            esc(&series.name),
            series.total
        );
        if n == 1 {
            let _ = write!(
                o,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"></circle>",
                x_of(0),
                y_of(series.contacts[0])
            );
        }
    }
    for (i, start) in [(0, b.starts[0]), (n - 1, b.starts[n - 1])] {
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"{}\">{}</text>",
            x_of(i),
            h - 8.0,
            if i == 0 { "start" } else { "end" },
            esc(&short_utc(start))
        );
    }
    o.push_str("</svg><p class=\"legend muted\">");
    for (k, series) in b.series.iter().enumerate() {
        let colour = SERIES_COLOURS[k.min(SERIES_COLOURS.len() - 1)];
        let _ = write!(
            o,
            "<span style=\"background:{colour}\"></span>{} ({})",
            esc(&series.name),
            series.total
        );
    }
    o.push_str("</p><table><tr><th>");
    o.push_str(if per == "day" {
        "Day (UTC)"
    } else {
        "Hour (UTC)"
    });
    o.push_str("</th>");
    for series in &b.series {
        let _ = write!(o, "<th class=\"n\">{}</th>", esc(&series.name));
    }
    o.push_str("<th class=\"n\">Total</th></tr>");
    const ROWS: usize = 200;
    let skip = n.saturating_sub(ROWS);
    if skip > 0 {
        let _ = write!(
            o,
            "<tr><td colspan=\"{}\" class=\"muted\">{skip} earlier {per}s are in the JSON report.</td></tr>",
            b.series.len() + 2
        );
    }
    for (i, start) in b.starts.iter().enumerate().skip(skip) {
        let _ = write!(o, "<tr><td class=\"t\">{}</td>", esc(&short_utc(*start)));
        for series in &b.series {
            let _ = write!(o, "<td class=\"n\">{}</td>", series.contacts[i]);
        }
        let _ = write!(o, "<td class=\"n\">{}</td></tr>", b.total[i]);
    }
    o.push_str("</table></section>");
    o
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

pub fn render(r: &Report) -> String {
    let mut o = String::with_capacity(64 * 1024);
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

    let t = &r.totals;
    o.push_str("<section><h2>Summary</h2><div class=\"cards\">");
    card(
        &mut o,
        &t.contacts.to_string(),
        "contacts (connections)",
        false,
    );
    card(&mut o, &t.lookups.to_string(), "DNS lookups", false);
    card(&mut o, &human_bytes(t.bytes_up), "sent (up)", false);
    card(&mut o, &human_bytes(t.bytes_down), "received (down)", false);
    card(&mut o, &t.apps.to_string(), "apps", false);
    card(&mut o, &t.domains.to_string(), "domains", false);
    card(
        &mut o,
        &t.xiaomi_contacts.to_string(),
        "contacts with Xiaomi",
        t.xiaomi_contacts > 0,
    );
    card(
        &mut o,
        &t.xiaomi_endpoints.to_string(),
        "Xiaomi endpoints",
        t.xiaomi_endpoints > 0,
    );
    card(
        &mut o,
        &t.cleartext_flows.to_string(),
        "cleartext contacts",
        t.cleartext_flows > 0,
    );
    card(
        &mut o,
        &t.leak_flows.to_string(),
        "flows leaking identifiers",
        t.leak_flows > 0,
    );
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

    if let Some(c) = &r.comparison {
        let _ = write!(
            o,
            "<section><h2>Still phoning home after &ldquo;off&rdquo;</h2>\
             <p>Before: <b>{}</b> ({} contacts, {} with Xiaomi, {} lookups, {}). After: <b>{}</b> \
             ({} contacts, {} with Xiaomi, {} lookups, {}).</p>",
            esc(&c.before.label),
            c.before.totals.contacts,
            c.before.totals.xiaomi_contacts,
            c.before.totals.lookups,
            esc(&human_duration(c.before.duration_ms)),
            esc(&c.after.label),
            c.after.totals.contacts,
            c.after.totals.xiaomi_contacts,
            c.after.totals.lookups,
            esc(&human_duration(c.after.duration_ms))
        );
        if let Some(note) = &c.note {
            let _ = write!(o, "<p class=\"warn\"><b>{}</b></p>", esc(note));
        }
        if c.still_phoning_home.is_empty() {
            o.push_str(
                "<p>No Xiaomi endpoint was contacted in the &ldquo;after&rdquo; window.</p>",
            );
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
                let hours = |w: &super::super::experiment::Counts, x: i64| {
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
        o.push_str("<h2>Xiaomi categories: contacts before vs after</h2><table><tr><th>Category</th>\
                    <th class=\"n\">Before</th><th class=\"n\">After</th><th class=\"n\">Before /h</th>\
                    <th class=\"n\">After /h</th></tr>");
        for cat in &c.categories {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td></tr>",
                esc(&cat.category),
                cat.before.contacts,
                cat.after.contacts,
                super::text::rate(cat.before.contacts_per_hour),
                super::text::rate(cat.after.contacts_per_hour)
            );
        }
        o.push_str("</table></section>");
    }

    o.push_str("<section><h2>Apps</h2><p class=\"legend muted\"><span style=\"background:#d9480f\"></span>sent\
                <span style=\"background:#1971c2\"></span>received</p>");
    let rows: Vec<Bar> = r
        .apps
        .iter()
        .take(20)
        .map(|a| Bar {
            label: a.app.clone(),
            segments: vec![(a.bytes_up, "up"), (a.bytes_down, "down")],
            note: format!(
                "{} · {} contacts · {} lookups",
                human_bytes(a.bytes_up + a.bytes_down),
                a.contacts,
                a.lookups
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

    o.push_str("<section><h2>Timeline</h2>");
    o.push_str(&timeline(r));
    o.push_str("</section>");

    o.push_str(&series_timelines(&r.app_timelines, "app", "app_timelines"));
    o.push_str(&series_timelines(
        &r.company_timelines,
        "company",
        "company_timelines",
    ));

    o.push_str("<section><h2>Xiaomi endpoints by category</h2>");
    let rows: Vec<Bar> = r
        .categories
        .iter()
        .map(|c| Bar {
            label: c.category.clone(),
            segments: vec![(c.contacts, "mi")],
            note: format!(
                "{} contacts · {} endpoints{}",
                c.contacts,
                c.endpoints,
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
            note: format!("{} contacts · {} apps", c.contacts, c.apps),
        })
        .collect();
    o.push_str(&hbars(&rows, 1000));
    o.push_str("<p class=\"legend muted\"><span style=\"background:#74c0fc\"></span>other contacts\
                <span style=\"background:#e8590c\"></span>Xiaomi contacts &middot; country of the server address (offline database)</p></section>");

    let _ = write!(
        o,
        "<section><h2>Top domains</h2><table><tr><th>Domain</th><th>Vendor / category</th><th>Purpose</th>\
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

    super::evidence::html(r, &mut o, esc);

    o.push_str("<section><h2>What this capture could not see</h2><ul class=\"notes\">");
    for n in &r.visibility.notes {
        let _ = write!(o, "<li>{}</li>", esc(n));
    }
    o.push_str("</ul></section>");

    if let Some(g) = &r.experiment {
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

    o.push_str(
        "<section><h2>Sessions and markers</h2><table><tr><th>#</th><th>Kind</th><th>Started</th>\
                <th>Duration</th><th>Device</th><th>Note</th><th class=\"n\">Flows</th></tr>",
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
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            s.id,
            esc(&s.kind),
            esc(&utc(s.started)),
            esc(&duration),
            esc(&device),
            esc(s.note.as_deref().unwrap_or("")),
            s.flows
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
    o.push_str("</section></main></body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
