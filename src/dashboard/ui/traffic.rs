//! The Live traffic pane: one line per request, newest first, with the
//! deployments tried and how each answered; deployment changes in between.

use ratatui::Frame;
use ratatui::layout::{Constraint, Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, HighlightSpacing, Row, Table, TableState};

use super::{Theme, clock, fit, millis, scroll_offset, tokens};
use crate::dashboard::action::Pane;
use crate::dashboard::app::{App, change_word};
use crate::events::{AttemptOutcome, DeploymentChange, Event, RequestEvent, RequestOutcome};
use crate::router::Cause;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, theme: &Theme) {
    let focused = app.focus == Pane::Traffic && app.overlay.is_none();
    let t = &app.traffic;
    let mut title = vec![Span::styled(" Live traffic ", theme.title(focused))];
    if !t.filter.is_empty() {
        title.push(Span::styled(format!("/{} ", t.filter), theme.accent()));
        title.push(Span::raw(" "));
    }
    if t.paused() {
        let text = match t.missed {
            0 => "paused · p resumes".to_string(),
            n => format!("paused · {n} new · p resumes"),
        };
        title.push(Span::styled(
            format!(" {text} "),
            theme.warn().patch(theme.selected()),
        ));
        title.push(Span::raw(" "));
    }
    let mut block = Block::bordered()
        .border_style(theme.border(focused))
        .title(Line::from(title));

    let rows = t.visible();
    let visible = area.height.saturating_sub(3) as usize;
    let cursor = t
        .paused()
        .then_some(t.cursor.min(rows.len().saturating_sub(1)));
    let offset = scroll_offset(cursor.unwrap_or(0), visible);

    // The filter being typed, or the details of the highlighted line.
    if let Some(input) = &t.filter_input {
        let prompt = " filter: ";
        let width = area.width.saturating_sub(prompt.len() as u16 + 4) as usize;
        let scroll = input.visual_scroll(width);
        let shown: String = input.value().chars().skip(scroll).take(width).collect();
        block = block.title_bottom(Line::from(vec![
            Span::styled(prompt, theme.key()),
            Span::raw(format!("{shown} ")),
        ]));
        let x = area.x + 1 + prompt.len() as u16 + (input.visual_cursor() - scroll) as u16;
        frame.set_cursor_position(Position::new(x.min(area.right() - 2), area.bottom() - 1));
    } else if let Some(ev) = cursor.and_then(|c| rows.get(c)) {
        let room = area.width.saturating_sub(4) as usize;
        block = block.title_bottom(Line::styled(fit(&details(ev), room), theme.dim()));
    } else if rows.is_empty() {
        let text = if t.filter.is_empty() {
            " waiting for requests… "
        } else {
            " nothing matches the filter (Esc clears it) "
        };
        block = block.title_bottom(Line::styled(text, theme.dim()));
    }

    // Model names give way to the route on narrow screens.
    let model_cap = if area.width < 110 { 14 } else { 24 };
    let model_width = app
        .state
        .models
        .iter()
        .map(|m| m.name.chars().count())
        .max()
        .unwrap_or(6)
        .clamp(6, model_cap) as u16;
    // In a cluster, which instance served each line.
    let instance_width = app.state.cluster.as_ref().map(|c| {
        c.instances
            .iter()
            .map(|i| i.id.chars().count())
            .max()
            .unwrap_or(8)
            .clamp(8, INSTANCE_CAP)
    });
    // The door in four letters where room is short.
    let door_width = if area.width < 100 { 4 } else { DOOR_WIDTH };
    let right = |s: &str| Cell::from(Line::from(s.to_string()).right_aligned());
    let mut heading = vec![Cell::from("time")];
    if instance_width.is_some() {
        heading.push(Cell::from("instance"));
    }
    heading.extend([
        Cell::from("model"),
        Cell::from("door"),
        Cell::from("route"),
        right("status"),
        right("latency"),
        right("tokens"),
    ]);
    let heading = Row::new(heading).style(theme.dim());

    let lines = rows.iter().skip(offset).take(visible).map(|ev| {
        let mut row = row(
            ev,
            model_width as usize,
            door_width,
            app.utc_offset_s,
            theme,
        );
        if !matches!(&***ev, Event::Request(_)) {
            // Only requests come in by a door; the others' text keeps the route's room.
            row.insert(2, Cell::from(""));
        }
        if let Some(width) = instance_width {
            let name = ev.instance().map(|i| tail(i, width)).unwrap_or_default();
            row.insert(1, Cell::from(Span::styled(name, theme.dim())));
        }
        Row::new(row)
    });
    let mut widths = vec![Constraint::Length(8)];
    if let Some(width) = instance_width {
        widths.push(Constraint::Length(width as u16));
    }
    widths.extend([
        Constraint::Length(model_width),
        Constraint::Length(door_width),
        Constraint::Fill(1),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(6),
    ]);
    let table = Table::new(lines, widths)
        .header(heading)
        .block(block)
        .column_spacing(1)
        .highlight_symbol("▸ ")
        .highlight_spacing(HighlightSpacing::Always)
        .row_highlight_style(if focused {
            theme.selected()
        } else {
            theme.selected_unfocused()
        });
    let mut state = TableState::default().with_selected(cursor.map(|c| c - offset));
    frame.render_stateful_widget(table, area, &mut state);
}

/// `responses`, the longest door name.
const DOOR_WIDTH: u16 = 9;

/// The widest an instance's name is shown.
const INSTANCE_CAP: usize = 16;

/// The end of an instance id, where `host-port-nonce` differs.
fn tail(id: &str, width: usize) -> String {
    let n = id.chars().count();
    if n <= width {
        return id.to_string();
    }
    let kept: String = id.chars().skip(n - width + 1).collect();
    format!("…{kept}")
}

fn row(
    ev: &Event,
    model_width: usize,
    door_width: u16,
    offset_s: i32,
    theme: &Theme,
) -> Vec<Cell<'static>> {
    match ev {
        Event::Request(r) => {
            let (status, style) = status(r, theme);
            let tokens_text = if r.tokens_estimated {
                format!("~{}", tokens(r.prompt_tokens + r.completion_tokens))
            } else {
                tokens(r.prompt_tokens + r.completion_tokens)
            };
            vec![
                // When it ended: the order of the lines.
                Cell::from(Span::styled(
                    clock(r.at_ms + r.latency_ms as u64, offset_s),
                    theme.dim(),
                )),
                Cell::from(fit(&r.model, model_width)),
                Cell::from(Span::styled(
                    match (r.door(), door_width < DOOR_WIDTH) {
                        ("messages", true) => "msgs",
                        ("responses", true) => "resp",
                        (door, _) => door,
                    },
                    theme.dim(),
                )),
                Cell::from(route(r, theme)),
                Cell::from(Line::styled(status, style).right_aligned()),
                Cell::from(Line::from(millis(r.latency_ms)).right_aligned()),
                Cell::from(Line::from(tokens_text).right_aligned()),
            ]
        }
        Event::Deployment(d) => {
            let (text, style) = match &d.change {
                DeploymentChange::CoolingDown { cause, seconds } => (
                    format!(
                        "⚑ {} cooling down {:.0}s ({})",
                        d.deployment,
                        seconds.ceil(),
                        match cause {
                            Cause::RateLimited => "rate limited",
                            Cause::Failing => "failing",
                        }
                    ),
                    match cause {
                        Cause::RateLimited => theme.warn(),
                        Cause::Failing => theme.bad(),
                    },
                ),
                DeploymentChange::Recovered => {
                    (format!("⚑ {} recovered", d.deployment), theme.ok())
                }
                c => (
                    format!("⚑ {} {}", d.deployment, change_word(c)),
                    theme.accent(),
                ),
            };
            vec![
                Cell::from(Span::styled(clock(d.at_ms, offset_s), theme.dim())),
                Cell::from(fit(&d.model, model_width)),
                Cell::from(Line::styled(text, style)),
            ]
        }
        Event::Route(r) => vec![
            Cell::from(Span::styled(clock(r.at_ms, offset_s), theme.dim())),
            Cell::from(fit(&r.model, model_width)),
            Cell::from(Line::styled(r.describe(), theme.warn())),
        ],
        Event::Config(c) => {
            let (text, style) = if c.applied {
                (format!("⚙ config reloaded: {}", c.message), theme.accent())
            } else {
                (format!("⚙ config not reloaded: {}", c.message), theme.bad())
            };
            vec![
                Cell::from(Span::styled(clock(c.at_ms, offset_s), theme.dim())),
                Cell::from(""),
                Cell::from(Line::styled(text, style)),
            ]
        }
        Event::Lagged(l) => vec![
            Cell::from(Span::styled(clock(l.at_ms, offset_s), theme.dim())),
            Cell::from(""),
            Cell::from(Line::styled(format!("⚠ {}", l.describe()), theme.warn())),
        ],
    }
}

/// `eastus ✗429 → westeurope ✓`
fn route(r: &RequestEvent, theme: &Theme) -> Line<'static> {
    let mut spans = Vec::new();
    if r.attempts.is_empty() {
        spans.push(Span::styled("(gateway)", theme.dim()));
    }
    for (i, a) in r.attempts.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" → ", theme.dim()));
        }
        let style = match a.outcome {
            AttemptOutcome::Ok { .. } => theme.ok(),
            AttemptOutcome::Status { status: 429 } => theme.warn(),
            AttemptOutcome::Cancelled => theme.dim(),
            _ => theme.bad(),
        };
        spans.push(Span::raw(format!("{} ", a.deployment)));
        spans.push(Span::styled(a.outcome.label(), style));
    }
    Line::from(spans)
}

fn status(r: &RequestEvent, theme: &Theme) -> (String, ratatui::style::Style) {
    match r.outcome {
        RequestOutcome::StreamInterrupted => ("cut".into(), theme.bad()),
        RequestOutcome::ClientClosed => ("left".into(), theme.dim()),
        _ => {
            let style = match r.status {
                200..=299 => theme.ok(),
                400..=499 => theme.warn(),
                _ => theme.bad(),
            };
            (r.status.to_string(), style)
        }
    }
}

/// The highlighted line in full: `#12 chat.completions stream · eastus ✗429 3ms → …`.
fn details(ev: &Event) -> String {
    match ev {
        Event::Request(r) => {
            let attempts = r
                .attempts
                .iter()
                .map(|a| {
                    format!(
                        "{} {} {}",
                        a.deployment,
                        a.outcome.label(),
                        millis(a.latency_ms)
                    )
                })
                .collect::<Vec<_>>()
                .join(" → ");
            format!(
                " #{}{} {}{} · {} · {}+{} tokens{} ",
                r.id,
                r.instance
                    .as_ref()
                    .map(|i| format!(" on {i}"))
                    .unwrap_or_default(),
                r.endpoint,
                if r.stream { " (stream)" } else { "" },
                if attempts.is_empty() {
                    "no upstream".to_string()
                } else {
                    attempts
                },
                r.prompt_tokens,
                r.completion_tokens,
                if r.tokens_estimated {
                    " (estimated)"
                } else {
                    ""
                },
            )
        }
        Event::Deployment(d) => format!(
            " {} / {}: {} ",
            d.model,
            d.deployment,
            change_word(&d.change)
        ),
        Event::Route(r) => format!(" {} ", r.describe()),
        Event::Config(c) => format!(" config: {} ", c.message),
        Event::Lagged(l) => format!(" {} ", l.describe()),
    }
}
