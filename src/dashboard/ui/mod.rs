//! Drawing: a pure function of the [`App`] (owned data, no locks) onto a
//! ratatui frame, one file per pane.

mod capacity;
mod deployments;
mod footer;
mod form;
mod header;
mod help;
mod models;
pub mod theme;
mod traffic;

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::text::{Line, Text};
use ratatui::widgets::{Paragraph, Wrap};

use super::action::{Action, Pane};
use super::app::{App, Overlay};
pub use theme::Theme;

/// Below this size the dashboard shows a message instead of the panes.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 20;

/// Where each part of the screen goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub header: Rect,
    pub models: Rect,
    pub deployments: Rect,
    pub traffic: Rect,
    pub footer: Rect,
}

impl Areas {
    fn pane(&self, pane: Pane) -> Rect {
        match pane {
            Pane::Models => self.models,
            Pane::Deployments => self.deployments,
            Pane::Traffic => self.traffic,
        }
    }
}

/// How far the help scrolls on a screen of `area`.
pub fn help_max_scroll(app: &App, area: Rect) -> u16 {
    help::max_scroll(app, area)
}

/// Lines a table pane needs around its rows: two borders and the headings.
const TABLE_CHROME: u16 = 3;
const TRAFFIC_MIN: u16 = 5;

/// The layout for `area`, or None when it is too small to be useful.
pub fn layout(area: Rect, app: &App) -> Option<Areas> {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return None;
    }
    let models_want = app.state.models.len().clamp(1, 8) as u16 + TABLE_CHROME;
    let deployments_want = app
        .selected_model()
        .map_or(1, |m| m.deployments.len())
        .clamp(1, 12) as u16
        + TABLE_CHROME;
    // Header (2) and footer (1) first, a few lines of traffic always; of the
    // rest the models take up to half and the deployments what they need;
    // the traffic gets what is left. A table that gets fewer lines than it
    // has rows scrolls to keep its selection in view.
    let rest = area.height - 3 - TRAFFIC_MIN;
    let one_row = TABLE_CHROME + 1;
    let models = models_want.min((rest / 2).max(one_row));
    let deployments = deployments_want.min(rest - models).max(one_row);
    let [header, models, deployments, traffic, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(models),
        Constraint::Length(deployments),
        Constraint::Min(TRAFFIC_MIN),
        Constraint::Length(1),
    ])
    .areas(area);
    Some(Areas {
        header,
        models,
        deployments,
        traffic,
        footer,
    })
}

pub fn draw(frame: &mut Frame, app: &App, theme: &Theme) {
    let area = frame.area();
    let Some(areas) = layout(area, app) else {
        too_small(frame, area, theme);
        return;
    };
    header::draw(frame, areas.header, app, theme);
    models::draw(frame, areas.models, app, theme);
    deployments::draw(frame, areas.deployments, app, theme);
    traffic::draw(frame, areas.traffic, app, theme);
    footer::draw(frame, areas.footer, app, theme);
    match &app.overlay {
        Some(Overlay::Help { scroll }) => help::draw(frame, area, app, *scroll, theme),
        Some(Overlay::Form(form)) => form::draw(frame, area, form, theme),
        None => {}
    }
}

fn too_small(frame: &mut Frame, area: Rect, theme: &Theme) {
    let text = Text::from(vec![
        Line::styled("switchboard", theme.bold()),
        Line::from(format!(
            "needs a terminal of at least {MIN_WIDTH}×{MIN_HEIGHT}; this one is {}×{}.",
            area.width, area.height
        )),
        Line::from("Make the window larger, or press q to quit."),
    ]);
    let height = 4.min(area.height);
    let [_, middle, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(height),
        Constraint::Fill(1),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        middle,
    );
}

/// A mouse event the dashboard cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mouse {
    Click,
    Wheel { down: bool },
}

/// What a mouse event at (`column`, `row`) does: a click selects the row
/// under it, the wheel scrolls the pane under it.
pub fn hit_test(area: Rect, app: &App, column: u16, row: u16, mouse: Mouse) -> Option<Action> {
    if app.overlay.is_some() {
        return None;
    }
    let areas = layout(area, app)?;
    let pos = ratatui::layout::Position::new(column, row);
    let pane = Pane::ALL
        .into_iter()
        .find(|p| areas.pane(*p).contains(pos))?;
    match mouse {
        Mouse::Click => Some(Action::Select {
            pane,
            index: row_at(areas.pane(pane), app, pane, row)?,
        }),
        Mouse::Wheel { down } => Some(Action::Scroll { pane, down }),
    }
}

/// The index of the row of `pane` drawn at screen line `y`.
fn row_at(rect: Rect, app: &App, pane: Pane, y: u16) -> Option<usize> {
    let first = rect.y + 2; // border, headings
    let visible = rect.height.saturating_sub(TABLE_CHROME) as usize;
    if y < first || (y - first) as usize >= visible {
        return None;
    }
    let line = (y - first) as usize;
    let (selected, len) = match pane {
        Pane::Models => (app.model, app.state.models.len()),
        Pane::Deployments => (
            app.deployment,
            app.selected_model().map_or(0, |m| m.deployments.len()),
        ),
        Pane::Traffic => {
            let len = app.traffic.visible().len();
            let cursor = if app.traffic.paused() {
                app.traffic.cursor
            } else {
                0
            };
            (cursor, len)
        }
    };
    let index = scroll_offset(selected, visible) + line;
    (index < len).then_some(index)
}

/// The first row shown so that row `selected` is visible among `visible`.
pub fn scroll_offset(selected: usize, visible: usize) -> usize {
    if visible == 0 {
        0
    } else {
        (selected + 1).saturating_sub(visible)
    }
}

// Formatting shared by the panes.

/// The name of a table row; on the selected row of the focused pane shown
/// reversed. (Reversing the whole row would turn the gauges and coloured
/// states into blocks of colour.)
fn name_cell(
    name: &str,
    width: u16,
    selected: bool,
    focused: bool,
    theme: &Theme,
) -> ratatui::widgets::Cell<'static> {
    let text = format!("{:<w$}", fit(name, width as usize), w = width as usize);
    let style = if selected && focused {
        theme.selected().patch(theme.bold())
    } else {
        ratatui::style::Style::new()
    };
    ratatui::widgets::Cell::from(ratatui::text::Span::styled(text, style))
}

/// `950`, `1.2k`, `45k`, `1.2M`.
pub fn tokens(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..10_000 => format!("{:.1}k", n as f64 / 1e3),
        10_000..1_000_000 => format!("{}k", (n as f64 / 1e3).round() as u64),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// `7`, `19889`, `120k`: exact while it fits in `width` characters.
pub fn count(n: u64, width: usize) -> String {
    let exact = n.to_string();
    if exact.len() <= width {
        exact
    } else {
        tokens(n)
    }
}

/// `0.4`, `12.3`, `245`.
pub fn rate(per_second: f64) -> String {
    if per_second < 100.0 {
        format!("{per_second:.1}")
    } else {
        format!("{per_second:.0}")
    }
}

/// `3ms`, `412ms`, `1.2s`, `14s`.
pub fn millis(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else if ms < 10_000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else {
        format!("{:.0}s", ms / 1000.0)
    }
}

/// `2.1%`, `12%`, `100%`.
pub fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if p > 0.0 && p < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// `HH:MM:SS` of a Unix time in milliseconds, shifted by `offset_s`.
pub fn clock(at_ms: u64, offset_s: i32) -> String {
    let secs = (at_ms / 1000) as i64 + i64::from(offset_s);
    let day = secs.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", day / 3600, day / 60 % 60, day % 60)
}

/// `s` cut to `width` characters, with `…` in place of the cut.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// `s` cut from the left (for paths: the file name matters most).
pub fn fit_left(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::from("…");
    out.extend(s.chars().skip(n - (width - 1)));
    out
}

/// A rectangle of `width`×`height` centred in `area` (clipped to it).
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}
