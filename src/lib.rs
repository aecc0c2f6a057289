//! switchboard: an OpenAI-compatible gateway that spreads one model over several
//! deployments by their tokens-per-minute limits and fails over between them.

pub mod config;
pub mod mock_upstream;
