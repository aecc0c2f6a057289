//! Who may use the gateway: client and admin keys, compared in constant time,
//! and the refusal to run unguarded where other machines can reach it.

use std::net::SocketAddr;

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::{ApiKey, ServerConfig};

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

/// The token of an `api-key: <token>` header, which Azure OpenAI clients send.
fn api_key_header(headers: &HeaderMap) -> Option<&[u8]> {
    const API_KEY: axum::http::HeaderName = axum::http::HeaderName::from_static("api-key");
    Some(headers.get(API_KEY)?.as_bytes().trim_ascii())
}

/// Client routes: open when no keys are configured; otherwise a configured key
/// as a bearer token or in `api-key`.
pub fn client_allowed(headers: &HeaderMap, keys: &[ApiKey]) -> bool {
    keys.is_empty()
        || bearer(headers)
            .or_else(|| api_key_header(headers))
            .is_some_and(|t| matches_any(t, keys))
}

/// The Messages door: as [`client_allowed`], or the key in `x-api-key`,
/// as Anthropic's SDKs send it.
pub fn anthropic_client_allowed(headers: &HeaderMap, keys: &[ApiKey]) -> bool {
    const X_API_KEY: axum::http::HeaderName = axum::http::HeaderName::from_static("x-api-key");
    client_allowed(headers, keys)
        || headers
            .get(X_API_KEY)
            .is_some_and(|t| matches_any(t.as_bytes().trim_ascii(), keys))
}

/// Admin routes: with an admin key, the bearer token must match it; without
/// one, only clients on this machine may use them, unless the operator opened
/// them explicitly (`--allow-unauthenticated`). A request without a known
/// peer (served by something other than [`Gateway::serve`]) counts as remote.
///
/// [`Gateway::serve`]: super::Gateway::serve
pub fn admin_access(
    headers: &HeaderMap,
    key: Option<&ApiKey>,
    peer: Option<SocketAddr>,
    open: bool,
) -> Result<(), super::ApiError> {
    match key {
        Some(k) if bearer(headers).is_some_and(|t| matches_any(t, std::slice::from_ref(k))) => {
            Ok(())
        }
        Some(_) => Err(super::ApiError::AdminUnauthorized),
        None if open || peer.is_some_and(|p| p.ip().to_canonical().is_loopback()) => Ok(()),
        None => Err(super::ApiError::AdminForbidden),
    }
}

/// Refuses to listen where other machines can connect without client keys:
/// anyone who reaches the port could spend the providers' quota. Loopback
/// needs none; `allow` (the `--allow-unauthenticated` flag) overrides.
pub fn check_exposure(
    listen: SocketAddr,
    server: &ServerConfig,
    allow: bool,
) -> Result<(), String> {
    if allow || listen.ip().to_canonical().is_loopback() || !server.api_keys.is_empty() {
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {listen} without client API keys: anyone who can reach it could \
         spend your providers' quota. Set server.api_keys, listen on 127.0.0.1, or pass \
         --allow-unauthenticated if something in front of switchboard already checks clients."
    ))
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
    }

    #[test]
    fn azure_style_api_key_header_is_accepted() {
        let keys = vec![ApiKey::literal("sk-one")];
        let mut h = HeaderMap::new();
        h.insert("api-key", HeaderValue::from_static("sk-one"));
        assert!(client_allowed(&h, &keys));
        h.insert("api-key", HeaderValue::from_static("sk-two"));
        assert!(!client_allowed(&h, &keys));
    }

    #[test]
    fn admin_without_a_key_is_for_loopback_clients_only() {
        use super::super::ApiError;
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let local6: SocketAddr = "[::1]:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let remote: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let none = HeaderMap::new();
        for peer in [local, local6, mapped] {
            assert_eq!(admin_access(&none, None, Some(peer), false), Ok(()));
        }
        assert_eq!(
            admin_access(&none, None, Some(remote), false),
            Err(ApiError::AdminForbidden)
        );
        assert_eq!(
            admin_access(&none, None, None, false),
            Err(ApiError::AdminForbidden)
        );
        assert_eq!(admin_access(&none, None, Some(remote), true), Ok(()));
        let key = ApiKey::literal("admin");
        assert_eq!(
            admin_access(&with_auth("Bearer admin"), Some(&key), Some(remote), false),
            Ok(())
        );
        assert_eq!(
            admin_access(&with_auth("Bearer sk-one"), Some(&key), Some(local), true),
            Err(ApiError::AdminUnauthorized)
        );
    }

    #[test]
    fn open_listen_addresses_need_client_keys() {
        let mut server = ServerConfig::default();
        let any: SocketAddr = "0.0.0.0:4000".parse().unwrap();
        let any6: SocketAddr = "[::]:4000".parse().unwrap();
        let lan: SocketAddr = "192.168.1.5:4000".parse().unwrap();
        assert!(check_exposure("127.0.0.1:4000".parse().unwrap(), &server, false).is_ok());
        assert!(check_exposure("[::1]:4000".parse().unwrap(), &server, false).is_ok());
        for addr in [any, any6, lan] {
            let refused = check_exposure(addr, &server, false).unwrap_err();
            assert!(refused.contains("server.api_keys"), "{refused}");
            assert!(check_exposure(addr, &server, true).is_ok());
        }
        server.api_keys = vec![ApiKey::literal("sk-one")];
        assert!(check_exposure(any, &server, false).is_ok());
    }
}
