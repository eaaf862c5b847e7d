//! The timeline of an agent's page, drawn on the server as SVG: one lane per environment, one
//! bar per stay of a version, its exact times in the bar's tooltip (`<title>`).

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

/// The timeline, drawn on the server: one lane per environment, one bar per stay of a version,
/// its exact times in the bar's tooltip (`<title>`).
pub(super) fn timeline_svg(page: &AgentPage) -> String {
    const WIDTH: f64 = 1000.0;
    const LABEL: f64 = 110.0;
    const LANE: f64 = 34.0;
    const TOP: f64 = 8.0;
    let lanes = page.timeline.len().max(1) as f64;
    let height = TOP + lanes * LANE + 24.0;
    let (start, end) = (
        page.timeline_start,
        page.timeline_end.max(page.timeline_start + 1),
    );
    let span = (end - start) as f64;
    let x = |t: i64| LABEL + (t - start) as f64 / span * (WIDTH - LABEL - 10.0);
    // A stable colour per version, from a small palette readable in both themes.
    // Light tints under dark text: readable in both themes.
    const PALETTE: [&str; 8] = [
        "#a6cee3", "#fdbf6f", "#b2df8a", "#cab2d6", "#fbe38a", "#fb9a99", "#8dd3c7", "#d9c3a5",
    ];
    let colour = |v: &str| {
        let h = v
            .bytes()
            .fold(5381u32, |h, b| h.wrapping_mul(33) ^ u32::from(b));
        PALETTE[h as usize % PALETTE.len()]
    };
    let mut svg = format!(
        "<svg class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-labelledby=\"timeline-title\" xmlns=\"http://www.w3.org/2000/svg\"><title id=\"timeline-title\">Versions of {} in each environment from {} to {}</title>",
        esc(&page.agent),
        crate::support::when::rfc3339(start),
        crate::support::when::rfc3339(end)
    );
    for (i, lane) in page.timeline.iter().enumerate() {
        let y = TOP + i as f64 * LANE;
        svg.push_str(&format!(
            "<g class=\"lane\" data-environment=\"{env}\"><text x=\"4\" y=\"{ty}\">{env}</text><line class=\"grid\" x1=\"{LABEL}\" x2=\"{WIDTH}\" y1=\"{gy}\" y2=\"{gy}\"/>",
            env = esc(&lane.environment),
            ty = y + LANE / 2.0 + 4.0,
            gy = y + LANE - 2.0,
        ));
        for s in &lane.spans {
            let x0 = x(s.start);
            let x1 = x(s.end.unwrap_or(end)).max(x0 + 2.0);
            let until = s
                .end
                .map_or("now".to_string(), crate::support::when::rfc3339);
            svg.push_str(&format!(
                "<g><rect class=\"span{cur}\" x=\"{x0:.1}\" y=\"{ry}\" width=\"{w:.1}\" height=\"{h}\" rx=\"3\" fill=\"{c}\"><title>{v} in {env}: {from} to {until}</title></rect>",
                cur = if s.end.is_none() { " current" } else { "" },
                ry = y + 4.0,
                w = x1 - x0,
                h = LANE - 10.0,
                c = colour(&s.version),
                v = esc(&s.version),
                env = esc(&lane.environment),
                from = crate::support::when::rfc3339(s.start),
            ));
            if x1 - x0 > 8.0 * s.version.len() as f64 {
                svg.push_str(&format!(
                    "<text class=\"label\" x=\"{tx:.1}\" y=\"{ty}\" aria-hidden=\"true\">{v}</text>",
                    tx = x0 + 4.0,
                    ty = y + LANE / 2.0 + 3.0,
                    v = esc(&s.version),
                ));
            }
            svg.push_str("</g>");
        }
        svg.push_str("</g>");
    }
    let axis_y = TOP + lanes * LANE + 16.0;
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
    svg.push_str("</svg>");
    svg
}
