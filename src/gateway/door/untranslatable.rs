//! What a door cannot carry over to a deployment's protocol (a Messages
//! or Responses request bridged through chat), refused by name.

/// What cannot be translated, refused by name: the gateway answers 400
/// `invalid_request_error` with `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable {
    pub message: String,
}

impl std::fmt::Display for Untranslatable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Untranslatable {}

pub(crate) fn refuse(message: impl Into<String>) -> Untranslatable {
    Untranslatable {
        message: message.into(),
    }
}
