//! Optional authentication of the public port: bearer tokens and/or basic
//! auth (`server.auth`), checked by the request context's middleware.

use base64::Engine;
use phlox_config::AuthConfig;

pub(crate) fn enabled(c: &AuthConfig) -> bool {
    !c.bearer_tokens.is_empty() || !c.basic_auth.is_empty()
}

pub(crate) fn allowed(c: &AuthConfig, authorization: &str) -> bool {
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        return c.bearer_tokens.iter().any(|t| constant_time_eq(t.as_bytes(), token.trim().as_bytes()));
    }
    if let Some(b64) = authorization.strip_prefix("Basic ")
        && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim())
    {
        return c.basic_auth.iter().any(|cred| constant_time_eq(cred.as_bytes(), &raw));
    }
    false
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_basic_credentials() {
        let c = AuthConfig { bearer_tokens: vec!["s3cret".into()], basic_auth: vec!["user:pw".into()] };
        assert!(allowed(&c, "Bearer s3cret"));
        assert!(!allowed(&c, "Bearer nope"));
        assert!(allowed(&c, "Basic dXNlcjpwdw=="));
        assert!(!allowed(&c, "Basic dXNlcjp4"));
        assert!(!allowed(&c, "s3cret"));
    }
}
