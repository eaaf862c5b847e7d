//! The timeline of an agent's page, drawn on the server: an SVG with one lane per environment
//! and one bar per stay of a version (its exact times in the bar's tooltip), each version in one
//! colour named by a legend, the running version labelled even when its bar is thin; and, for
//! narrow screens where the drawing would be too small to read, the same stays as a list.

use crate::view::AgentPage;

/// Text fit for SVG and HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Light tints under dark text: readable in both themes.
const PALETTE: [&str; 10] = [
    "#a6cee3", "#fdbf6f", "#b2df8a", "#cab2d6", "#fbe38a", "#fb9a99", "#8dd3c7", "#d9c3a5",
    "#bebada", "#ccebc5",
];

/// The page's versions in the order they first ran (each gets the next colour).
fn versions(page: &AgentPage) -> Vec<&str> {
    let mut spans: Vec<(i64, &str)> = page
        .timeline
        .iter()
        .flat_map(|l| l.spans.iter().map(|s| (s.start, s.version.as_str())))
        .collect();
    spans.sort();
    let mut out: Vec<&str> = Vec::new();
    for (_, v) in spans {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// The timeline, drawn on the server.
pub(super) fn timeline_svg(page: &AgentPage) -> String {
    const WIDTH: f64 = 1000.0;
    const LABEL: f64 = 110.0;
    const LANE: f64 = 34.0;
    const TOP: f64 = 8.0;
    const CHAR: f64 = 7.2;
    const LEGEND_ITEM: f64 = 160.0;
    let order = versions(page);
    let colour = |v: &str| {
        let i = order.iter().position(|o| *o == v).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let lanes = page.timeline.len().max(1) as f64;
    let per_row = ((WIDTH - 8.0) / LEGEND_ITEM).floor().max(1.0) as usize;
    let legend_rows = order.len().div_ceil(per_row);
    let axis_y = TOP + lanes * LANE + 16.0;
    let height = axis_y + 10.0 + legend_rows as f64 * 22.0;
    let (start, end) = (
        page.timeline_start,
        page.timeline_end.max(page.timeline_start + 1),
    );
    let span = (end - start) as f64;
    let x = |t: i64| LABEL + (t - start) as f64 / span * (WIDTH - LABEL - 10.0);
    let mut svg = format!(
        "<svg class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-labelledby=\"timeline-title\" xmlns=\"http://www.w3.org/2000/svg\"><title id=\"timeline-title\">Versions of {} in each environment from {} to {}</title>",
        esc(&page.agent),
        crate::support::when::rfc3339(start),
        crate::support::when::rfc3339(end)
    );
    for (i, lane) in page.timeline.iter().enumerate() {
        let y = TOP + i as f64 * LANE;
        svg.push_str(&format!(
            "<g class=\"lane\" data-environment=\"{env}\"><text x=\"4\" y=\"{ty}\">{env_short}</text><line class=\"grid\" x1=\"{LABEL}\" x2=\"{WIDTH}\" y1=\"{gy}\" y2=\"{gy}\"/>",
            env = esc(&lane.environment),
            env_short = esc(&cut(&lane.environment, 14)),
            ty = y + LANE / 2.0 + 4.0,
            gy = y + LANE - 2.0,
        ));
        for s in &lane.spans {
            let x0 = x(s.start);
            let x1 = x(s.end.unwrap_or(end)).max(x0 + 2.0);
            let until = s
                .end
                .map_or("now".to_string(), crate::support::when::rfc3339);
            let current = s.end.is_none();
            svg.push_str(&format!(
                "<g><rect class=\"span{cur}\" x=\"{x0:.1}\" y=\"{ry}\" width=\"{w:.1}\" height=\"{h}\" rx=\"3\" fill=\"{c}\"><title>{v} in {env}: {from} to {until}</title></rect>",
                cur = if current { " current" } else { "" },
                ry = y + 4.0,
                w = x1 - x0,
                h = LANE - 10.0,
                c = colour(&s.version),
                v = esc(&s.version),
                env = esc(&lane.environment),
                from = crate::support::when::rfc3339(s.start),
            ));
            let fits = ((x1 - x0 - 8.0) / CHAR).floor().max(0.0) as usize;
            let ty = y + LANE / 2.0 + 3.0;
            if fits >= 4 || (fits >= 1 && s.version.chars().count() <= fits) {
                svg.push_str(&format!(
                    "<text class=\"label\" x=\"{tx:.1}\" y=\"{ty}\" aria-hidden=\"true\">{v}</text>",
                    tx = x0 + 4.0,
                    v = esc(&cut(&s.version, fits)),
                ));
            } else if current {
                // The running version, named left of its thin bar.
                svg.push_str(&format!(
                    "<text class=\"outside\" x=\"{tx:.1}\" y=\"{ty}\" text-anchor=\"end\" aria-hidden=\"true\">{v}</text>",
                    tx = x0 - 4.0,
                    v = esc(&cut(&s.version, 18)),
                ));
            }
            svg.push_str("</g>");
        }
        svg.push_str("</g>");
    }
    for (t, anchor) in [(start, "start"), (end, "end")] {
        svg.push_str(&format!(
            "<text class=\"axis\" x=\"{:.1}\" y=\"{axis_y}\" text-anchor=\"{anchor}\">{}</text>",
            if anchor == "start" {
                LABEL
            } else {
                WIDTH - 4.0
            },
            &crate::support::when::rfc3339(t)[..10],
        ));
    }
    svg.push_str("<g class=\"legend\">");
    for (i, v) in order.iter().enumerate() {
        let lx = 4.0 + (i % per_row) as f64 * LEGEND_ITEM;
        let ly = axis_y + 10.0 + (i / per_row) as f64 * 22.0;
        svg.push_str(&format!(
            "<g><title>{full}</title><rect x=\"{lx:.1}\" y=\"{ly:.1}\" width=\"14\" height=\"14\" rx=\"2\" fill=\"{c}\"/><text x=\"{tx:.1}\" y=\"{ty:.1}\">{v}</text></g>",
            full = esc(v),
            c = colour(v),
            tx = lx + 20.0,
            ty = ly + 12.0,
            v = esc(&cut(v, 18)),
        ));
    }
    svg.push_str("</g></svg>");
    svg
}

/// The timeline as a list, for narrow screens: per environment its newest stays.
pub(super) fn timeline_list(page: &AgentPage) -> String {
    const STAYS: usize = 5;
    let mut html = String::from("<div class=\"timeline-list\">");
    for lane in &page.timeline {
        html.push_str(&format!("<h3>{}</h3><ol reversed>", esc(&lane.environment)));
        for s in lane.spans.iter().rev().take(STAYS) {
            let from = crate::support::when::rfc3339(s.start);
            let until = s.end.map_or("now".to_string(), |e| {
                crate::support::when::rfc3339(e)[..10].to_string()
            });
            html.push_str(&format!(
                "<li><span class=\"version\" title=\"{v}\">{vc}</span> <span class=\"muted\">{} to {until}</span></li>",
                &from[..10],
                v = esc(&s.version),
                vc = esc(&cut(&s.version, 24)),
            ));
        }
        if lane.spans.is_empty() {
            html.push_str("<li class=\"muted\">never deployed</li>");
        }
        html.push_str("</ol>");
    }
    html.push_str("</div>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::{Lane, Span};

    fn page(spans: Vec<Span>) -> AgentPage {
        AgentPage {
            agent: "a".into(),
            at: None,
            environments: Vec::new(),
            timeline: vec![Lane {
                environment: "production".into(),
                spans,
            }],
            timeline_truncated: false,
            timeline_start: 0,
            timeline_end: 1_000_000,
            history: Vec::new(),
            next_cursor: None,
            events: 0,
        }
    }

    #[test]
    fn the_running_version_is_named_however_thin_and_long_ones_are_cut() {
        let long = "2.0.0-rc.1+build.20261203.abcdef0123456789";
        let svg = timeline_svg(&page(vec![
            Span {
                version: long.into(),
                start: 0,
                end: Some(200_000),
            },
            Span {
                version: "2.0.1".into(),
                start: 200_000,
                end: Some(999_000),
            },
            Span {
                version: "2.0.2".into(),
                start: 999_000,
                end: None,
            },
        ]));
        // The thin current bar is labelled outside it; the long version is cut in its bar and
        // in the legend, and whole in the tooltips.
        assert!(svg.contains("class=\"outside\""), "{svg}");
        assert!(
            svg.contains("text-anchor=\"end\" aria-hidden=\"true\">2.0.2</text>"),
            "{svg}"
        );
        assert!(svg.contains(&format!("<title>{long}</title>")));
        assert!(svg.contains(">2.0.0-rc.1+build.20261…</text>"), "{svg}");
        assert!(svg.contains(">2.0.0-rc.1+build.…</text>"), "{svg}");
        // One colour per version, in the legend too.
        assert_eq!(svg.matches(PALETTE[0]).count(), 2);
        assert_eq!(svg.matches(PALETTE[1]).count(), 2);
        let list = timeline_list(&page(Vec::new()));
        assert!(list.contains("never deployed"));
    }
}
