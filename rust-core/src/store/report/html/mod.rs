//! The report as one self-contained HTML file: inline CSS and inline SVG charts, no script,
//! no font, image or style sheet fetched from anywhere, so it opens offline and leaks nothing.
//!
//! One function per section, in the order the page shows them: [`overview`] (header and summary
//! cards), [`comparison`] (before/after "off"), [`traffic`] (apps, timelines, categories,
//! countries, domains), the evidence sections (`report::evidence`), [`context`] (what could not
//! be seen, the experiment guide, sessions and markers). [`charts`] draws the SVGs.

mod charts;
mod comparison;
mod context;
mod overview;
mod traffic;

use super::{Report, utc};

const STYLE: &str = include_str!("style.css");

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

pub fn render(r: &Report) -> String {
    let mut o = String::with_capacity(64 * 1024);
    overview::head(&mut o, r);
    overview::summary(&mut o, r);
    if let Some(c) = &r.comparison {
        comparison::section(&mut o, c);
    }
    traffic::apps(&mut o, r);
    traffic::timelines(&mut o, r);
    traffic::categories_and_countries(&mut o, r);
    traffic::domains(&mut o, r);
    super::evidence::html(r, &mut o, esc);
    context::visibility(&mut o, r);
    if let Some(g) = &r.experiment {
        context::experiment(&mut o, g);
    }
    context::sessions_and_markers(&mut o, r);
    o.push_str("</main></body></html>\n");
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
