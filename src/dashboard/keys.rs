//! The key table: the one list that dispatch, the footer and the help
//! screen are all read from, so what the screen says is what the keys do.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::action::{Action, Pane};

/// Where the dashboard is, as far as keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// The three panes, one of them focused.
    Main(Pane),
    Help,
    /// Typing the traffic filter.
    Filter,
    /// The add-fallback form; `on_choice` when a provider / enabled field is focused.
    Form {
        on_choice: bool,
    },
}

/// Which contexts a binding works in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everywhere, even while typing.
    Always,
    /// The main view, whichever pane is focused.
    Main,
    /// The main view with this pane focused.
    Pane(Pane),
    Help,
    Filter,
    Form,
    /// The form, on a choice field.
    FormChoice,
}

impl Scope {
    fn applies(self, ctx: Context) -> bool {
        match (self, ctx) {
            (Scope::Always, _) => true,
            (Scope::Main, Context::Main(_)) => true,
            (Scope::Pane(p), Context::Main(q)) => p == q,
            (Scope::Help, Context::Help) | (Scope::Filter, Context::Filter) => true,
            (Scope::Form, Context::Form { .. }) => true,
            (Scope::FormChoice, Context::Form { on_choice }) => on_choice,
            _ => false,
        }
    }

    /// The heading of this scope's keys on the help screen.
    pub fn heading(self) -> &'static str {
        match self {
            Scope::Always | Scope::Main => "Anywhere",
            Scope::Pane(Pane::Models) => "Models",
            Scope::Pane(Pane::Deployments) => "Deployments",
            Scope::Pane(Pane::Traffic) => "Live traffic",
            Scope::Filter => "Typing a filter",
            Scope::Form | Scope::FormChoice => "Add-fallback form",
            Scope::Help => "This help",
        }
    }
}

/// A key with the modifiers it needs. For characters, `Shift` is ignored
/// (terminals differ in whether `?` comes with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

const fn key(code: KeyCode) -> Key {
    Key {
        code,
        mods: KeyModifiers::NONE,
    }
}

const fn ch(c: char) -> Key {
    key(KeyCode::Char(c))
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        mods: KeyModifiers::CONTROL,
    }
}

impl Key {
    fn matches(&self, event: &KeyEvent) -> bool {
        let mut mods = event.modifiers;
        if matches!(event.code, KeyCode::Char(_) | KeyCode::BackTab) {
            mods.remove(KeyModifiers::SHIFT);
        }
        self.code == event.code && self.mods == mods
    }
}

/// Where a binding shows in the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Footer {
    No,
    /// Whenever the binding applies.
    Yes,
    /// In the main view with one of these panes focused.
    In(&'static [Pane]),
}

/// One line of help: the keys, what they are called, what they do.
#[derive(Debug, Clone)]
pub struct Binding {
    pub scope: Scope,
    pub keys: &'static [(Key, Action)],
    /// How the keys are written: `Space`, `↑↓ jk`.
    pub label: &'static str,
    /// A word or two for the footer.
    pub hint: &'static str,
    /// A line for the help screen.
    pub help: &'static str,
    pub footer: Footer,
}

const ALL_PANES: &[Pane] = &Pane::ALL;
const MODEL_PANES: &[Pane] = &[Pane::Models, Pane::Deployments];

pub static BINDINGS: &[Binding] = &[
    // The main view.
    Binding {
        scope: Scope::Main,
        keys: &[
            (key(KeyCode::Up), Action::Up),
            (ch('k'), Action::Up),
            (key(KeyCode::Down), Action::Down),
            (ch('j'), Action::Down),
        ],
        label: "↑↓ jk",
        hint: "move",
        help: "select the previous / next row",
        footer: Footer::In(ALL_PANES),
    },
    Binding {
        scope: Scope::Main,
        keys: &[
            (key(KeyCode::PageUp), Action::PageUp),
            (key(KeyCode::PageDown), Action::PageDown),
        ],
        label: "PgUp PgDn",
        hint: "page",
        help: "move a page up / down",
        footer: Footer::No,
    },
    Binding {
        scope: Scope::Pane(Pane::Models),
        keys: &[(key(KeyCode::Enter), Action::Open)],
        label: "Enter",
        hint: "deployments",
        help: "show the model's deployments",
        footer: Footer::No,
    },
    Binding {
        scope: Scope::Pane(Pane::Deployments),
        keys: &[(ch(' '), Action::Toggle)],
        label: "Space",
        hint: "on/off",
        help: "enable / disable the selected deployment (saved to config)",
        footer: Footer::Yes,
    },
    Binding {
        scope: Scope::Pane(Pane::Deployments),
        keys: &[(ch('t'), Action::Test)],
        label: "t",
        hint: "test",
        help: "send a test request to the selected deployment",
        footer: Footer::Yes,
    },
    Binding {
        scope: Scope::Main,
        keys: &[(ch('a'), Action::AddFallback)],
        label: "a",
        hint: "add fallback",
        help: "add a fallback deployment to the selected model",
        footer: Footer::In(MODEL_PANES),
    },
    Binding {
        scope: Scope::Main,
        keys: &[(ch('/'), Action::Filter)],
        label: "/",
        hint: "filter",
        help: "filter live traffic by model, deployment or status",
        footer: Footer::In(&[Pane::Traffic]),
    },
    Binding {
        scope: Scope::Main,
        keys: &[(ch('p'), Action::Pause)],
        label: "p",
        hint: "pause",
        help: "pause / resume the traffic view (stats keep counting)",
        footer: Footer::In(&[Pane::Traffic]),
    },
    Binding {
        scope: Scope::Main,
        keys: &[(key(KeyCode::Esc), Action::Back)],
        label: "Esc",
        hint: "clear filter",
        help: "clear the traffic filter",
        footer: Footer::No,
    },
    Binding {
        scope: Scope::Main,
        keys: &[
            (key(KeyCode::Tab), Action::NextPane),
            (key(KeyCode::BackTab), Action::PrevPane),
        ],
        label: "Tab S-Tab",
        hint: "pane",
        help: "next / previous pane: Models → Deployments → Traffic",
        footer: Footer::In(ALL_PANES),
    },
    Binding {
        scope: Scope::Main,
        keys: &[(ch('?'), Action::Help)],
        label: "?",
        hint: "help",
        help: "all keys",
        footer: Footer::In(ALL_PANES),
    },
    Binding {
        scope: Scope::Main,
        keys: &[(ch('q'), Action::Quit)],
        label: "q",
        hint: "quit",
        help: "quit (stops the gateway)",
        footer: Footer::In(ALL_PANES),
    },
    Binding {
        scope: Scope::Always,
        keys: &[(ctrl('c'), Action::Quit)],
        label: "Ctrl-C",
        hint: "quit",
        help: "quit, even while typing",
        footer: Footer::No,
    },
    // Typing a filter.
    Binding {
        scope: Scope::Filter,
        keys: &[(key(KeyCode::Enter), Action::Submit)],
        label: "Enter",
        hint: "apply",
        help: "keep the filter and go back to the panes",
        footer: Footer::Yes,
    },
    Binding {
        scope: Scope::Filter,
        keys: &[(key(KeyCode::Esc), Action::Back)],
        label: "Esc",
        hint: "clear",
        help: "clear the filter",
        footer: Footer::Yes,
    },
    // The form.
    Binding {
        scope: Scope::Form,
        keys: &[
            (key(KeyCode::Tab), Action::FormNext),
            (key(KeyCode::Down), Action::FormNext),
            (key(KeyCode::BackTab), Action::FormPrev),
            (key(KeyCode::Up), Action::FormPrev),
        ],
        label: "Tab S-Tab",
        hint: "field",
        help: "next / previous field (↓ ↑ too)",
        footer: Footer::Yes,
    },
    Binding {
        scope: Scope::FormChoice,
        keys: &[
            (ch(' '), Action::FormCycle),
            (key(KeyCode::Left), Action::FormCycle),
            (key(KeyCode::Right), Action::FormCycle),
        ],
        label: "Space ←→",
        hint: "change",
        help: "change a choice (provider, enabled)",
        footer: Footer::Yes,
    },
    Binding {
        scope: Scope::Form,
        keys: &[(key(KeyCode::Enter), Action::Submit)],
        label: "Enter",
        hint: "next / press",
        help: "next field; on the button: test, then save",
        footer: Footer::Yes,
    },
    Binding {
        scope: Scope::Form,
        keys: &[(key(KeyCode::Esc), Action::Back)],
        label: "Esc",
        hint: "cancel",
        help: "leave the form without saving",
        footer: Footer::Yes,
    },
    // The help screen.
    Binding {
        scope: Scope::Help,
        keys: &[
            (key(KeyCode::Up), Action::Up),
            (ch('k'), Action::Up),
            (key(KeyCode::Down), Action::Down),
            (ch('j'), Action::Down),
        ],
        label: "↑↓ jk",
        hint: "scroll",
        help: "scroll the help",
        footer: Footer::Yes,
    },
    Binding {
        scope: Scope::Help,
        keys: &[
            (key(KeyCode::Esc), Action::Back),
            (ch('?'), Action::Back),
            (ch('q'), Action::Back),
        ],
        label: "Esc ? q",
        hint: "close",
        help: "close the help",
        footer: Footer::Yes,
    },
];

/// What a key does in `ctx`: the first binding that applies and matches;
/// in a text context, any other editing key goes to the field.
pub fn dispatch(ctx: Context, event: &KeyEvent) -> Option<Action> {
    if event.kind == KeyEventKind::Release {
        return None;
    }
    let bound = BINDINGS
        .iter()
        .filter(|b| b.scope.applies(ctx))
        .flat_map(|b| b.keys.iter())
        .find(|(k, _)| k.matches(event))
        .map(|(_, a)| a.clone());
    if bound.is_some() {
        return bound;
    }
    match ctx {
        Context::Filter | Context::Form { on_choice: false } => {
            tui_input::backend::crossterm::to_input_request(&Event::Key(*event)).map(Action::Input)
        }
        _ => None,
    }
}

/// The bindings to show in the footer for `ctx`, in table order.
pub fn footer(ctx: Context) -> impl Iterator<Item = &'static Binding> {
    BINDINGS.iter().filter(move |b| {
        b.scope.applies(ctx)
            && match b.footer {
                Footer::No => false,
                Footer::Yes => true,
                Footer::In(panes) => matches!(ctx, Context::Main(p) if panes.contains(&p)),
            }
    })
}

/// The help screen's sections: a heading and its bindings, in table order.
pub fn help_sections() -> Vec<(&'static str, Vec<&'static Binding>)> {
    let mut sections: Vec<(&'static str, Vec<&'static Binding>)> = Vec::new();
    for b in BINDINGS {
        let heading = b.scope.heading();
        match sections.iter_mut().find(|(h, _)| *h == heading) {
            Some((_, list)) => list.push(b),
            None => sections.push((heading, vec![b])),
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_bindings_of_overlapping_scopes_share_a_key() {
        let contexts = [
            Context::Main(Pane::Models),
            Context::Main(Pane::Deployments),
            Context::Main(Pane::Traffic),
            Context::Help,
            Context::Filter,
            Context::Form { on_choice: false },
            Context::Form { on_choice: true },
        ];
        for ctx in contexts {
            let keys: Vec<Key> = BINDINGS
                .iter()
                .filter(|b| b.scope.applies(ctx))
                .flat_map(|b| b.keys.iter().map(|(k, _)| *k))
                .collect();
            for (i, k) in keys.iter().enumerate() {
                assert!(!keys[i + 1..].contains(k), "{k:?} twice in {ctx:?}");
            }
        }
    }
}
