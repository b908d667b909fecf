//! Authentication of the public port (`server.auth`): bearer tokens and
//! basic auth, each either for any tenant or limited to some
//! ([`Scope`]); and the admin listener's bearer token.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::Engine;
use phlox_config::{AuthConfig, TenantCredential};

use super::error::ApiError;

/// Which tenants a request's credential may write and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    Any,
    /// These tenants; the first is the one of a request without
    /// `X-Scope-OrgID`.
    Tenants(Vec<String>),
}

/// The public port's credentials: the configuration's, and those of its
/// `credentials_file` as last read.
#[derive(Debug)]
pub(crate) struct Credentials {
    config: AuthConfig,
    from_file: RwLock<Vec<TenantCredential>>,
}

impl Credentials {
    pub(crate) fn new(config: AuthConfig) -> Self {
        let c = Self { config, from_file: RwLock::new(Vec::new()) };
        c.refresh();
        c
    }

    pub(crate) fn enabled(&self) -> bool {
        self.config.enabled()
    }

    /// Re-reads the credentials file every `every`.
    pub(crate) fn spawn_refresh(self: &std::sync::Arc<Self>, every: std::time::Duration) {
        if self.config.credentials_file.is_none() {
            return;
        }
        let me = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                me.refresh();
            }
        });
    }

    /// Re-reads the credentials file; one that fails keeps the last good
    /// credentials.
    pub(crate) fn refresh(&self) {
        let Some(path) = &self.config.credentials_file else { return };
        match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| TenantCredential::parse_list(&text).map_err(|e| e.to_string()))
        {
            Ok(list) => {
                if let Ok(mut current) = self.from_file.write() {
                    *current = list;
                }
            }
            Err(error) => tracing::warn!(path = %path.display(), %error, "cannot read server.auth.credentials_file"),
        }
    }

    /// The scope of an `Authorization` header value.
    pub(crate) fn scope(&self, authorization: Option<&str>) -> Result<Scope, ApiError> {
        let refused = || ApiError::new("unauthenticated", "missing or invalid credentials");
        let presented = authorization.and_then(Presented::parse).ok_or_else(refused)?;
        let c = &self.config;
        if c.bearer_tokens.iter().any(|t| presented.is_bearer(t)) || c.basic_auth.iter().any(|b| presented.is_basic(b))
        {
            return Ok(Scope::Any);
        }
        // Looked up under the read lock: no copy of the list per request.
        let from_file = self.from_file.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let matched = c.tenants.iter().chain(from_file.iter()).find(|cred| {
            cred.bearer_token.as_deref().is_some_and(|t| presented.is_bearer(t))
                || cred.basic_auth.as_deref().is_some_and(|b| presented.is_basic(b))
        });
        match matched {
            Some(cred) if cred.tenants.iter().any(|t| t == "*") => Ok(Scope::Any),
            Some(cred) => Ok(Scope::Tenants(cred.tenants.clone())),
            None => Err(refused()),
        }
    }
}

/// A credential as presented: a bearer token or basic-auth `user:password`.
enum Presented {
    Bearer(Vec<u8>),
    Basic(Vec<u8>),
}

impl Presented {
    fn parse(authorization: &str) -> Option<Self> {
        let (scheme, value) = authorization.trim().split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") {
            Some(Self::Bearer(value.trim().as_bytes().to_vec()))
        } else if scheme.eq_ignore_ascii_case("basic") {
            base64::engine::general_purpose::STANDARD.decode(value.trim()).ok().map(Self::Basic)
        } else {
            None
        }
    }

    fn is_bearer(&self, token: &str) -> bool {
        matches!(self, Self::Bearer(t) if constant_time_eq(t, token.as_bytes()))
    }

    fn is_basic(&self, user_password: &str) -> bool {
        matches!(self, Self::Basic(b) if constant_time_eq(b, user_password.as_bytes()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The admin listener's bearer token, read from its file on each call (a
/// rotated Secret applies at once).
#[derive(Debug, Clone)]
pub(crate) struct AdminToken {
    path: PathBuf,
}

impl AdminToken {
    /// The token in `configured`, or else in `<data_dir>/admin-token`,
    /// created (owner-only) with a random token when missing.
    pub(crate) fn open(configured: Option<&Path>, data_dir: &Path) -> std::io::Result<Self> {
        if let Some(path) = configured {
            return Ok(Self { path: path.to_owned() });
        }
        let path = data_dir.join("admin-token");
        if !path.exists() {
            use std::io::{Read, Write};
            use std::os::unix::fs::OpenOptionsExt;
            let mut random = [0u8; 32];
            std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
            let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
            f.write_all(token.as_bytes())?;
        }
        Ok(Self { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `authorization` carries the token.
    pub(crate) fn check(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let token = std::fs::read_to_string(&self.path).map_err(|e| {
            ApiError::new("unavailable", format!("the admin token file {} cannot be read: {e}", self.path.display()))
        })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(ApiError::new("unavailable", format!("the admin token file {} is empty", self.path.display())));
        }
        match authorization.and_then(Presented::parse) {
            Some(p) if p.is_bearer(token) => Ok(()),
            _ => Err(ApiError::new("unauthenticated", "the admin API needs Authorization: Bearer <admin token>")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials::new(AuthConfig {
            bearer_tokens: vec!["s3cret".into()],
            basic_auth: vec!["user:pw".into()],
            tenants: vec![
                TenantCredential { bearer_token: Some("team-a".into()), basic_auth: None, tenants: vec!["a".into()] },
                TenantCredential {
                    bearer_token: None,
                    basic_auth: Some("b:pw".into()),
                    tenants: vec!["b".into(), "shared".into()],
                },
            ],
            credentials_file: None,
        })
    }

    #[test]
    fn tokens_and_basic_credentials_have_scopes() {
        let c = credentials();
        assert_eq!(c.scope(Some("Bearer s3cret")).unwrap(), Scope::Any);
        assert_eq!(c.scope(Some("bearer s3cret")).unwrap(), Scope::Any);
        assert_eq!(c.scope(Some("Basic dXNlcjpwdw==")).unwrap(), Scope::Any);
        assert_eq!(c.scope(Some("Bearer team-a")).unwrap(), Scope::Tenants(vec!["a".into()]));
        // "b:pw"
        assert_eq!(c.scope(Some("Basic Yjpwdw==")).unwrap(), Scope::Tenants(vec!["b".into(), "shared".into()]));
        for bad in [Some("Bearer nope"), Some("Basic dXNlcjp4"), Some("s3cret"), None] {
            assert_eq!(c.scope(bad).unwrap_err().code, "unauthenticated", "{bad:?}");
        }
    }

    #[test]
    fn the_credentials_file_is_reread_and_a_broken_one_keeps_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials.yaml");
        std::fs::write(&file, "- {bearer_token: t1, tenants: [x]}\n").unwrap();
        let c = Credentials::new(AuthConfig { credentials_file: Some(file.clone()), ..AuthConfig::default() });
        assert!(c.enabled());
        assert_eq!(c.scope(Some("Bearer t1")).unwrap(), Scope::Tenants(vec!["x".into()]));
        std::fs::write(&file, "- {bearer_token: t2, tenants: ['*']}\n").unwrap();
        c.refresh();
        assert_eq!(c.scope(Some("Bearer t2")).unwrap(), Scope::Any);
        assert!(c.scope(Some("Bearer t1")).is_err());
        std::fs::write(&file, "- {bearer_token: t3}\n").unwrap();
        c.refresh();
        assert_eq!(c.scope(Some("Bearer t2")).unwrap(), Scope::Any, "a broken file keeps the last credentials");
    }

    #[test]
    fn the_admin_token_is_created_once_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let t = AdminToken::open(None, dir.path()).unwrap();
        let token = std::fs::read_to_string(t.path()).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(std::fs::read_to_string(AdminToken::open(None, dir.path()).unwrap().path()).unwrap(), token);
        assert!(t.check(Some(&format!("Bearer {token}"))).is_ok());
        assert_eq!(t.check(Some("Bearer nope")).unwrap_err().code, "unauthenticated");
        assert_eq!(t.check(None).unwrap_err().code, "unauthenticated");
        let missing = AdminToken::open(Some(&dir.path().join("none")), dir.path()).unwrap();
        assert_eq!(missing.check(Some(&format!("Bearer {token}"))).unwrap_err().code, "unavailable");
    }
}
