//! The inline SVG charts: horizontal bars, the contacts timeline, and the per-series lines.

use std::fmt::Write;

use super::super::{Report, counted, human_duration, utc};
use super::{esc, short_utc};
use crate::flow::Millis;
use crate::store::timeline::{ContactTimelines, DAY_MS};

/// The y axis of a chart of counts: whole-number ticks at a round step (1, 2, 2.5 or 5 times a
/// power of ten, 2.5 only from 25 up), at most five intervals, up to the first tick at or above
/// the largest count. Ticks at fractions of a small maximum would round to repeated labels
/// (0, 1, 1, 2, 2 for a maximum of 2).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CountAxis {
    pub(super) step: i64,
    /// The highest tick: the chart's full height.
    pub(super) top: i64,
}

impl CountAxis {
    pub(super) fn new(max: i64) -> CountAxis {
        const INTERVALS: i64 = 5;
        let max = max.max(1);
        let mut scale = 1i64;
        let step = loop {
            let found = [10, 20, 25, 50]
                .into_iter()
                .filter(|m| *m != 25 || scale >= 10)
                .map(|m| m * scale / 10)
                .find(|step| *step > 0 && step.saturating_mul(INTERVALS) >= max);
            match found {
                Some(step) => break step,
                None => scale = scale.saturating_mul(10),
            }
        };
        let intervals = max / step + i64::from(max % step != 0);
        CountAxis {
            step,
            top: step.saturating_mul(intervals),
        }
    }

    /// 0, step, 2 step, ... top.
    pub(super) fn ticks(&self) -> impl Iterator<Item = i64> + '_ {
        (0..=self.top / self.step).map(|i| i * self.step)
    }
}

/// One labelled row of a horizontal bar chart: segments (value, css class) stacked.
pub(super) struct Bar {
    pub(super) label: String,
    pub(super) segments: Vec<(i64, &'static str)>,
    pub(super) note: String,
}

pub(super) fn hbars(rows: &[Bar], width: u32) -> String {
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

pub(super) fn timeline(r: &Report) -> String {
    let buckets = &r.timeline.buckets;
    let (Some(first), Some(last)) = (buckets.first(), buckets.last()) else {
        return "<p class=\"muted\">No traffic.</p>".into();
    };
    let (w, h, left, bottom) = (1000.0f64, 220.0f64, 48.0f64, 30.0f64);
    let t0 = first.start;
    let t1 = last.start + r.timeline.bucket_ms;
    let span = (t1 - t0).max(1) as f64;
    let axis = CountAxis::new(buckets.iter().map(|b| b.contacts).max().unwrap_or(0));
    let max = axis.top as f64;
    let plot_w = w - left - 10.0;
    let plot_h = h - bottom - 20.0;
    let x_of = |t: i64| left + (t - t0) as f64 / span * plot_w;
    let bar_w = (r.timeline.bucket_ms as f64 / span * plot_w).max(1.0);
    let mut s = format!(
        "<svg role=\"img\" width=\"100%\" viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"xMidYMid meet\">"
    );
    y_grid(&mut s, &axis, left, w, |v| {
        20.0 + plot_h - v as f64 / max * plot_h
    });
    for b in buckets {
        let x = x_of(b.start);
        let bh = b.contacts as f64 / max * plot_h;
        let mh = b.xiaomi_contacts as f64 / max * plot_h;
        let _ = write!(
            s,
            "<rect class=\"all\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\">\
             <title>{}: {}, {} with Xiaomi</title></rect>\
             <rect class=\"mi\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{mh:.1}\"></rect>",
            20.0 + plot_h - bh,
            (bar_w - 0.5).max(0.8),
            esc(&utc(b.start)),
            counted(b.contacts, "contact", "contacts"),
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
pub(super) fn series_timelines(t: &ContactTimelines, of: &str, field: &str) -> String {
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
    let axis = CountAxis::new(
        b.series
            .iter()
            .flat_map(|s| s.contacts.iter().copied())
            .max()
            .unwrap_or(0),
    );
    let max = axis.top as f64;
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
    y_grid(&mut o, &axis, left, w, y_of);
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
             <title>{}: {}</title></polyline>",
            points.join(" "),
            esc(&series.name),
            counted(series.total, "contact", "contacts")
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

/// The horizontal grid lines and their count labels at the axis' ticks.
fn y_grid(out: &mut String, axis: &CountAxis, left: f64, w: f64, y_of: impl Fn(i64) -> f64) {
    for v in axis.ticks() {
        let y = y_of(v);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"></line>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>",
            w - 10.0,
            left - 4.0,
            y + 4.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks(max: i64) -> Vec<i64> {
        CountAxis::new(max).ticks().collect()
    }

    #[test]
    fn small_maxima_get_whole_distinct_ticks() {
        assert_eq!(ticks(0), [0, 1]);
        assert_eq!(ticks(1), [0, 1]);
        assert_eq!(ticks(2), [0, 1, 2]);
        assert_eq!(ticks(3), [0, 1, 2, 3]);
        assert_eq!(ticks(5), [0, 1, 2, 3, 4, 5]);
        assert_eq!(ticks(6), [0, 2, 4, 6]);
        assert_eq!(ticks(7), [0, 2, 4, 6, 8]);
        assert_eq!(ticks(11), [0, 5, 10, 15]);
        assert_eq!(ticks(100), [0, 20, 40, 60, 80, 100]);
        assert_eq!(ticks(101), [0, 25, 50, 75, 100, 125]);
        assert_eq!(ticks(1_234), [0, 250, 500, 750, 1_000, 1_250]);
    }

    #[test]
    fn every_axis_covers_its_maximum_with_at_most_five_intervals() {
        for max in (0..=2_000).chain([i64::from(u32::MAX), i64::MAX / 4]) {
            let t = ticks(max);
            assert!(t.windows(2).all(|w| w[0] < w[1]), "{max}: {t:?}");
            assert!(*t.last().unwrap() >= max && t.len() <= 6, "{max}: {t:?}");
            // Never more than one step of headroom.
            let axis = CountAxis::new(max);
            assert!(axis.top - axis.step < max.max(1), "{max}: {axis:?}");
        }
    }
}
