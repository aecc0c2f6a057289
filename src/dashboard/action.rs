//! Everything that can change the dashboard's state, as data.
//!
//! Keys become an [`Action`] (through the table in `keys.rs`) before any
//! state changes, and the results of the background work (a toggle saved, a
//! test answered) come back as actions too, so `App::update` is the one
//! place where state changes and tests drive it without a terminal.

use serde::{Deserialize, Serialize};
use tui_input::InputRequest;

use crate::gateway::TestReport;

/// The three panes, in `Tab` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Pane {
    Models,
    Deployments,
    Traffic,
}

impl Pane {
    pub const ALL: [Pane; 3] = [Pane::Models, Pane::Deployments, Pane::Traffic];

    pub fn next(self) -> Pane {
        match self {
            Pane::Models => Pane::Deployments,
            Pane::Deployments => Pane::Traffic,
            Pane::Traffic => Pane::Models,
        }
    }

    pub fn prev(self) -> Pane {
        match self {
            Pane::Models => Pane::Traffic,
            Pane::Deployments => Pane::Models,
            Pane::Traffic => Pane::Deployments,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Pane::Models => "Models",
            Pane::Deployments => "Deployments",
            Pane::Traffic => "Live traffic",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action {
    // Moving around.
    NextPane,
    PrevPane,
    Up,
    Down,
    PageUp,
    PageDown,
    /// `Enter` in the main view: from a model to its deployments.
    Open,
    /// A mouse click on a row.
    Select {
        pane: Pane,
        index: usize,
    },
    /// The mouse wheel over a pane.
    Scroll {
        pane: Pane,
        down: bool,
    },

    // Acting on deployments.
    Toggle,
    Test,
    AddFallback,

    // The traffic view.
    Filter,
    Pause,

    // Overlays and leaving.
    Help,
    /// `Esc`: closes the form, the help or the filter; clears a filter.
    Back,
    Quit,

    // Text fields (the filter and the form).
    Input(InputRequest),
    Paste(String),
    /// `Enter` in a text context: next field, press the button, apply the filter.
    Submit,
    FormNext,
    FormPrev,
    /// `Space`, `←` or `→` on a choice (provider, enabled).
    FormCycle,

    // Results of background work.
    Toggled {
        model: String,
        deployment: String,
        enabled: bool,
        error: Option<String>,
    },
    Tested {
        model: String,
        deployment: String,
        result: TestResult,
    },
    FormTested {
        generation: u64,
        result: Result<TestResult, FieldMessage>,
    },
    Saved {
        generation: u64,
        result: Result<String, FieldMessage>,
    },
}

/// The outcome of a test request, as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    pub ok: bool,
    pub status: Option<u16>,
    pub latency_ms: f64,
    pub model: Option<String>,
    pub message: String,
}

impl From<TestReport> for TestResult {
    fn from(r: TestReport) -> Self {
        TestResult {
            ok: r.ok,
            status: r.status,
            latency_ms: r.latency_ms,
            model: r.model,
            message: r.message,
        }
    }
}

impl TestResult {
    /// A test that could not be made or did not pass.
    pub fn failed(status: Option<u16>, message: String) -> TestResult {
        TestResult {
            ok: false,
            status,
            latency_ms: 0.0,
            model: None,
            message,
        }
    }

    /// `✓ 253 ms · gpt-4o-2024-08-06` or `✗ HTTP 401: Incorrect API key`.
    pub fn summary(&self) -> String {
        if self.ok {
            match &self.model {
                Some(m) => format!("✓ {:.0} ms · model {m}", self.latency_ms),
                None => format!("✓ {:.0} ms", self.latency_ms),
            }
        } else {
            format!("✗ {}", self.message)
        }
    }
}

/// An error to show in the form: next to `field` (named as in the config,
/// e.g. `api_base`) when there is one, else under the button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMessage {
    pub field: Option<String>,
    pub message: String,
}

impl From<crate::config::FieldError> for FieldMessage {
    fn from(e: crate::config::FieldError) -> Self {
        FieldMessage {
            field: Some(e.field),
            message: e.message,
        }
    }
}

/// Background work the dashboard asks for; the run loop does it in a task
/// and sends the result back as an [`Action`]. (No `Debug`: a spec may
/// hold a literal API key.)
#[derive(Clone)]
pub enum Command {
    SetEnabled {
        model: String,
        deployment: String,
        enabled: bool,
    },
    TestExisting {
        model: String,
        deployment: String,
    },
    TestNew {
        model: String,
        spec: crate::config::DeploymentSpec,
        generation: u64,
    },
    AddDeployment {
        model: String,
        spec: crate::config::DeploymentSpec,
        generation: u64,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::SetEnabled {
                model,
                deployment,
                enabled,
            } => write!(f, "SetEnabled({model}/{deployment} = {enabled})"),
            Command::TestExisting { model, deployment } => {
                write!(f, "TestExisting({model}/{deployment})")
            }
            Command::TestNew {
                model,
                spec,
                generation,
            } => write!(f, "TestNew({model}/{} #{generation})", spec.name),
            Command::AddDeployment {
                model,
                spec,
                generation,
            } => write!(f, "AddDeployment({model}/{} #{generation})", spec.name),
        }
    }
}
