//! `?`: every key, from the same table as the footer and dispatch.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::{Theme, centered, fit_left};
use crate::dashboard::app::App;
use crate::dashboard::keys;

const LABEL_WIDTH: usize = 12;

pub fn lines(app: &App, width: usize, theme: &Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for (heading, bindings) in keys::help_sections() {
        if !lines.is_empty() {
            lines.push(Line::raw(""));
        }
        lines.push(Line::styled(heading, theme.title(true)));
        for b in bindings {
            lines.push(Line::from(vec![
                Span::styled(format!("  {:<LABEL_WIDTH$}", b.label), theme.key()),
                Span::raw(b.help),
            ]));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled(format!("  {:<LABEL_WIDTH$}", "mouse"), theme.key()),
        Span::raw("click a row to select it; the wheel scrolls"),
    ]));
    lines.push(Line::raw(""));
    let room = width.saturating_sub(10);
    lines.push(Line::from(vec![
        Span::styled("  config  ", theme.dim()),
        Span::raw(fit_left(&app.info.config_path, room)),
    ]));
    if let Some(log) = &app.info.log_path {
        lines.push(Line::from(vec![
            Span::styled("  log     ", theme.dim()),
            Span::raw(fit_left(log, room)),
        ]));
    }
    lines
}

/// The help's box in `area`, its lines, and how far they can scroll.
fn geometry(app: &App, area: Rect, theme: &Theme) -> (Rect, Vec<Line<'static>>, u16) {
    let width = 76.min(area.width.saturating_sub(4));
    let lines = lines(app, width.saturating_sub(2) as usize, theme);
    let height = (lines.len() as u16 + 2).min(area.height.saturating_sub(2));
    let rect = centered(area, width, height);
    let max_scroll = (lines.len() as u16).saturating_sub(height.saturating_sub(2));
    (rect, lines, max_scroll)
}

pub fn max_scroll(app: &App, area: Rect) -> u16 {
    geometry(app, area, &Theme::plain()).2
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, scroll: u16, theme: &Theme) {
    let (rect, lines, max_scroll) = geometry(app, area, theme);
    let scroll = scroll.min(max_scroll);
    let mut block = Block::bordered()
        .border_style(theme.border(true))
        .title(Line::styled(" Keys ", theme.title(true)));
    if max_scroll > 0 {
        block = block.title_bottom(Line::styled(" ↑↓ scroll · Esc closes ", theme.dim()));
    } else {
        block = block.title_bottom(Line::styled(" Esc closes ", theme.dim()));
    }
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(lines).block(block).scroll((scroll, 0)), rect);
}
