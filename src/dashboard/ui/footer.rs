//! The footer: the keys that work here, read from the key table.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::Theme;
use crate::dashboard::action::Action;
use crate::dashboard::app::App;
use crate::dashboard::keys;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    // The first key of a binding names it here: `↑↓`, `Tab`, `Space`.
    let entry = |b: &keys::Binding| (b.label.split(' ').next().unwrap_or(b.label), b.hint);
    let width = |(key, hint): (&str, &str)| key.chars().count() + 1 + hint.chars().count() + 2;
    let bindings: Vec<_> = keys::footer(app.context()).collect();
    // Help and quit always show; the others as long as there is room.
    let pinned = |b: &keys::Binding| matches!(b.keys[0].1, Action::Help | Action::Quit);
    let mut room = (area.width as usize).saturating_sub(1);
    room = room.saturating_sub(
        bindings
            .iter()
            .filter(|b| pinned(b))
            .map(|b| width(entry(b)))
            .sum(),
    );
    let mut shown = Vec::new();
    for b in bindings {
        if pinned(b) {
            shown.push(entry(b));
        } else if width(entry(b)) <= room {
            room -= width(entry(b));
            shown.push(entry(b));
        }
    }
    let mut spans = vec![Span::raw(" ")];
    for (key, hint) in shown {
        spans.push(Span::styled(key, theme.key()));
        spans.push(Span::raw(format!(" {hint}  ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
