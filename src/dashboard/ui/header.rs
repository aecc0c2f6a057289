//! The header: where the gateway listens, the config file, and the totals
//! with a requests-per-second sparkline.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{Theme, clock, fit_left, percent, rate, tokens};
use crate::dashboard::app::{App, Link};
use crate::gateway::clustered::ClusterView;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let [top, bottom] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);

    let mut spans = vec![
        Span::styled(" switchboard ", theme.selected().patch(theme.bold())),
        Span::raw(" "),
    ];
    if app.info.demo {
        spans.push(Span::styled("demo", theme.warn().patch(theme.bold())));
        spans.push(Span::raw(" "));
    }
    match &app.info.attached {
        // Attached: the gateway's URL and whether the connection is live.
        Some(url) => {
            spans.push(Span::styled(url.clone(), theme.accent()));
            if let Some(link) = &app.link {
                spans.push(Span::raw(" "));
                spans.extend(link_spans(link, app, theme));
            }
        }
        None => spans.push(Span::styled(app.info.address.clone(), theme.accent())),
    }
    if let Some(c) = &app.state.cluster {
        spans.extend(cluster_spans(c, app, theme));
    }
    let used: usize = spans.iter().map(|s| s.width()).sum();
    let label = "  config ";
    let room = (top.width as usize).saturating_sub(used + label.len());
    spans.push(Span::styled(label, theme.dim()));
    spans.push(Span::raw(fit_left(&app.info.config_path, room)));
    frame.render_widget(Paragraph::new(Line::from(spans)), top);

    let t = app.state.last_minute;
    let mut spans = vec![
        Span::styled(format!(" {:>5}", rate(t.per_second)), theme.bold()),
        Span::styled(" req/s  ", theme.dim()),
        Span::styled(format!("{:>5}", tokens(t.tokens_per_minute)), theme.bold()),
        Span::styled(" tok/min  ", theme.dim()),
    ];
    let error_style = if t.errors > 0 {
        theme.bad()
    } else {
        theme.bold()
    };
    spans.push(Span::styled(t.errors.to_string(), error_style));
    spans.push(Span::styled(" errors/min", theme.dim()));
    if let Some(r) = t.error_rate().filter(|_| t.errors > 0) {
        spans.push(Span::styled(format!(" ({})", percent(r)), error_style));
    }
    if app.lagged > 0 {
        spans.push(Span::styled(
            format!("  ⚠ {} events missed", app.lagged),
            theme.warn(),
        ));
    }
    spans.push(Span::raw("  "));
    let line = Line::from(spans);
    let text_width = (line.width() as u16).min(bottom.width);
    let [text, spark] =
        Layout::horizontal([Constraint::Length(text_width), Constraint::Fill(1)]).areas(bottom);
    frame.render_widget(Paragraph::new(line), text);
    if spark.width >= 8 {
        // One bar per second, the newest on the right; the label gives the span.
        let bars = spark.width - 5;
        let [bars_area, label_area] =
            Layout::horizontal([Constraint::Length(bars), Constraint::Length(5)]).areas(spark);
        let history = &app.state.requests_per_s_history;
        let data = &history[history.len().saturating_sub(bars as usize)..];
        frame.render_widget(
            Paragraph::new(Line::styled(sparkline(data), theme.accent())),
            bars_area,
        );
        frame.render_widget(
            Paragraph::new(Line::styled(
                format!("{:>5}", format!("{bars}s")),
                theme.dim(),
            )),
            label_area,
        );
    }
}

/// `  cluster prod ● redis ok · 3 instances 120 · 118 · 119 req/s`, or
/// the Redis that is away and what the instances do meanwhile.
fn cluster_spans(c: &ClusterView, app: &App, theme: &Theme) -> Vec<Span<'static>> {
    let mut spans = vec![
        Span::styled("  cluster ", theme.dim()),
        Span::styled(c.name.clone(), theme.bold()),
        Span::raw(" "),
    ];
    if c.redis == "ok" {
        spans.push(Span::styled("● redis ok", theme.ok()));
    } else {
        spans.push(Span::styled(
            "○ redis down",
            theme.bad().patch(theme.bold()),
        ));
        spans.push(Span::styled(
            format!(" since {}", clock(c.since_ms, app.utc_offset_s)),
            theme.dim(),
        ));
        let what = if c.on_redis_down == "closed" {
            " (answering 503)".to_string()
        } else {
            format!(
                " (each instance alone, 1/{} of each limit)",
                c.instances.len().max(1)
            )
        };
        spans.push(Span::styled(what, theme.bad()));
    }
    let rates: Vec<String> = c.instances.iter().map(|i| rate(i.requests_per_s)).collect();
    spans.push(Span::styled(
        format!(
            " · {} instance{} ",
            c.instances.len(),
            if c.instances.len() == 1 { "" } else { "s" }
        ),
        theme.dim(),
    ));
    spans.push(Span::raw(format!("{} req/s", rates.join(" · "))));
    if !c.config_writable {
        spans.push(Span::styled(
            "  config read-only: changes live in the cluster",
            theme.warn(),
        ));
    }
    spans
}

/// `● live since 12:03:04` or `○ reconnecting since 12:03:40 (connection refused)`.
fn link_spans(link: &Link, app: &App, theme: &Theme) -> Vec<Span<'static>> {
    let since = clock(link.since_ms, app.utc_offset_s);
    if link.live {
        vec![
            Span::styled("● live", theme.ok().patch(theme.bold())),
            Span::styled(format!(" since {since}"), theme.dim()),
        ]
    } else {
        let mut spans = vec![
            Span::styled("○ reconnecting", theme.bad().patch(theme.bold())),
            Span::styled(format!(" since {since}"), theme.dim()),
        ];
        if let Some(e) = &link.error {
            spans.push(Span::styled(format!(" ({e})"), theme.bad()));
        }
        spans
    }
}

/// One bar per value, scaled to the largest; a second with any requests at
/// all gets at least the lowest bar, so a trickle beside a burst still shows.
pub fn sparkline(data: &[u64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = data.iter().copied().max().unwrap_or(0).max(1);
    data.iter()
        .map(|&v| match v {
            0 => ' ',
            v => BARS[((v * 8).div_ceil(max) as usize).clamp(1, 8) - 1],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn sparkline_scales_to_the_largest_and_never_hides_a_trickle() {
        assert_eq!(super::sparkline(&[0, 1, 8, 4, 100]), " ▁▁▁█");
        assert_eq!(super::sparkline(&[0, 1, 8, 4]), " ▁█▄");
        assert_eq!(super::sparkline(&[0, 0]), "  ");
    }
}
