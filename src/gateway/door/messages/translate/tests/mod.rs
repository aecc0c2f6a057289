//! The translators' tests, one file per direction, plus the properties.

mod request;
