//! switchboard: an OpenAI-compatible gateway that spreads one model over several
//! deployments by their tokens-per-minute limits and fails over between them.
//!
//! Layers, each knowing only the one below:
//! `config` → `router` (pure core; `cluster` holds the same decisions in Redis)
//! → `gateway` (HTTP in/out) → `events` → dashboard.

pub mod cli;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod events;
pub mod gateway;
mod logging;
pub mod mock_upstream;
pub mod router;
pub mod shutdown;
