//! The add-fallback form, drawn over the panes.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Padding, Paragraph, Wrap};

use super::{Theme, centered};
use crate::config::Provider;
use crate::dashboard::form::{Field, Form, Status, masked_key};

const LABEL_WIDTH: u16 = 12;

pub fn draw(frame: &mut Frame, area: Rect, form: &Form, theme: &Theme) {
    let width = 76.min(area.width.saturating_sub(2));
    let roomy = area.height >= 22;
    let value_width = width.saturating_sub(LABEL_WIDTH + 4) as usize;

    let mut lines: Vec<Line> = Vec::new();
    let mut cursor: Option<(u16, u16)> = None;
    if roomy {
        lines.push(Line::raw(""));
    }
    for field in form.fields() {
        if field == Field::Button {
            break;
        }
        let focused = form.focus == field;
        let label_style = if focused { theme.key() } else { theme.bold() };
        let mut spans = vec![
            Span::styled(if focused { " › " } else { "   " }, theme.key()),
            Span::styled(
                format!("{:<w$}", field.label(), w = LABEL_WIDTH as usize - 2),
                label_style,
            ),
        ];
        match field {
            Field::Provider => {
                for p in Provider::ALL {
                    let on = form.provider == p;
                    spans.push(Span::styled(
                        format!("{} {}  ", if on { "●" } else { "○" }, p.as_str()),
                        if on { theme.bold() } else { theme.dim() },
                    ));
                }
                if focused {
                    spans.push(Span::styled("Space changes", theme.dim()));
                }
            }
            Field::Enabled => {
                spans.push(Span::styled(
                    if form.enabled {
                        "[x] takes traffic once saved"
                    } else {
                        "[ ] saved, but takes no traffic"
                    },
                    theme.bold(),
                ));
                if focused {
                    spans.push(Span::styled("  Space changes", theme.dim()));
                }
            }
            _ => {
                let input = form.input(field).expect("a text field");
                if input.value().is_empty() {
                    let placeholder = match (field, form.provider.default_api_base(Some("REGION")))
                    {
                        (Field::ApiBase, Some(default)) => format!("{default} (the default)"),
                        (Field::ApiKey, _) if form.provider == Provider::Bedrock => {
                            "a Bedrock API key, or none with AWS keys below".to_string()
                        }
                        (Field::Priority, _) if form.tiers.len() > 1 => {
                            let tiers: Vec<String> =
                                form.tiers.iter().map(|t| t.to_string()).collect();
                            format!(
                                "1 (the default; lower is tried first; {} uses {})",
                                form.model,
                                tiers.join(", ")
                            )
                        }
                        _ => field.placeholder().to_string(),
                    };
                    spans.push(Span::styled(placeholder, theme.dim()));
                    if focused {
                        cursor = Some((LABEL_WIDTH + 1, lines.len() as u16));
                    }
                } else {
                    let scroll = input.visual_scroll(value_width);
                    let value = if matches!(
                        field,
                        Field::ApiKey
                            | Field::AwsAccessKeyId
                            | Field::AwsSecretAccessKey
                            | Field::AwsSessionToken
                    ) {
                        masked_key(input.value())
                    } else {
                        input.value().to_string()
                    };
                    let shown: String = value.chars().skip(scroll).take(value_width).collect();
                    if field == Field::ModelId && form.model_id_suggested {
                        // A suggestion, not yet the operator's: typing replaces it.
                        spans.push(Span::styled(shown, theme.dim()));
                        if focused {
                            spans.push(Span::styled(
                                "  suggested: type to replace, → to edit",
                                theme.dim(),
                            ));
                        }
                    } else {
                        spans.push(Span::raw(shown));
                    }
                    if focused {
                        let x = LABEL_WIDTH + 1 + (input.visual_cursor() - scroll) as u16;
                        cursor = Some((x, lines.len() as u16));
                    }
                }
            }
        }
        lines.push(Line::from(spans));
        if let Some((f, message)) = &form.error
            && *f == field
        {
            // Under the value, wrapped to the box.
            let indent = LABEL_WIDTH as usize + 1;
            let room = (width as usize).saturating_sub(2 + indent + 2).max(16);
            for (i, part) in wrap(message, room).into_iter().enumerate() {
                lines.push(Line::styled(
                    format!("{:indent$}{}{part}", "", if i == 0 { "↳ " } else { "  " }),
                    theme.bad().patch(theme.bold()),
                ));
            }
        }
    }
    if let Some((Field::Button, message)) = &form.error {
        lines.push(Line::styled(format!("   {message}"), theme.bad()));
    }
    lines.push(Line::raw(""));
    let button = format!("[ {} ]", form.button_label());
    let button_style = if form.focus == Field::Button {
        theme.selected().patch(theme.bold())
    } else {
        theme.bold()
    };
    lines.push(Line::from(vec![
        Span::raw(format!("{:w$}", "", w = LABEL_WIDTH as usize + 1)),
        Span::styled(button, button_style),
    ]));
    if roomy {
        lines.push(Line::raw(""));
    }
    let (status, style) = match &form.status {
        Status::Untested {
            changed_after_pass: true,
        } => (
            "Changed since the test passed: test again before saving.".to_string(),
            theme.warn(),
        ),
        Status::Untested { .. } => (
            "Test & continue sends one small request through this deployment.".to_string(),
            theme.dim(),
        ),
        Status::Testing => ("Testing…".to_string(), theme.bold()),
        Status::Failed(r) => (r.summary(), theme.bad()),
        Status::Passed(r) => (
            format!(
                "{} — Save makes it live and writes it to the config.",
                r.summary()
            ),
            theme.ok(),
        ),
        Status::Saving => ("Saving…".to_string(), theme.bold()),
        Status::SaveFailed(m) => (format!("✗ not saved: {m}"), theme.bad()),
    };
    let per_line = width.saturating_sub(4).max(1) as usize;
    let status_lines = status.chars().count().div_ceil(per_line) as u16;

    let body = lines.len() as u16;
    let height = (body + status_lines.min(3) + 2).min(area.height);
    let rect = centered(area, width, height);
    let block = Block::bordered()
        .border_style(theme.border(true))
        .title(Line::styled(
            format!(" Add a fallback to {} ", form.model),
            theme.title(true),
        ));
    let inner = block.inner(rect);
    frame.render_widget(Clear, rect);
    frame.render_widget(block, rect);
    frame.render_widget(
        Paragraph::new(lines),
        Rect {
            height: body.min(inner.height),
            ..inner
        },
    );
    if inner.height > body {
        let rest = Rect {
            y: inner.y + body,
            height: inner.height - body,
            ..inner
        };
        frame.render_widget(
            Paragraph::new(Line::styled(status, style))
                .wrap(Wrap { trim: true })
                .block(Block::new().padding(Padding::horizontal(1))),
            rest,
        );
    }
    if let Some((x, y)) = cursor
        && y < inner.height
    {
        frame.set_cursor_position(Position::new(inner.x + x, inner.y + y));
    }
}

/// `text` in lines of at most `width` characters, broken between words
/// (a word longer than a line is cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if !line.is_empty() && needed > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines.into_iter().map(|l| super::fit(&l, width)).collect()
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrap_breaks_between_words_and_cuts_what_cannot_break() {
        assert_eq!(
            wrap("must be a whole number", 10),
            ["must be a", "whole", "number"]
        );
        assert_eq!(wrap("short", 10), ["short"]);
        assert_eq!(wrap("", 10), [""]);
        assert_eq!(
            wrap("https://a-very-long-host.example.com", 10),
            ["https://a…"]
        );
    }
}
