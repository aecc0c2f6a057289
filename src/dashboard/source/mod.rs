//! Where the dashboard reads a gateway from, and acts on it: the one seam
//! between the dashboard and a gateway.
//!
//! [`Local`] is a gateway in this process (its snapshots, its event
//! channel, direct calls); [`Remote`] is one that runs elsewhere, reached
//! through its admin API only (`/admin/state`, `/admin/events`, the toggle,
//! the add and the test routes). `App`, the key table and the panes never
//! know which one they draw from: both feed the run loop the same
//! [`Msg`](super::tui::Msg)s and answer the same four requests.

mod feeds;
mod link;
mod local;
mod remote;
mod sse;

use std::future::Future;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use local::Local;
pub use remote::{AttachError, Remote};

use super::action::{FieldMessage, TestResult};
use super::tui::Msg;
use crate::config::DeploymentSpec;

/// A gateway as the dashboard sees it.
pub trait Source: Clone + Send + Sync + 'static {
    /// Starts the tasks that feed the run loop: state snapshots, routing
    /// events and, for a remote gateway, the state of the connection. They
    /// stop when `stop` is cancelled or the receiver is gone.
    fn spawn_feeds(&self, tx: mpsc::Sender<Msg>, stop: CancellationToken);

    /// The gateway's state now, for the run loop to take before the result
    /// of a change (so a deployment just added is there to select); None
    /// when it cannot be had (the next poll brings it).
    fn state_now(&self) -> impl Future<Output = Option<Msg>> + Send;

    /// Enables or disables a deployment, persisted by the gateway.
    fn set_enabled(
        &self,
        model: String,
        deployment: String,
        enabled: bool,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// One minimal request through a configured deployment.
    fn test_existing(
        &self,
        model: String,
        deployment: String,
    ) -> impl Future<Output = TestResult> + Send;

    /// One minimal request through a deployment not yet added; nothing is
    /// saved. A field the gateway refuses comes back as a [`FieldMessage`].
    fn test_new(
        &self,
        model: String,
        spec: DeploymentSpec,
    ) -> impl Future<Output = Result<TestResult, FieldMessage>> + Send;

    /// Adds a deployment (already tested), live at once and written to the
    /// gateway's config; returns its name.
    fn add(
        &self,
        model: String,
        spec: DeploymentSpec,
    ) -> impl Future<Output = Result<String, FieldMessage>> + Send;
}

/// Places a refused save or test: a duplicate name at the name, a field
/// error (`api_base: ...`) at its field, anything else under the button.
pub fn field_message(status: Option<u16>, text: String) -> FieldMessage {
    let under_button = |message| FieldMessage {
        field: None,
        message,
    };
    match status {
        Some(409) => FieldMessage {
            field: Some("name".into()),
            message: text,
        },
        Some(400) => match text.split_once(": ") {
            Some((field, message)) if super::form::Field::from_config_name(field).is_some() => {
                FieldMessage {
                    field: Some(field.into()),
                    message: message.into(),
                }
            }
            _ => under_button(text),
        },
        _ => under_button(text),
    }
}
