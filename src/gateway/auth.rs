//! Bearer keys, compared in constant time.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::ApiKey;

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

/// Whether `presented` equals one of `keys`. Every key is compared, and each
/// comparison takes the same time whatever the bytes, so timing reveals nothing
/// about which key or how much of it matched.
fn matches_any(presented: &[u8], keys: &[ApiKey]) -> bool {
    keys.iter()
        .fold(subtle::Choice::from(0), |acc, key| {
            acc | presented.ct_eq(key.expose().as_bytes())
        })
        .into()
}

/// Client routes: open when no keys are configured.
pub fn client_allowed(headers: &HeaderMap, keys: &[ApiKey]) -> bool {
    keys.is_empty() || bearer(headers).is_some_and(|t| matches_any(t, keys))
}

/// Admin routes: open when no admin key is configured.
pub fn admin_allowed(headers: &HeaderMap, key: Option<&ApiKey>) -> bool {
    match key {
        None => true,
        Some(k) => bearer(headers).is_some_and(|t| matches_any(t, std::slice::from_ref(k))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static(v));
        h
    }

    #[test]
    fn bearer_keys_must_match_exactly() {
        let keys = vec![ApiKey::literal("sk-one"), ApiKey::literal("sk-two")];
        assert!(client_allowed(&with_auth("Bearer sk-two"), &keys));
        assert!(client_allowed(&with_auth("bearer sk-one"), &keys));
        assert!(!client_allowed(&with_auth("Bearer sk-on"), &keys));
        assert!(!client_allowed(&with_auth("Bearer sk-one2"), &keys));
        assert!(!client_allowed(&with_auth("Basic sk-one"), &keys));
        assert!(!client_allowed(&HeaderMap::new(), &keys));
        assert!(client_allowed(&HeaderMap::new(), &[]));
        assert!(admin_allowed(&HeaderMap::new(), None));
        assert!(!admin_allowed(
            &with_auth("Bearer sk-one"),
            Some(&ApiKey::literal("admin"))
        ));
    }
}
