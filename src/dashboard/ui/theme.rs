//! Styles. Modest named colours on the terminal's own background (never a
//! background colour of ours, so light and dark themes both read well),
//! bold and reverse for emphasis and selection, and none of the colours
//! when `NO_COLOR` is set (https://no-color.org).

use ratatui::style::{Color, Modifier, Style};

/// Where a gauge turns yellow, and red: the share of its limit used.
const WARN_AT: f64 = 0.7;
const BAD_AT: f64 = 0.9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Colours unless `NO_COLOR` is set to something non-empty.
    pub fn from_env() -> Self {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    pub fn plain() -> Self {
        Theme { color: false }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn ok(&self) -> Style {
        self.fg(Color::Green)
    }

    pub fn warn(&self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn bad(&self) -> Style {
        self.fg(Color::Red)
    }

    /// Secondary text: column headings, units, placeholders.
    pub fn dim(&self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }

    pub fn accent(&self) -> Style {
        self.fg(Color::Cyan)
    }

    pub fn bold(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// A key name in the footer and the help.
    pub fn key(&self) -> Style {
        self.accent().add_modifier(Modifier::BOLD)
    }

    /// The selected row of the focused pane.
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// The selected row of a pane without focus.
    pub fn selected_unfocused(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn border(&self, focused: bool) -> Style {
        if focused {
            self.accent().add_modifier(Modifier::BOLD)
        } else {
            self.dim()
        }
    }

    pub fn title(&self, focused: bool) -> Style {
        if focused {
            self.accent().add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        }
    }

    /// A gauge or a rate by how close to its limit: under 70 %, to 90 %, over.
    pub fn level(&self, fraction: f64) -> Style {
        if fraction >= BAD_AT {
            self.bad()
        } else if fraction >= WARN_AT {
            self.warn()
        } else {
            self.ok()
        }
    }

    /// A share left (a model's headroom): the gauge's levels seen from the
    /// other side, so that a model and its gauges turn at the same points —
    /// green above 30 % left, yellow to 10 %, red under.
    pub fn headroom(&self, left: f64) -> Style {
        if left < 1.0 - BAD_AT {
            self.bad()
        } else if left <= 1.0 - WARN_AT {
            self.warn()
        } else {
            self.ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_turns_where_the_gauges_do() {
        let t = Theme { color: true };
        assert_eq!(t.headroom(0.35), t.ok());
        assert_eq!(t.headroom(0.3), t.warn());
        assert_eq!(t.headroom(0.1), t.warn());
        assert_eq!(t.headroom(0.09), t.bad());
        assert_eq!(t.headroom(0.0), t.bad());
        assert_eq!(t.level(0.65), t.headroom(0.35));
        assert_eq!(t.level(0.95), t.headroom(0.05));
    }
}
