//! A gateway in this process: its state snapshots, its event channel and
//! direct calls.

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Source, field_message};
use crate::config::DeploymentSpec;
use crate::dashboard::action::{FieldMessage, TestResult};
use crate::dashboard::tui::{self, BATCH, DATA_FRAME, Msg, SNAPSHOT_EVERY};
use crate::gateway::Gateway;

#[derive(Clone)]
pub struct Local {
    gateway: Gateway,
}

impl Local {
    pub fn new(gateway: Gateway) -> Local {
        Local { gateway }
    }

    /// The gateway's state now, as the run loop takes it (a cluster's,
    /// when the gateway is in one).
    pub async fn snapshot(&self) -> Msg {
        tui::state_msg(self.gateway.current_state().await)
    }
}

impl Source for Local {
    fn spawn_feeds(&self, tx: mpsc::Sender<Msg>, stop: CancellationToken) {
        tokio::spawn(snapshots(self.clone(), tx.clone(), stop.clone()));
        tokio::spawn(routing_events(self.gateway.clone(), tx, stop));
    }

    async fn state_now(&self) -> Option<Msg> {
        Some(self.snapshot().await)
    }

    async fn set_enabled(
        &self,
        model: String,
        deployment: String,
        enabled: bool,
    ) -> Result<(), String> {
        self.gateway
            .set_enabled(&model, &deployment, enabled)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn test_existing(&self, model: String, deployment: String) -> TestResult {
        match self.gateway.test_existing(&model, &deployment).await {
            Ok(report) => report.into(),
            Err(e) => TestResult::failed(None, e.to_string()),
        }
    }

    async fn test_new(
        &self,
        _model: String,
        spec: DeploymentSpec,
    ) -> Result<TestResult, FieldMessage> {
        let base_dir = crate::config::base_dir_of(self.gateway.config_path());
        let config = spec.resolve(&base_dir).map_err(FieldMessage::from)?;
        Ok(self.gateway.test_deployment(&config).await.into())
    }

    async fn add(&self, model: String, spec: DeploymentSpec) -> Result<String, FieldMessage> {
        self.gateway
            .add_deployment(&model, spec, false)
            .await
            .map(|view| view.name)
            .map_err(|e| field_message(Some(e.status().as_u16()), e.to_string()))
    }
}

/// The gateway's state every [`SNAPSHOT_EVERY`], owned. A snapshot that finds the channel full is dropped: the next one
/// supersedes it.
async fn snapshots(source: Local, tx: mpsc::Sender<Msg>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SNAPSHOT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(source.snapshot().await) {
            break;
        }
    }
}

/// Routing events in batches of what arrived meanwhile, at most one batch a
/// data frame. The gateway never waits for this: when the dashboard falls
/// behind, the broadcast channel drops the oldest events and says how many.
async fn routing_events(gateway: Gateway, tx: mpsc::Sender<Msg>, stop: CancellationToken) {
    let mut rx = gateway.events().subscribe();
    // In a cluster, this brings the other instances' events too.
    let _watching = gateway.events().watch();
    drop(gateway);
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            r = rx.recv() => r,
        };
        let mut events = Vec::new();
        let mut lagged = 0;
        match first {
            Ok(e) => events.push(e.event),
            Err(RecvError::Lagged(n)) => lagged += n,
            Err(RecvError::Closed) => break,
        }
        while events.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => events.push(e.event),
                Err(TryRecvError::Lagged(n)) => lagged += n,
                Err(_) => break,
            }
        }
        if tx.send(Msg::Events { events, lagged }).await.is_err() {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(DATA_FRAME) => {}
        }
    }
}
