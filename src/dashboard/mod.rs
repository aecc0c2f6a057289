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
pub mod source;
pub mod tiers;
pub mod traffic;
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
pub use app::{App, Info};
pub use source::{Local, Remote, Source};
use tui::{DATA_FRAME, FRAME, Msg, Tui};
use ui::{Mouse, Theme};

use crate::gateway::Gateway;

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
    let source = Local::new(gateway);
    let first = source.snapshot().await;
    let result = run(source, first, info).await;
    stop.cancel();
    match tokio::time::timeout(Duration::from_secs(3), server).await {
        Ok(Ok(Err(e))) => tracing::error!("the gateway stopped with an error: {e}"),
        Err(_) => tracing::warn!("requests still in flight at exit were cut"),
        _ => {}
    }
    result
}

/// Runs the dashboard on `source` until the operator quits, starting from
/// the state in `first`.
pub async fn run<S: Source>(source: S, first: Msg, info: Info) -> anyhow::Result<()> {
    let theme = Theme::from_env();
    let stop = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(1024);
    let mut app = App::new(
        info,
        crate::gateway::StateView::default(),
        crate::events::unix_ms(),
    );
    handle(&mut app, first, Rect::default());
    let mut tui = Tui::enter()?;
    let input = tui::spawn_terminal(&tx, &stop);
    source.spawn_feeds(tx.clone(), stop.clone());
    let worker = Worker::start(source, tx.clone());
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
            app.ingest_state(*state, now_ms);
            Some(Change::Data)
        }
        Msg::Link(link) => {
            app.ingest_link(link);
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
struct Worker<S> {
    source: S,
    tx: mpsc::Sender<Msg>,
    queue: mpsc::UnboundedSender<Command>,
    done: tokio::task::JoinHandle<()>,
}

impl<S: Source> Worker<S> {
    fn start(source: S, tx: mpsc::Sender<Msg>) -> Worker<S> {
        let (queue, mut jobs) = mpsc::unbounded_channel::<Command>();
        let done = {
            let (source, tx) = (source.clone(), tx.clone());
            tokio::spawn(async move {
                while let Some(command) = jobs.recv().await {
                    execute(&source, &tx, command).await;
                }
            })
        };
        Worker {
            source,
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
                let (source, tx) = (self.source.clone(), self.tx.clone());
                tokio::spawn(async move { execute(&source, &tx, command).await });
            }
        }
    }

    async fn finish(self) {
        drop(self.queue);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.done).await;
    }
}

async fn execute<S: Source>(source: &S, tx: &mpsc::Sender<Msg>, command: Command) {
    let action = match command {
        Command::SetEnabled {
            model,
            deployment,
            enabled,
        } => {
            let result = source
                .set_enabled(model.clone(), deployment.clone(), enabled)
                .await;
            if let Err(e) = &result {
                tracing::warn!(%model, %deployment, enabled, "toggle failed: {e}");
            }
            if let Some(state) = source.state_now().await {
                let _ = tx.send(state).await;
            }
            Action::Toggled {
                model,
                deployment,
                enabled,
                error: result.err(),
            }
        }
        Command::TestExisting { model, deployment } => {
            let result = source
                .test_existing(model.clone(), deployment.clone())
                .await;
            tracing::info!(%model, %deployment, ok = result.ok, "tested: {}", result.summary());
            Action::Tested {
                model,
                deployment,
                result,
            }
        }
        Command::TestNew {
            model,
            spec,
            generation,
        } => {
            let result = source.test_new(model, spec).await;
            Action::FormTested { generation, result }
        }
        Command::AddDeployment {
            model,
            spec,
            generation,
        } => {
            let result = source.add(model, spec).await;
            if let Some(state) = source.state_now().await {
                let _ = tx.send(state).await;
            }
            Action::Saved { generation, result }
        }
    };
    let _ = tx.send(Msg::Action(action)).await;
}
