//! Several instances acting as one gateway through Redis: the routing state
//! of every model (TPM windows, round-robin credits, cooldowns, probes,
//! enabled flags) lives in Redis and is changed only by Lua scripts that
//! implement the router core's rules ([`shared`]), membership by heartbeat,
//! changes by pub/sub.

pub mod shared;
