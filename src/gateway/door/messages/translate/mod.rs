//! The Messages door in front of an upstream that speaks only OpenAI Chat
//! Completions (`openai`, `azure`, Vertex's OpenAI-compatible endpoint):
//! the request into a chat body ([`request::to_chat`]), the answer back
//! into a `message` ([`answer::from_chat`]), the stream back into Messages
//! events ([`stream::ChatToMessages`]).
//!
//! Where the hub is: Chat Completions. The gateway already speaks it to
//! every upstream, and each provider module translates from it; so a door
//! translates to Chat Completions once, rather than once per provider. A
//! Claude upstream is never reached through here: Messages to a Claude
//! deployment passes through untouched. Everything here is pure (bytes in,
//! bytes out), so the proxy's attempt loop stays ignorant of the door.
//!
//! What each direction keeps and loses is written at the top of its file.

pub mod request;
mod turns;

pub use request::{Untranslatable, to_chat};

#[cfg(test)]
mod tests;
