//! Bearer-token checks for the API's mutating endpoints: the token lives in the cluster's
//! 0600 secrets file.

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Why a mutating request was refused before it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorised {
    /// No `api_token` in the secrets file: control endpoints are off.
    Disabled,
    /// The request's bearer token is missing or not the configured one.
    WrongToken,
}

impl IntoResponse for Unauthorised {
    fn into_response(self) -> Response {
        let (status, error) = match self {
            Unauthorised::Disabled => (
                StatusCode::FORBIDDEN,
                "control endpoints are disabled: set api_token in the secrets file",
            ),
            Unauthorised::WrongToken => (StatusCode::UNAUTHORIZED, "missing or wrong bearer token"),
        };
        let body = super::Failure::new(super::FailureKind::Unauthorised, error);
        (status, Json(body)).into_response()
    }
}

/// Whether a request reads (GET/HEAD, and OPTIONS as HAProxy's checks send it) rather than
/// changes something.
pub fn reads(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Checks the bearer token of a mutating request against `token`.
pub fn authorised(token: Option<&str>, headers: &HeaderMap) -> Result<(), Unauthorised> {
    let Some(token) = token else {
        return Err(Unauthorised::Disabled);
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|given| same_secret(given.as_bytes(), token.as_bytes())) {
        Ok(())
    } else {
        Err(Unauthorised::WrongToken)
    }
}

/// Compares two secrets in time that depends on their lengths only, never on where they
/// first differ (a caller timing the answers learns nothing about the token's prefix).
fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    let mut differ = given.len() ^ secret.len();
    for (i, s) in secret.iter().enumerate() {
        differ |= usize::from(given.get(i).copied().unwrap_or(0) ^ s);
    }
    differ == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_exactly() {
        assert!(same_secret(b"token-0815", b"token-0815"));
        for wrong in [
            &b"token-0816"[..],
            b"token-081",
            b"token-08155",
            b"",
            b"TOKEN-0815",
        ] {
            assert!(!same_secret(wrong, b"token-0815"), "{wrong:?}");
        }
    }

    #[test]
    fn a_bearer_header_is_required() {
        let mut headers = HeaderMap::new();
        assert_eq!(authorised(None, &headers), Err(Unauthorised::Disabled));
        assert_eq!(
            authorised(Some("t"), &headers),
            Err(Unauthorised::WrongToken)
        );
        headers.insert("authorization", "Bearer t".parse().unwrap());
        assert_eq!(authorised(Some("t"), &headers), Ok(()));
        headers.insert("authorization", "t".parse().unwrap());
        assert_eq!(
            authorised(Some("t"), &headers),
            Err(Unauthorised::WrongToken)
        );
    }
}
