//! The Models pane: each model's traffic and how many of its deployments
//! are healthy; `⤵T2` by the name of a model whose traffic spills to tier 2;
//! its headroom when it has token limits, and its queue while requests wait.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, HighlightSpacing, Row, Table, TableState};

use super::{Theme, capacity, fit, name_cell, percent, rate, tokens};
use crate::dashboard::action::Pane;
use crate::dashboard::app::App;
use crate::dashboard::tiers;
use crate::gateway::ModelView;
use crate::router::State;

const SPACING: u16 = 2;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let focused = app.focus == Pane::Models && app.overlay.is_none();
    let block = Block::bordered()
        .border_style(theme.border(focused))
        .title(Line::styled(" Models ", theme.title(focused)));

    let name_width = app
        .state
        .models
        .iter()
        .map(|m| m.name.chars().count() + mark_room(m))
        .max()
        .unwrap_or(5)
        .clamp(5, 32) as u16;
    let right = |s: String| Cell::from(Line::from(s).right_aligned());
    let widths = [
        Constraint::Length(name_width),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Fill(1),
    ];
    let heading = Row::new(vec![
        Cell::from("model"),
        right("req/s".into()),
        right("tok/min".into()),
        right("errors".into()),
        Cell::from("deployments"),
    ])
    .style(theme.dim());
    // What the deployments column gets: the inner width less the selection
    // mark, the columns before it and the gaps.
    let room = widths
        .iter()
        .map(|c| match c {
            Constraint::Length(w) => w + SPACING,
            _ => 0,
        })
        .fold(area.width.saturating_sub(4), u16::saturating_sub) as usize;

    let rows = app.state.models.iter().enumerate().map(|(i, m)| {
        let r = m.last_minute;
        let errors = match r.error_rate() {
            None => Cell::from(Line::styled("–", theme.dim()).right_aligned()),
            Some(e) => {
                let style = if e == 0.0 {
                    theme.dim()
                } else if e < 0.05 {
                    theme.warn()
                } else {
                    theme.bad()
                };
                Cell::from(Line::styled(percent(e), style).right_aligned())
            }
        };
        let healthy = m
            .deployments
            .iter()
            .filter(|d| d.state == State::Healthy)
            .count();
        let total = m.deployments.len();
        let mut dots: Vec<Span> = Vec::new();
        if total <= 8 {
            // Tier by tier, a space between them.
            let mut tier = None;
            for i in tiers::order(m) {
                let d = &m.deployments[i];
                if tier.is_some_and(|t| t != d.priority) {
                    dots.push(Span::raw(" "));
                }
                tier = Some(d.priority);
                dots.push(match d.state {
                    State::Healthy => Span::styled("●", theme.ok()),
                    State::CoolingDown => Span::styled("◐", theme.warn()),
                    State::Disabled => Span::styled("○", theme.dim()),
                });
            }
            dots.push(Span::raw(" "));
        }
        let style = if healthy == total && total > 0 {
            theme.ok()
        } else if healthy == 0 {
            theme.bad()
        } else {
            theme.warn()
        };
        let count = Span::styled(format!("{healthy}/{total} healthy"), style);
        Row::new(vec![
            match tiers::spill_mark(m) {
                None => name_cell(&m.name, name_width, i == app.model, focused, theme),
                Some(mark) => spilling_name(m, &mark, name_width, i == app.model, focused, theme),
            },
            right(rate(r.per_second)),
            right(tokens(r.tokens_per_minute)),
            errors,
            Cell::from(deployments_cell(dots, count, m, room, theme)),
        ])
    });

    let table = Table::new(rows, widths)
        .header(heading)
        .block(block)
        .column_spacing(SPACING)
        .highlight_symbol("▸ ")
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(theme.selected_unfocused());
    let mut state = TableState::default().with_selected(Some(app.model));
    frame.render_stateful_widget(table, area, &mut state);
}

/// The deployments column: the dots and the count of healthy deployments,
/// then the headroom and the queue when there are (a model without limits
/// reads as it did). When that is too wide for `room`, the dots go first
/// (the count says it too), then the queue's words; on the narrowest the
/// queue and the headroom come first, since they are what is about to go
/// wrong.
fn deployments_cell(
    dots: Vec<Span<'static>>,
    count: Span<'static>,
    m: &ModelView,
    room: usize,
    theme: &Theme,
) -> Line<'static> {
    let headroom = capacity::headroom(m, theme);
    let mut line = dots;
    line.push(count.clone());
    if headroom.is_none() && m.queue.length == 0 {
        return Line::from(line);
    }
    let gap = || Span::raw("  ");
    let with = |mut spans: Vec<Span<'static>>, short: bool| {
        if let Some(h) = &headroom {
            spans.extend([gap(), h.clone()]);
        }
        let queue = capacity::queue(&m.queue, short, theme);
        if !queue.is_empty() {
            spans.push(gap());
            spans.extend(queue);
        }
        Line::from(spans)
    };
    let mut urgent_first = capacity::queue(&m.queue, true, theme);
    if let Some(h) = &headroom {
        if !urgent_first.is_empty() {
            urgent_first.push(gap());
        }
        urgent_first.push(h.clone());
    }
    urgent_first.extend([gap(), count.clone()]);
    [
        with(line, false),
        with(vec![count.clone()], false),
        with(vec![count], true),
    ]
    .into_iter()
    .find(|line| line.width() <= room)
    .unwrap_or_else(|| Line::from(urgent_first))
}

/// The room a tiered model's name keeps for its spill mark (` ⤵T2`).
fn mark_room(m: &ModelView) -> usize {
    if tiers::tiered(m) {
        1 + tiers::spill_mark_width(m)
    } else {
        0
    }
}

/// `gpt-4o ⤵T2`: the name with the tier its traffic spills to.
fn spilling_name(
    m: &ModelView,
    mark: &str,
    width: u16,
    selected: bool,
    focused: bool,
    theme: &Theme,
) -> Cell<'static> {
    let width = width as usize;
    let mark_width = mark.chars().count() + 1;
    let name = fit(&m.name, width.saturating_sub(mark_width));
    let pad = width.saturating_sub(name.chars().count() + mark_width);
    let base = if selected && focused {
        theme.selected().patch(theme.bold())
    } else {
        ratatui::style::Style::new()
    };
    Cell::from(Line::from(vec![
        Span::styled(name, base),
        Span::styled(
            format!(" {mark}"),
            base.patch(theme.warn()).patch(theme.bold()),
        ),
        Span::styled(" ".repeat(pad), base),
    ]))
}
