//! The dashboard's state and `update(Action)`: pure, no terminal, no I/O.
//!
//! Data comes in three ways: state snapshots of the gateway
//! ([`App::ingest_state`]), routing events ([`App::ingest_events`]) and
//! actions ([`App::update`]). Work that needs the gateway (toggles, tests,
//! saves) leaves as [`Command`]s for the run loop, whose results come back
//! as actions.

use std::collections::HashMap;
use std::sync::Arc;

use tui_input::Input;

use super::action::{Action, Command, FieldMessage, Pane};
use super::form::{Form, Submit};
use super::keys::Context;
use super::tiers;
pub use super::traffic::{Traffic, change_word};
use crate::events::Event;
use crate::gateway::{DeploymentView, ModelView, StateView};

pub use super::traffic::TRAFFIC_ROWS;
/// How long a notice stays, in milliseconds.
pub const NOTICE_MS: u64 = 10_000;
const PAGE: usize = 10;

/// What the header says about where this dashboard runs.
#[derive(Debug, Clone, Default)]
pub struct Info {
    /// The config file the changes are written to.
    pub config_path: String,
    /// Where clients send requests: `http://127.0.0.1:4000/v1`.
    pub address: String,
    /// Where the log goes.
    pub log_path: Option<String>,
    pub demo: bool,
    /// The admin URL of the gateway this dashboard is attached to, when it
    /// runs elsewhere; where clients go and the config file then come from
    /// the gateway's own state.
    pub attached: Option<String>,
    /// Said once, when the dashboard opens (the admin key going in clear).
    pub warning: Option<String>,
}

/// The connection to a gateway that runs elsewhere.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub live: bool,
    /// Unix time in milliseconds since when it has been live, or down.
    pub since_ms: u64,
    /// Why it is down (never with the admin key in it).
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Overlay {
    Help { scroll: u16 },
    Form(Box<Form>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Ok,
    Error,
}

/// A line about the last thing done (a toggle, a test), under the deployments.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub text: String,
    pub level: Level,
    pub at_ms: u64,
    /// Stays until replaced (work in progress).
    pub sticky: bool,
}

#[derive(Debug, Clone)]
pub struct App {
    pub info: Info,
    /// The gateway as of the last snapshot, with the last minute's figures.
    pub state: StateView,
    /// The connection, for a gateway that runs elsewhere (None in process).
    pub link: Option<Link>,
    /// Unix time in milliseconds, as of the last snapshot or tick.
    pub now_ms: u64,
    /// Seconds east of UTC, for the times shown.
    pub utc_offset_s: i32,
    pub focus: Pane,
    /// The selected model (index in `state.models`).
    pub model: usize,
    /// The selected deployment of the selected model: its row in the
    /// Deployments pane, which lists tiers in order ([`super::tiers`]).
    pub deployment: usize,
    pub overlay: Option<Overlay>,
    pub traffic: Traffic,
    /// Toggles sent but not yet confirmed: (model, deployment) → enabled.
    pub pending: HashMap<(String, String), bool>,
    pub notice: Option<Notice>,
    /// Routing events this view missed because it fell behind.
    pub lagged: u64,
    /// The terminal's size, for what depends on it (how far the help scrolls).
    pub viewport: ratatui::layout::Rect,
    quit: bool,
    commands: Vec<Command>,
}

impl App {
    pub fn new(info: Info, state: StateView, now_ms: u64) -> Self {
        let warning = info.warning.clone();
        let mut app = App {
            info,
            state,
            link: None,
            now_ms,
            utc_offset_s: 0,
            focus: Pane::Models,
            model: 0,
            deployment: 0,
            overlay: None,
            traffic: Traffic::default(),
            pending: HashMap::new(),
            notice: None,
            lagged: 0,
            viewport: ratatui::layout::Rect::new(0, 0, 80, 24),
            quit: false,
            commands: Vec::new(),
        };
        if let Some(w) = warning {
            app.say(Level::Error, false, format!("⚠ {w}"));
        }
        app
    }

    pub fn should_quit(&self) -> bool {
        self.quit
    }

    /// The work asked for since the last call.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    pub fn context(&self) -> Context {
        match &self.overlay {
            Some(Overlay::Form(f)) => Context::Form {
                on_choice: f.focus.is_choice(),
            },
            Some(Overlay::Help { .. }) => Context::Help,
            None if self.traffic.filter_input.is_some() => Context::Filter,
            None => Context::Main(self.focus),
        }
    }

    pub fn selected_model(&self) -> Option<&ModelView> {
        self.state.models.get(self.model)
    }

    pub fn selected_deployment(&self) -> Option<&DeploymentView> {
        tiers::nth(self.selected_model()?, self.deployment)
    }

    /// Whether a deployment is enabled, counting a toggle not yet confirmed.
    pub fn enabled(&self, model: &str, d: &DeploymentView) -> bool {
        self.pending
            .get(&(model.to_string(), d.name.clone()))
            .copied()
            .unwrap_or(d.enabled)
    }

    pub fn notice(&self) -> Option<&Notice> {
        self.notice
            .as_ref()
            .filter(|n| n.sticky || self.now_ms.saturating_sub(n.at_ms) < NOTICE_MS)
    }

    /// Shows an error under the deployments.
    pub fn alert(&mut self, text: String) {
        self.say(Level::Error, false, text);
    }

    fn say(&mut self, level: Level, sticky: bool, text: String) {
        self.notice = Some(Notice {
            text,
            level,
            at_ms: self.now_ms,
            sticky,
        });
    }

    /// The connection to a remote gateway went up or down.
    pub fn ingest_link(&mut self, link: Link) {
        self.link = Some(link);
    }

    /// A fresh snapshot of the gateway.
    ///
    /// The selection stays on the same model and deployment by name, even
    /// when the new state lists them elsewhere (a reload that changed a
    /// priority regroups the pane): `Space` acts on what was selected.
    pub fn ingest_state(&mut self, state: StateView, now_ms: u64) {
        let selected = self.selected_model().map(|m| m.name.clone());
        let deployment = self.selected_deployment().map(|d| d.name.clone());
        self.state = state;
        if self.info.attached.is_some() {
            let gw = &self.state.gateway;
            if !gw.address.is_empty() {
                self.info.address.clone_from(&gw.address);
            }
            if !gw.config_path.is_empty() {
                self.info.config_path.clone_from(&gw.config_path);
            }
        }
        self.tick(now_ms);
        let same = |m: &ModelView| Some(&m.name) == selected.as_ref();
        match self.state.models.iter().position(same) {
            Some(i) => {
                self.model = i;
                let m = &self.state.models[i];
                if let Some(row) = deployment.and_then(|d| tiers::row_of(m, &d)) {
                    self.deployment = row;
                }
            }
            None => self.model = self.model.min(self.state.models.len().saturating_sub(1)),
        }
        let n = self.selected_model().map_or(0, |m| m.deployments.len());
        self.deployment = self.deployment.min(n.saturating_sub(1));
    }

    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// Routing events, oldest first, and how many were missed before them.
    pub fn ingest_events<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a Arc<Event>>,
        lagged: u64,
    ) {
        self.lagged += lagged;
        for ev in events {
            match &**ev {
                Event::Request(_) => {}
                Event::Lagged(l) => self.lagged += l.missed.unwrap_or(0),
                // A rejected edit stays on screen until a good one replaces
                // it: the file on disk and what runs differ until then.
                Event::Config(c) if !c.applied => self.say(
                    Level::Error,
                    true,
                    format!(
                        "config not reloaded, previous one still runs: {}",
                        c.message
                    ),
                ),
                Event::Config(c) => {
                    self.say(Level::Ok, false, format!("config reloaded: {}", c.message))
                }
                Event::Deployment(_) | Event::Route(_) => {}
            }
            self.traffic.push(ev.clone());
        }
    }

    pub fn update(&mut self, action: Action) {
        match action {
            Action::Quit => self.quit = true,
            Action::Help => self.overlay = Some(Overlay::Help { scroll: 0 }),
            Action::Back => self.back(),
            Action::NextPane => self.focus = self.focus.next(),
            Action::PrevPane => self.focus = self.focus.prev(),
            Action::Up => self.step(-1),
            Action::Down => self.step(1),
            Action::PageUp => self.step(-(PAGE as isize)),
            Action::PageDown => self.step(PAGE as isize),
            Action::Open => {
                if self.focus == Pane::Models {
                    self.focus = Pane::Deployments;
                }
            }
            Action::Select { pane, index } => self.select(pane, index),
            Action::Scroll { pane, down } => {
                if self.overlay.is_none() {
                    self.focus = pane;
                    self.step(if down { 1 } else { -1 });
                }
            }
            Action::Toggle => self.toggle(),
            Action::Test => self.test(),
            Action::AddFallback => self.open_form(),
            Action::Filter => {
                self.focus = Pane::Traffic;
                self.traffic.filter_input = Some(Input::new(self.traffic.filter.clone()));
            }
            Action::Pause => {
                if self.traffic.paused() {
                    self.traffic.resume();
                } else {
                    self.traffic.pause();
                }
            }
            Action::Input(req) => {
                if let Some(Overlay::Form(form)) = &mut self.overlay {
                    form.edit(req);
                } else if let Some(input) = &mut self.traffic.filter_input {
                    input.handle(req);
                    self.traffic.filter = input.value().to_string();
                    self.traffic.cursor = 0;
                }
            }
            Action::Paste(text) => {
                if let Some(Overlay::Form(form)) = &mut self.overlay {
                    form.paste(&text);
                } else if let Some(input) = &mut self.traffic.filter_input {
                    for c in text.chars().filter(|c| !c.is_control()) {
                        input.handle(tui_input::InputRequest::InsertChar(c));
                    }
                    self.traffic.filter = input.value().to_string();
                }
            }
            Action::Submit => self.submit(),
            Action::FormNext => self.with_form(Form::next),
            Action::FormPrev => self.with_form(Form::prev),
            Action::FormCycle => self.with_form(Form::cycle),
            Action::Toggled {
                model,
                deployment,
                enabled,
                error,
            } => {
                let key = (model, deployment);
                if self.pending.get(&key) == Some(&enabled) || error.is_some() {
                    self.pending.remove(&key);
                }
                let (_, name) = key;
                match error {
                    None => self.say(
                        Level::Ok,
                        false,
                        format!(
                            "{name} {} · {}",
                            if enabled { "enabled" } else { "disabled" },
                            self.saved_where()
                        ),
                    ),
                    Some(e) => self.say(
                        Level::Error,
                        false,
                        format!(
                            "could not {} {name}: {e}",
                            if enabled { "enable" } else { "disable" }
                        ),
                    ),
                }
            }
            Action::Tested {
                model: _,
                deployment,
                result,
            } => {
                let level = if result.ok { Level::Ok } else { Level::Error };
                self.say(
                    level,
                    false,
                    format!("test {deployment}: {}", result.summary()),
                );
            }
            Action::FormTested { generation, result } => {
                if let Some(Overlay::Form(form)) = &mut self.overlay {
                    form.tested(generation, result);
                }
            }
            Action::Saved { generation, result } => self.saved(generation, result),
        }
    }

    fn with_form(&mut self, f: impl FnOnce(&mut Form)) {
        if let Some(Overlay::Form(form)) = &mut self.overlay {
            f(form);
        }
    }

    fn back(&mut self) {
        if self.overlay.take().is_some() {
            return;
        }
        if self.traffic.filter_input.take().is_some() || !self.traffic.filter.is_empty() {
            self.traffic.filter.clear();
            self.traffic.cursor = 0;
        }
    }

    fn submit(&mut self) {
        if let Some(Overlay::Form(form)) = &mut self.overlay {
            let model = form.model.clone();
            let generation = form.generation;
            match form.submit() {
                Some(Submit::Test(spec)) => self.commands.push(Command::TestNew {
                    model,
                    spec,
                    generation,
                }),
                Some(Submit::Save(spec)) => self.commands.push(Command::AddDeployment {
                    model,
                    spec,
                    generation,
                }),
                None => {}
            }
        } else if self.traffic.filter_input.take().is_some() {
            // The filter stays as typed.
        }
    }

    fn saved(&mut self, generation: u64, result: Result<String, FieldMessage>) {
        let Some(Overlay::Form(form)) = &mut self.overlay else {
            return;
        };
        match result {
            Ok(name) if form.generation == generation => {
                let model = form.model.clone();
                self.overlay = None;
                if let Some(mi) = self.state.models.iter().position(|m| m.name == model) {
                    self.model = mi;
                    self.deployment =
                        tiers::row_of(&self.state.models[mi], &name).unwrap_or(self.deployment);
                }
                self.focus = Pane::Deployments;
                self.say(
                    Level::Ok,
                    false,
                    format!("added {name} to {model} · live, {}", self.saved_where()),
                );
            }
            Ok(_) => {}
            Err(e) => form.save_failed(generation, e),
        }
    }

    fn open_form(&mut self) {
        let Some(model) = self.selected_model() else {
            return;
        };
        let taken = model.deployments.iter().map(|d| d.name.clone()).collect();
        // The model ID most of its deployments use: a fallback usually serves the same.
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for d in &model.deployments {
            match counts.iter_mut().find(|(id, _)| *id == d.model_id) {
                Some((_, n)) => *n += 1,
                None => counts.push((&d.model_id, 1)),
            }
        }
        let best = counts.iter().max_by_key(|(_, n)| *n).map(|(id, _)| *id);
        let mut form = Form::new(&model.name, taken, best);
        form.tiers = model.deployments.iter().map(|d| d.priority).collect();
        form.tiers.sort_unstable();
        form.tiers.dedup();
        self.overlay = Some(Overlay::Form(Box::new(form)));
    }

    fn toggle(&mut self) {
        let (Some(m), Some(d)) = (self.selected_model(), self.selected_deployment()) else {
            return;
        };
        let (model, deployment) = (m.name.clone(), d.name.clone());
        let enabled = !self.enabled(&model, d);
        self.pending
            .insert((model.clone(), deployment.clone()), enabled);
        self.say(
            Level::Info,
            true,
            format!(
                "{} {deployment}…",
                if enabled { "enabling" } else { "disabling" }
            ),
        );
        self.commands.push(Command::SetEnabled {
            model,
            deployment,
            enabled,
        });
    }

    fn test(&mut self) {
        let (Some(m), Some(d)) = (self.selected_model(), self.selected_deployment()) else {
            return;
        };
        let (model, deployment) = (m.name.clone(), d.name.clone());
        self.say(Level::Info, true, format!("testing {deployment}…"));
        self.commands
            .push(Command::TestExisting { model, deployment });
    }

    fn select(&mut self, pane: Pane, index: usize) {
        if self.overlay.is_some() {
            return;
        }
        self.focus = pane;
        match pane {
            Pane::Models => {
                if index < self.state.models.len() && index != self.model {
                    self.model = index;
                    self.deployment = 0;
                }
            }
            Pane::Deployments => {
                let n = self.selected_model().map_or(0, |m| m.deployments.len());
                if index < n {
                    self.deployment = index;
                }
            }
            Pane::Traffic => {
                if !self.traffic.paused() {
                    self.traffic.pause();
                }
                let n = self.traffic.visible().len();
                self.traffic.cursor = index.min(n.saturating_sub(1));
            }
        }
    }

    /// Moves the selection of the focused pane (or scrolls the help).
    fn step(&mut self, by: isize) {
        let moved = |i: usize, n: usize| -> usize {
            if n == 0 {
                0
            } else {
                i.saturating_add_signed(by).min(n - 1)
            }
        };
        let help_max = super::ui::help_max_scroll(self, self.viewport);
        if let Some(Overlay::Help { scroll }) = &mut self.overlay {
            *scroll = (*scroll as isize + by).clamp(0, help_max as isize) as u16;
            return;
        }
        if self.overlay.is_some() {
            return;
        }
        match self.focus {
            Pane::Models => {
                let new = moved(self.model, self.state.models.len());
                if new != self.model {
                    self.model = new;
                    self.deployment = 0;
                }
            }
            Pane::Deployments => {
                let n = self.selected_model().map_or(0, |m| m.deployments.len());
                self.deployment = moved(self.deployment, n);
            }
            Pane::Traffic => {
                // Moving through the traffic holds it still.
                if !self.traffic.paused() {
                    self.traffic.pause();
                    return;
                }
                let n = self.traffic.visible().len();
                self.traffic.cursor = moved(self.traffic.cursor, n);
            }
        }
    }
}

impl App {
    /// Where a change was kept: the config file, and in a cluster the
    /// shared state (only there when the file is read-only).
    fn saved_where(&self) -> String {
        let file = file_name(&self.info.config_path);
        match &self.state.cluster {
            None => format!("saved to {file}"),
            Some(c) if !c.config_writable => format!("in cluster {} ({file} is read-only)", c.name),
            Some(c) => format!("saved to {file} and cluster {}", c.name),
        }
    }
}

/// The file name of a path, for short messages.
fn file_name(path: &str) -> &str {
    std::path::Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(path)
}
