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

/// Property tests' settings: `cases` runs, and failures kept beside the
/// test's source file (`*.regressions`), not in a folder at the
/// repository's top level.
#[cfg(test)]
pub(crate) fn props(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..proptest::test_runner::Config::default()
    }
}
