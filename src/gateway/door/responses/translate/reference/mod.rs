//! The `Value`-based translations the typed ones replaced, kept as they
//! were: the oracle the live ones are held to, byte for byte (answers) or
//! value for value (requests), error for error.

mod answer;
mod request;

#[cfg(test)]
mod same_answers;
#[cfg(test)]
mod same_requests;
