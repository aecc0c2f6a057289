//! The Deployments pane: the selected model's deployments, each with its
//! toggle, state, TPM gauge and the last minute's traffic. A model in more
//! than one tier lists them tier by tier, with a tier column; one that pins
//! sessions shows each deployment's pins. Beside the gauge, when there is
//! something to say, the limit beyond TPM closest to full and when the
//! deployment will be full (or the limit it is at).

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, HighlightSpacing, Row, Table, TableState};

use super::{Theme, capacity, count, fit, millis, percent, scroll_offset, tokens};
use crate::dashboard::action::Pane;
use crate::dashboard::app::{App, Level};
use crate::dashboard::tiers;
use crate::gateway::DeploymentView;
use crate::router::{Cause, State};

/// Columns that give way, least useful first, when the pane is narrow.
/// `Limit` and `Forecast` stand beside the gauge, the others after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Limit,
    Forecast,
    PerMin,
    P50,
    P95,
    Errors,
    Share,
}

/// The widths of the capacity columns, which depend on the deployments'
/// limits (0: not shown).
#[derive(Debug, Clone, Copy)]
struct Widths {
    limit: u16,
    forecast: u16,
}

impl Col {
    fn width(self, w: Widths) -> u16 {
        match self {
            Col::Limit => w.limit,
            Col::Forecast => w.forecast,
            Col::PerMin => 5,
            Col::P50 | Col::P95 => 6,
            Col::Errors => 4,
            Col::Share => 5,
        }
    }

    fn heading(self) -> &'static str {
        match self {
            Col::Limit => "limit",
            Col::Forecast => "forecast",
            Col::PerMin => "req/m",
            Col::P50 => "p50",
            Col::P95 => "p95",
            Col::Errors => "err",
            Col::Share => "share",
        }
    }

    /// Beside the gauge, before the pins and the traffic.
    fn beside_gauge(self) -> bool {
        matches!(self, Col::Limit | Col::Forecast)
    }
}

const ON_WIDTH: u16 = 3;
const STATE_WIDTH: u16 = 11;
/// The pinned sessions: `sess`, up to `9999` (then `12k`).
const SESS_WIDTH: u16 = 4;
const GAUGE_MIN: u16 = 16;
/// The forecast stays while the gauge keeps this much: a bar of three and
/// its figures.
const GAUGE_TIGHT: u16 = 13;
/// Dropped in this order when the gauge would get narrower than GAUGE_MIN:
/// the capacity columns last (they are there only for deployments that have
/// those limits), the forecast the very last, since it is what an operator
/// acts on.
const DROP_ORDER: [Col; 7] = [
    Col::P50,
    Col::Share,
    Col::Errors,
    Col::P95,
    Col::PerMin,
    Col::Limit,
    Col::Forecast,
];

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let focused = app.focus == Pane::Deployments && app.overlay.is_none();
    let model = app.selected_model();
    let mut title = vec![Span::styled(
        match model {
            Some(m) => format!(" Deployments · {} ", m.name),
            None => " Deployments ".to_string(),
        },
        theme.title(focused),
    )];
    if let Some(tier) = model.and_then(|m| m.spilling_to) {
        title.push(Span::styled(
            format!("⤵ spilling to {} ", tiers::label(tier)),
            theme.warn().patch(theme.bold()),
        ));
    }
    let mut block = Block::bordered()
        .border_style(theme.border(focused))
        .title(Line::from(title));
    if let Some(n) = app.notice() {
        let style = match n.level {
            Level::Info => theme.bold(),
            Level::Ok => theme.ok(),
            Level::Error => theme.bad().patch(theme.bold()),
        };
        let room = area.width.saturating_sub(4) as usize;
        block = block.title_bottom(Line::styled(
            format!(" {} ", fit(&n.text, room.saturating_sub(2))),
            style,
        ));
    }
    let Some(model) = model else {
        frame.render_widget(block, area);
        return;
    };

    let name_width = model
        .deployments
        .iter()
        .map(|d| d.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 24) as u16;
    let order = tiers::order(model);
    // A tier column only when there is more than one tier: the common case
    // looks as it always did.
    let tier_width = if tiers::tiered(model) {
        order
            .last()
            .map_or(2, |&i| tiers::label(model.deployments[i].priority).len())
            .max(4) as u16
    } else {
        0
    };
    let pins = tiers::shows_pins(model);
    // The inner width, less the selection mark.
    let inner = area.width.saturating_sub(4);
    let widths = Widths {
        limit: capacity::other_limit_width(&model.deployments),
        forecast: capacity::forecast_width(&model.deployments),
    };
    let mut cols = vec![Col::PerMin, Col::P50, Col::P95, Col::Errors, Col::Share];
    if widths.forecast > 0 {
        cols.insert(0, Col::Forecast);
    }
    if widths.limit > 0 {
        cols.insert(0, Col::Limit);
    }
    let optional = |width: u16| if width > 0 { width + 1 } else { 0 };
    let fixed = |cols: &[Col]| -> u16 {
        optional(tier_width)
            + ON_WIDTH
            + name_width
            + STATE_WIDTH
            + optional(if pins { SESS_WIDTH } else { 0 })
            + cols.iter().map(|c| c.width(widths)).sum::<u16>()
            + (cols.len() as u16 + 3)
    };
    for drop in DROP_ORDER {
        let min = if drop == Col::Forecast {
            GAUGE_TIGHT
        } else {
            GAUGE_MIN
        };
        if inner.saturating_sub(fixed(&cols)) >= min {
            break;
        }
        cols.retain(|c| *c != drop);
    }
    let gauge_width = inner.saturating_sub(fixed(&cols)).max(8);

    let right = |s: String| Cell::from(Line::from(s).right_aligned());
    let mut heading = Vec::new();
    if tier_width > 0 {
        heading.push(Cell::from("tier"));
    }
    heading.extend([
        Cell::from("on"),
        Cell::from("name"),
        Cell::from("state"),
        Cell::from("TPM used / limit"),
    ]);
    let (beside, after): (Vec<Col>, Vec<Col>) = cols.iter().partition(|c| c.beside_gauge());
    heading.extend(
        beside
            .iter()
            .map(|c| Cell::from(fit(c.heading(), c.width(widths) as usize))),
    );
    if pins {
        heading.push(right("sess".into()));
    }
    heading.extend(after.iter().map(|c| right(c.heading().into())));

    // A tier is named on its first row, and on the first row in view.
    let first_shown = scroll_offset(
        app.deployment,
        area.height.saturating_sub(super::TABLE_CHROME) as usize,
    );
    let rows = order.iter().enumerate().map(|(row, &i)| {
        let d = &model.deployments[i];
        let r = d.last_minute;
        let enabled = app.enabled(&model.name, d);
        let mut cells = Vec::new();
        if tier_width > 0 {
            let starts = row == first_shown
                || row
                    .checked_sub(1)
                    .is_none_or(|p| model.deployments[order[p]].priority != d.priority);
            let style = if model.spilling_to == Some(d.priority) {
                theme.warn().patch(theme.bold())
            } else {
                theme.bold()
            };
            cells.push(Cell::from(Span::styled(
                if starts {
                    tiers::label(d.priority)
                } else {
                    String::new()
                },
                style,
            )));
        }
        cells.extend([
            Cell::from(if enabled { "[x]" } else { "[ ]" }),
            super::name_cell(&d.name, name_width, row == app.deployment, focused, theme),
            Cell::from(state(d, enabled, theme)),
            Cell::from(gauge(d.tpm_used, d.tpm_limit, gauge_width as usize, theme)),
        ]);
        let cell = |c: &Col| match c {
            Col::Limit => Cell::from(capacity::other_limit(d, theme)),
            Col::Forecast => Cell::from(capacity::forecast(d, theme)),
            Col::PerMin => right(count(r.attempts, Col::PerMin.width(widths) as usize)),
            Col::P50 => right(r.p50_ms.map_or("–".into(), millis)),
            Col::P95 => right(r.p95_ms.map_or("–".into(), millis)),
            Col::Errors => Cell::from(
                Line::styled(
                    count(r.failures, Col::Errors.width(widths) as usize),
                    if r.failures > 0 {
                        theme.bad()
                    } else {
                        theme.dim()
                    },
                )
                .right_aligned(),
            ),
            Col::Share => right(r.share.map_or("–".into(), percent)),
        };
        cells.extend(beside.iter().map(cell));
        if pins {
            let n = u64::from(d.pinned_sessions);
            let style = if n > 0 { theme.bold() } else { theme.dim() };
            cells.push(Cell::from(
                Line::styled(count(n, SESS_WIDTH as usize), style).right_aligned(),
            ));
        }
        cells.extend(after.iter().map(cell));
        Row::new(cells)
    });

    let mut constraints = Vec::new();
    if tier_width > 0 {
        constraints.push(Constraint::Length(tier_width));
    }
    constraints.extend([
        Constraint::Length(ON_WIDTH),
        Constraint::Length(name_width),
        Constraint::Length(STATE_WIDTH),
        Constraint::Length(gauge_width),
    ]);
    constraints.extend(beside.iter().map(|c| Constraint::Length(c.width(widths))));
    if pins {
        constraints.push(Constraint::Length(SESS_WIDTH));
    }
    constraints.extend(after.iter().map(|c| Constraint::Length(c.width(widths))));
    let table = Table::new(rows, constraints)
        .header(Row::new(heading).style(theme.dim()))
        .block(block)
        .column_spacing(1)
        .highlight_symbol("▸ ")
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(theme.selected_unfocused());
    let mut state = TableState::default().with_selected(Some(app.deployment));
    frame.render_stateful_widget(table, area, &mut state);
}

fn state(d: &DeploymentView, enabled: bool, theme: &Theme) -> Line<'static> {
    if enabled != d.enabled {
        return Line::styled("saving…", theme.dim());
    }
    match d.state {
        State::Healthy => Line::styled("healthy", theme.ok()),
        State::Disabled => Line::styled("disabled", theme.dim()),
        State::CoolingDown => {
            let style = match d.cooldown_cause {
                Some(Cause::Failing) => theme.bad(),
                _ => theme.warn(),
            };
            Line::styled(
                format!("cooling {}s", d.cooldown_remaining_s.ceil().max(1.0) as u64),
                style,
            )
        }
    }
}

/// `██████▍░░░ 12k/30k`: the tokens of the last minute against the limit,
/// green, then yellow from 70 %, red from 90 %.
pub fn gauge(used: u64, limit: Option<u64>, width: usize, theme: &Theme) -> Line<'static> {
    let Some(limit) = limit else {
        return Line::from(vec![
            Span::raw(tokens(used)),
            Span::styled(" · no limit", theme.dim()),
        ]);
    };
    // Fixed width, so that the bars of all rows end in the same column.
    let text = format!(" {:>9}", format!("{}/{}", tokens(used), tokens(limit)));
    let bar = width.saturating_sub(text.chars().count()).max(3);
    let fraction = used as f64 / limit.max(1) as f64;
    let eighths = (fraction.min(1.0) * bar as f64 * 8.0).round() as usize;
    let mut filled = "█".repeat(eighths / 8);
    if !eighths.is_multiple_of(8) {
        filled.push(['▏', '▎', '▍', '▌', '▋', '▊', '▉'][eighths % 8 - 1]);
    }
    let empty = bar - filled.chars().count();
    Line::from(vec![
        Span::styled(filled, theme.level(fraction)),
        Span::styled("░".repeat(empty), theme.dim()),
        Span::styled(text, theme.level(fraction)),
    ])
}
