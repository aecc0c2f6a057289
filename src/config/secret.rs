//! API keys: where they come from, and a type that keeps them out of logs.
//!
//! A key is written in the config as a *reference*: `env:VAR`, `file:PATH`
//! or the key itself. [`ApiKey::parse`] resolves the reference once, at load
//! time, so a missing variable or file is reported at startup rather than on
//! the first request. The resolved key lives in a [`SecretString`]: it is
//! zeroed on drop, and `Debug` prints only a mask.

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};

/// The config fields that hold keys (or references to them), wherever they
/// appear: their values are never quoted in a message.
pub(crate) const SECRET_FIELDS: [&str; 8] = [
    "api_key",
    "api_keys",
    "admin_key",
    "redis_url",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "credentials",
];

const ENV_PREFIX: &str = "env:";
const FILE_PREFIX: &str = "file:";

/// Keys at least this long are masked as `sk-…3456` (7 characters shown,
/// which is at most half of the key from this length on); shorter keys show
/// at most their last two characters.
const FULL_MASK_MIN_CHARS: usize = 14;
/// Below this length even two characters would be more than half the key.
const SHORT_MASK_MIN_CHARS: usize = 4;

/// How a key was written in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `env:VAR`: read from the environment variable `VAR`.
    Env(String),
    /// `file:PATH`: read from a file; the path as written (a relative path
    /// was resolved against the config file's folder).
    File(PathBuf),
    /// The key itself, written in the config.
    Literal,
}

/// A resolved API key. `Debug` prints a mask, never the key.
#[derive(Clone)]
pub struct ApiKey {
    source: KeySource,
    secret: SecretString,
}

impl ApiKey {
    /// Resolves a key reference: `env:VAR`, `file:PATH` (relative to
    /// `base_dir`) or a literal key.
    ///
    /// The error names the variable or the file, never the key. Keys read
    /// from the environment or a file are trimmed of surrounding whitespace
    /// (editors and `echo` add a final newline); a key that is empty or holds
    /// characters an HTTP header cannot carry is an error, because it could
    /// never authenticate.
    pub fn parse(reference: &str, base_dir: &Path) -> Result<ApiKey, String> {
        if let Some(var) = reference.strip_prefix(ENV_PREFIX) {
            from_env(var.trim())
        } else if let Some(file) = reference.strip_prefix(FILE_PREFIX) {
            from_file(file.trim(), base_dir)
        } else {
            check_key(reference, "the key")?;
            Ok(ApiKey::new(KeySource::Literal, reference.into()))
        }
    }

    /// A key given directly (tests, generated configs). Not validated.
    pub fn literal(secret: &str) -> ApiKey {
        ApiKey::new(KeySource::Literal, secret.into())
    }

    fn new(source: KeySource, secret: SecretString) -> ApiKey {
        ApiKey { source, secret }
    }

    /// The key itself: for the upstream's auth header or a constant-time
    /// comparison, nothing else.
    pub fn expose(&self) -> &str {
        self.secret.expose_secret()
    }

    /// A form safe to show in the dashboard and the admin API, e.g.
    /// `sk-…3456`. Never shows more than 7 characters, nor more than half
    /// of the key.
    pub fn masked(&self) -> String {
        mask(self.expose())
    }

    /// `text` with every occurrence of this key replaced by its mask: for
    /// what an upstream says, which may echo the key it was sent.
    pub fn scrub<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let key = self.expose();
        if key.is_empty() || !text.contains(key) {
            return std::borrow::Cow::Borrowed(text);
        }
        std::borrow::Cow::Owned(text.replace(key, &self.masked()))
    }

    /// [`ApiKey::scrub`] for a body of bytes (an error body passed back).
    pub fn scrub_bytes(&self, body: bytes::Bytes) -> bytes::Bytes {
        let key = self.expose().as_bytes();
        if key.is_empty() || !body.windows(key.len()).any(|w| w == key) {
            return body;
        }
        let mask = self.masked();
        let mut out = Vec::with_capacity(body.len());
        let mut rest = &body[..];
        while let Some(i) = rest.windows(key.len()).position(|w| w == key) {
            out.extend_from_slice(&rest[..i]);
            out.extend_from_slice(mask.as_bytes());
            rest = &rest[i + key.len()..];
        }
        out.extend_from_slice(rest);
        bytes::Bytes::from(out)
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    pub fn is_literal(&self) -> bool {
        self.source == KeySource::Literal
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("source", &self.source)
            .field("key", &self.masked())
            .finish()
    }
}

/// Whether a reference as written in the config is the key itself (rather
/// than `env:` or `file:`): such a file must not be readable by others.
pub(crate) fn is_literal_reference(reference: &str) -> bool {
    !reference.starts_with(ENV_PREFIX) && !reference.starts_with(FILE_PREFIX)
}

fn from_env(var: &str) -> Result<ApiKey, String> {
    if var.is_empty() {
        return Err("\"env:\" needs a variable name, e.g. \"env:OPENAI_API_KEY\"".into());
    }
    let looks_like_a_name = var
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !looks_like_a_name {
        // Likely a key pasted after "env:": never repeat it.
        return Err(
            "\"env:\" must be followed by an environment variable name (letters, digits, _); \
             to give the key itself, write it without \"env:\""
                .into(),
        );
    }
    let value = std::env::var(var).map_err(|e| match e {
        std::env::VarError::NotPresent => format!("environment variable {var} is not set"),
        std::env::VarError::NotUnicode(_) => {
            format!("environment variable {var} is not valid UTF-8")
        }
    })?;
    let origin = format!("environment variable {var}");
    ApiKey::from_resolved(KeySource::Env(var.to_string()), value, &origin)
}

fn from_file(file: &str, base_dir: &Path) -> Result<ApiKey, String> {
    if file.is_empty() {
        return Err("\"file:\" needs a path, e.g. \"file:keys/openai.key\"".into());
    }
    let written = PathBuf::from(file);
    // `join` keeps an absolute path as it is.
    let full = base_dir.join(&written);
    let contents = std::fs::read_to_string(&full).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("key file {} does not exist", full.display()),
        _ => format!("cannot read key file {}: {e}", full.display()),
    })?;
    let origin = format!("key file {}", full.display());
    ApiKey::from_resolved(KeySource::File(written), contents, &origin)
}

impl ApiKey {
    /// Trims, checks and wraps a key read from outside the config, wiping the
    /// intermediate copy.
    fn from_resolved(source: KeySource, mut raw: String, origin: &str) -> Result<ApiKey, String> {
        let checked = check_key(raw.trim(), origin).map(SecretString::from);
        raw.zeroize();
        Ok(ApiKey::new(source, checked?))
    }
}

/// Rejects keys that could never authenticate. The messages describe the
/// problem, never the key.
fn check_key<'k>(key: &'k str, origin: &str) -> Result<&'k str, String> {
    if key.is_empty() {
        return Err(format!("{origin} is empty"));
    }
    if key.chars().any(char::is_whitespace) {
        return Err(format!(
            "{origin} contains whitespace; it should hold the key alone"
        ));
    }
    if !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "{origin} contains characters that cannot be sent in an HTTP header"
        ));
    }
    Ok(key)
}

fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let n = chars.len();
    if n >= FULL_MASK_MIN_CHARS {
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[n - 4..].iter().collect();
        format!("{head}…{tail}")
    } else if n >= SHORT_MASK_MIN_CHARS {
        let tail: String = chars[n - 2..].iter().collect();
        format!("…{tail}")
    } else {
        "****".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_long_keys_with_head_and_tail() {
        assert_eq!(ApiKey::literal("sk-proj-abcdef123456").masked(), "sk-…3456");
    }

    #[test]
    fn masks_never_reveal_more_than_half() {
        for len in 0..40 {
            let key: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCD"[..len].to_string();
            let masked = ApiKey::literal(&key).masked();
            let shown = masked.chars().filter(|c| *c != '…' && *c != '*').count();
            assert!(shown <= 7, "{len}: {masked}");
            assert!(shown * 2 <= len, "{len}: {masked}");
        }
    }

    #[test]
    fn debug_prints_the_mask_only() {
        let key = ApiKey::literal("sk-live-0123456789abcdef");
        let debug = format!("{key:?}");
        assert!(!debug.contains("0123456789"), "{debug}");
        assert!(debug.contains("sk-…cdef"), "{debug}");
    }

    #[test]
    fn literal_references_are_told_apart() {
        assert!(is_literal_reference("sk-123"));
        assert!(!is_literal_reference("env:X"));
        assert!(!is_literal_reference("file:x.key"));
    }

    #[test]
    fn bad_literal_keys_are_rejected_without_echoing_them() {
        let err = ApiKey::parse("sk-has space", Path::new(".")).unwrap_err();
        assert!(
            err.contains("whitespace") && !err.contains("sk-has"),
            "{err}"
        );
        assert!(ApiKey::parse("", Path::new(".")).is_err());
    }
}
