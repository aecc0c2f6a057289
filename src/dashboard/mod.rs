//! The operator's dashboard: the gateway's models, deployments and live
//! traffic in the terminal, with keys to act on them.
//!
//! Data flows one way:
//! events and snapshots → [`App`] (state) → `ui::draw` (a pure function of
//! it); keys → [`Action`] (through the table in [`keys`]) → `App::update`;
//! work on the gateway leaves as [`Command`]s, runs in tasks, and comes
//! back as actions. The UI never blocks on HTTP and the gateway never waits
//! for the UI.

pub mod action;
pub mod app;
pub mod form;
pub mod keys;
pub mod stats;
pub mod tui;
pub mod ui;

use std::time::Duration;

use crossterm::event::{Event as TermEvent, KeyEventKind, MouseButton, MouseEventKind};
use ratatui::layout::Rect;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use action::{Action, Command, Pane};
use action::{FieldMessage, TestResult};
pub use app::{App, Info};
use tui::{DATA_FRAME, FRAME, Msg, Tui};
use ui::{Mouse, Theme};

use crate::gateway::{ApiError, Gateway};

/// Serves `gateway` on `listener` in the background while the dashboard
/// runs in this terminal; quitting the dashboard stops the gateway (in-flight
/// requests get a few seconds to finish).
pub async fn serve_with_dashboard(
    gateway: Gateway,
    listener: TcpListener,
    info: Info,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let server = {
        let (gateway, stop) = (gateway.clone(), stop.clone());
        tokio::spawn(async move {
            gateway
                .serve(listener, async move { stop.cancelled().await })
                .await
        })
    };
    let result = run(gateway, info).await;
    stop.cancel();
    match tokio::time::timeout(Duration::from_secs(3), server).await {
        Ok(Ok(Err(e))) => tracing::error!("the gateway stopped with an error: {e}"),
        Err(_) => tracing::warn!("requests still in flight at exit were cut"),
        _ => {}
    }
    result
}

/// Runs the dashboard until the operator quits.
pub async fn run(gateway: Gateway, info: Info) -> anyhow::Result<()> {
    let theme = Theme::from_env();
    let stop = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(1024);
    let mut app = App::new(
        info,
        crate::gateway::StateView { models: Vec::new() },
        crate::events::unix_ms(),
    );
    if let Msg::State {
        state,
        now_ms,
        utc_offset_s,
    } = tui::snapshot(&gateway)
    {
        app.utc_offset_s = utc_offset_s;
        app.ingest_state(state, now_ms);
    }
    let mut tui = Tui::enter()?;
    let input = tui::spawn_sources(&gateway, &tx, &stop);
    let worker = Worker::start(gateway.clone(), tx.clone());
    tracing::info!("dashboard started");

    // What changed since the last frame decides how soon the next one comes:
    // the operator's keys at once (at most 20 frames a second), new data at
    // most 10 times a second.
    let mut change = Some(Change::Input);
    let mut last_frame = Instant::now() - FRAME;
    let result = loop {
        let due = change.map(|c| last_frame + c.interval());
        if due.is_some_and(|due| Instant::now() >= due) {
            if let Err(e) = tui.terminal.draw(|f| ui::draw(f, &app, &theme)) {
                break Err(e.into());
            }
            change = None;
            last_frame = Instant::now();
            continue;
        }
        let msg = match due {
            Some(due) => tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep_until(due) => continue,
            },
            None => rx.recv().await,
        };
        let Some(msg) = msg else { break Ok(()) };
        let size = tui.terminal.size().unwrap_or_default();
        let area = Rect::new(0, 0, size.width, size.height);
        app.viewport = area;
        change = change.max(handle(&mut app, msg, area));
        // Everything that is already waiting goes into the same frame.
        while let Ok(msg) = rx.try_recv() {
            change = change.max(handle(&mut app, msg, area));
        }
        if let Some(panic) = tui::take_background_panic() {
            app.alert(format!("a background task panicked (see the log): {panic}"));
            change = change.max(Some(Change::Data));
        }
        for command in app.take_commands() {
            worker.run(command);
        }
        if app.should_quit() {
            break Ok(());
        }
    };
    stop.cancel();
    // The terminal reader lets go of stdin before the shell gets it back.
    let _ = tokio::time::timeout(Duration::from_millis(500), input).await;
    drop(tui);
    // A toggle or a save in progress finishes: the config stays as shown.
    worker.finish().await;
    tracing::info!("dashboard stopped");
    result
}

/// What a message changed, in order of urgency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    /// New data (events, snapshots, results): the next frame may wait a little.
    Data,
    /// The operator did something (or the terminal changed): draw now.
    Input,
}

impl Change {
    fn interval(self) -> Duration {
        match self {
            Change::Data => DATA_FRAME,
            Change::Input => FRAME,
        }
    }
}

/// Applies one message; returns what may have changed on screen.
fn handle(app: &mut App, msg: Msg, area: Rect) -> Option<Change> {
    match msg {
        Msg::State {
            state,
            now_ms,
            utc_offset_s,
        } => {
            app.utc_offset_s = utc_offset_s;
            app.ingest_state(state, now_ms);
            Some(Change::Data)
        }
        Msg::Events { events, lagged } => {
            if lagged > 0 {
                tracing::debug!(lagged, "the dashboard missed routing events");
            }
            app.ingest_events(&events, lagged);
            Some(Change::Data)
        }
        Msg::Action(action) => {
            app.update(action);
            Some(Change::Data)
        }
        Msg::Quit => {
            app.update(Action::Quit);
            Some(Change::Input)
        }
        Msg::Term(event) => {
            let action = match event {
                TermEvent::Key(key) if key.kind != KeyEventKind::Release => {
                    keys::dispatch(app.context(), &key)
                }
                TermEvent::Paste(text) => Some(Action::Paste(text)),
                TermEvent::Mouse(m) => {
                    let mouse = match m.kind {
                        MouseEventKind::Down(MouseButton::Left) => Mouse::Click,
                        MouseEventKind::ScrollDown => Mouse::Wheel { down: true },
                        MouseEventKind::ScrollUp => Mouse::Wheel { down: false },
                        _ => return None,
                    };
                    ui::hit_test(area, app, m.column, m.row, mouse)
                }
                TermEvent::Resize(..) | TermEvent::FocusGained => return Some(Change::Input),
                _ => None,
            };
            let action = action?;
            app.update(action);
            Some(Change::Input)
        }
    }
}

/// Does the dashboard's work on the gateway. Toggles and saves go through
/// one queue, in order (the config file sees them in the order pressed);
/// tests run side by side, as they may take a while.
struct Worker {
    gateway: Gateway,
    tx: mpsc::Sender<Msg>,
    queue: mpsc::UnboundedSender<Command>,
    done: tokio::task::JoinHandle<()>,
}

impl Worker {
    fn start(gateway: Gateway, tx: mpsc::Sender<Msg>) -> Worker {
        let (queue, mut jobs) = mpsc::unbounded_channel::<Command>();
        let done = {
            let (gateway, tx) = (gateway.clone(), tx.clone());
            tokio::spawn(async move {
                while let Some(command) = jobs.recv().await {
                    execute(&gateway, &tx, command).await;
                }
            })
        };
        Worker {
            gateway,
            tx,
            queue,
            done,
        }
    }

    fn run(&self, command: Command) {
        match command {
            Command::SetEnabled { .. } | Command::AddDeployment { .. } => {
                let _ = self.queue.send(command);
            }
            Command::TestExisting { .. } | Command::TestNew { .. } => {
                let (gateway, tx) = (self.gateway.clone(), self.tx.clone());
                tokio::spawn(async move { execute(&gateway, &tx, command).await });
            }
        }
    }

    async fn finish(self) {
        drop(self.queue);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.done).await;
    }
}

async fn execute(gateway: &Gateway, tx: &mpsc::Sender<Msg>, command: Command) {
    let action = match command {
        Command::SetEnabled {
            model,
            deployment,
            enabled,
        } => {
            let result = gateway.set_enabled(&model, &deployment, enabled).await;
            if let Err(e) = &result {
                tracing::warn!(%model, %deployment, enabled, "toggle failed: {e}");
            }
            let _ = tx.send(tui::snapshot(gateway)).await;
            Action::Toggled {
                model,
                deployment,
                enabled,
                error: result.err().map(|e| e.to_string()),
            }
        }
        Command::TestExisting { model, deployment } => {
            let result = match gateway.test_existing(&model, &deployment).await {
                Ok(report) => report.into(),
                Err(e) => TestResult {
                    ok: false,
                    status: None,
                    latency_ms: 0.0,
                    model: None,
                    message: e.to_string(),
                },
            };
            tracing::info!(%model, %deployment, ok = result.ok, "tested: {}", result.summary());
            Action::Tested {
                model,
                deployment,
                result,
            }
        }
        Command::TestNew {
            model: _,
            spec,
            generation,
        } => {
            let base_dir = crate::config::base_dir_of(gateway.config_path());
            let result = match spec.resolve(&base_dir) {
                Ok(config) => Ok(gateway.test_deployment(&config).await.into()),
                Err(e) => Err(FieldMessage::from(e)),
            };
            Action::FormTested { generation, result }
        }
        Command::AddDeployment {
            model,
            spec,
            generation,
        } => {
            let result = gateway
                .add_deployment(&model, spec, false)
                .await
                .map(|view| view.name)
                .map_err(|e| field_message(&e));
            let _ = tx.send(tui::snapshot(gateway)).await;
            Action::Saved { generation, result }
        }
    };
    let _ = tx.send(Msg::Action(action)).await;
}

/// Places a refused save: a duplicate name at the name, a field error
/// (`api_base: ...`) at its field, anything else under the button.
fn field_message(e: &ApiError) -> FieldMessage {
    let text = e.to_string();
    match e {
        ApiError::Conflict { .. } => FieldMessage {
            field: Some("name".into()),
            message: text,
        },
        ApiError::BadRequest { .. } => match text.split_once(": ") {
            Some((field, message)) if form::Field::from_config_name(field).is_some() => {
                FieldMessage {
                    field: Some(field.into()),
                    message: message.into(),
                }
            }
            _ => FieldMessage {
                field: None,
                message: text,
            },
        },
        _ => FieldMessage {
            field: None,
            message: text,
        },
    }
}
