use std::fmt;

/// Tenant used when multi-tenancy is off (Pyroscope's default).
pub const DEFAULT_TENANT: &str = "anonymous";

/// Longest tenant id accepted (as Pyroscope/Cortex).
const MAX_TENANT_LEN: usize = 150;

/// Why a tenant id was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenantError {
    #[error("tenant id is empty")]
    Empty,
    #[error("tenant id is longer than {MAX_TENANT_LEN} characters")]
    TooLong,
    #[error("tenant id {0:?} is not allowed")]
    Reserved(String),
    #[error("tenant id contains the unsupported character {0:?}")]
    BadChar(char),
}

/// A tenant id: safe to use as an object key component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(String);

impl TenantId {
    /// Validates a tenant id: `[A-Za-z0-9!-_.*'()]`, at most 150 characters,
    /// not `.` or `..`.
    pub fn new(id: &str) -> Result<Self, TenantError> {
        if id.is_empty() {
            return Err(TenantError::Empty);
        }
        if id.len() > MAX_TENANT_LEN {
            return Err(TenantError::TooLong);
        }
        if id == "." || id == ".." {
            return Err(TenantError::Reserved(id.to_owned()));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')')))
        {
            return Err(TenantError::BadChar(c));
        }
        Ok(Self(id.to_owned()))
    }

    /// The default single tenant.
    pub fn anonymous() -> Self {
        Self(DEFAULT_TENANT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_validated() {
        assert_eq!(TenantId::new("team-a_1").map(|t| t.to_string()), Ok("team-a_1".into()));
        assert_eq!(TenantId::new(""), Err(TenantError::Empty));
        assert_eq!(TenantId::new(".."), Err(TenantError::Reserved("..".into())));
        assert_eq!(TenantId::new("a/b"), Err(TenantError::BadChar('/')));
        assert_eq!(TenantId::new(&"x".repeat(151)), Err(TenantError::TooLong));
    }
}
