//! The live traffic view: the latest routing events, newest first, with a
//! filter and a pause that holds the view still while the rest goes on.

use std::collections::VecDeque;
use std::sync::Arc;

use tui_input::Input;

use crate::events::{DeploymentChange, Event};

/// How many traffic lines are kept for the view.
pub const TRAFFIC_ROWS: usize = 1000;

#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// Newest first, each with its arrival number.
    rows: VecDeque<(u64, Arc<Event>)>,
    /// The rows as they were when the view was paused.
    frozen: Option<Vec<(u64, Arc<Event>)>>,
    /// Events that arrived while paused.
    pub missed: u64,
    /// The highlighted row of the paused view.
    pub cursor: usize,
    /// The filter in effect.
    pub filter: String,
    /// The filter being typed.
    pub filter_input: Option<Input>,
    seq: u64,
}

impl Traffic {
    pub fn paused(&self) -> bool {
        self.frozen.is_some()
    }

    pub(super) fn push(&mut self, ev: Arc<Event>) {
        self.seq += 1;
        self.rows.push_front((self.seq, ev));
        self.rows.truncate(TRAFFIC_ROWS);
        if self.frozen.is_some() {
            self.missed += 1;
        }
    }

    pub(super) fn pause(&mut self) {
        self.frozen = Some(self.rows.iter().cloned().collect());
        self.missed = 0;
        self.cursor = 0;
    }

    pub(super) fn resume(&mut self) {
        self.frozen = None;
        self.missed = 0;
        self.cursor = 0;
    }

    /// The rows to show, newest first, filtered.
    pub fn visible(&self) -> Vec<&Arc<Event>> {
        let terms: Vec<String> = self
            .filter
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        let keep = |ev: &&Arc<Event>| terms.iter().all(|t| matches(ev, t));
        match &self.frozen {
            Some(rows) => rows.iter().map(|(_, e)| e).filter(keep).collect(),
            None => self.rows.iter().map(|(_, e)| e).filter(keep).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Whether a traffic line matches one (lowercase) filter term: its model,
/// a deployment, a status, or in a cluster its instance.
fn matches(ev: &Event, term: &str) -> bool {
    let has = |s: &str| s.to_lowercase().contains(term);
    if ev.instance().is_some_and(|i| has(i)) {
        return true;
    }
    match ev {
        Event::Request(r) => {
            has(&r.model)
                || r.door().contains(term)
                || r.status.to_string().contains(term)
                || r.attempts.iter().any(|a| {
                    has(&a.deployment) || a.outcome.label().trim_start_matches('✗').contains(term)
                })
        }
        Event::Deployment(d) => has(&d.model) || has(&d.deployment) || has(change_word(&d.change)),
        Event::Route(r) => has(&r.describe()),
        Event::Config(c) => has("config") || has(&c.message),
        Event::Lagged(l) => has("missed") || has(&l.describe()),
    }
}

pub fn change_word(c: &DeploymentChange) -> &'static str {
    match c {
        DeploymentChange::CoolingDown { .. } => "cooling down",
        DeploymentChange::Recovered => "recovered",
        DeploymentChange::Enabled { enabled: true } => "enabled",
        DeploymentChange::Enabled { enabled: false } => "disabled",
        DeploymentChange::Added => "added",
        DeploymentChange::Removed => "removed",
        DeploymentChange::Updated => "updated",
    }
}
