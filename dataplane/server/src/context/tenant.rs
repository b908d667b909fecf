//! The tenants of a request: `X-Scope-OrgID` with multi-tenancy (reads may
//! name several, joined by `|`), else `anonymous`.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use phlox_model::TenantId;

use super::auth::Scope;
use super::error::ApiError;

/// `X-Scope-OrgID`, resolved once per request by the context middleware.
#[derive(Debug, Clone)]
pub(crate) struct OrgId(Result<Vec<TenantId>, ApiError>);

impl OrgId {
    /// The tenants a request names, as far as its credential's `scope`
    /// allows; a scoped credential without `X-Scope-OrgID` is for its
    /// first tenant.
    pub(crate) fn resolve(headers: &HeaderMap, multitenancy: bool, scope: &Scope) -> Self {
        if !multitenancy {
            return Self(Ok(vec![TenantId::anonymous()]));
        }
        let unauthenticated = |m: String| ApiError::new("unauthenticated", m);
        let tenants = match (headers.get("x-scope-orgid"), scope) {
            (None, Scope::Tenants(allowed)) => allowed
                .first()
                .map(|t| TenantId::new(t).map(|t| vec![t]).map_err(|e| unauthenticated(e.to_string())))
                .unwrap_or_else(|| Err(unauthenticated("no org id".into()))),
            (None, Scope::Any) => Err(unauthenticated("no org id".into())),
            (Some(v), _) => {
                v.to_str().map_err(|_| unauthenticated("X-Scope-OrgID is not valid text".into())).and_then(|v| {
                    let mut tenants = v
                        .split('|')
                        .map(|t| TenantId::new(t.trim()).map_err(|e| unauthenticated(e.to_string())))
                        .collect::<Result<Vec<_>, _>>()?;
                    tenants.sort();
                    tenants.dedup();
                    Ok(tenants)
                })
            }
        };
        let tenants = tenants.and_then(|tenants| match scope {
            Scope::Tenants(allowed) => match tenants.iter().find(|t| !allowed.iter().any(|a| a == t.as_str())) {
                Some(t) => Err(ApiError::new(
                    "permission_denied",
                    format!("this credential may not access tenant {:?}", t.as_str()),
                )),
                None => Ok(tenants),
            },
            Scope::Any => Ok(tenants),
        });
        Self(tenants)
    }

    /// The one tenant a write (or a per-tenant setting) is for.
    pub(crate) fn tenant(&self) -> Result<TenantId, ApiError> {
        match self.0.as_deref().map_err(Clone::clone)? {
            [one] => Ok(one.clone()),
            many => Err(ApiError::new(
                "unauthenticated",
                format!("X-Scope-OrgID names {} tenants; this call is for exactly one", many.len()),
            )),
        }
    }

    /// The tenants a read covers (sorted, distinct).
    pub(crate) fn tenants(&self) -> Result<Vec<String>, ApiError> {
        Ok(self.0.as_ref().map_err(Clone::clone)?.iter().map(|t| t.as_str().to_owned()).collect())
    }

    /// The one tenant of a gRPC (or generated Connect) call.
    pub(crate) fn tenant_of<T>(request: &tonic::Request<T>) -> Result<TenantId, tonic::Status> {
        Self::of(request)?.tenant().map_err(super::error::status)
    }

    /// The tenants a gRPC (or generated Connect) read covers.
    pub(crate) fn tenants_of<T>(request: &tonic::Request<T>) -> Result<Vec<String>, tonic::Status> {
        Self::of(request)?.tenants().map_err(super::error::status)
    }

    /// The context of a gRPC (or generated Connect) call.
    pub(crate) fn of<T>(request: &tonic::Request<T>) -> Result<&OrgId, tonic::Status> {
        request
            .extensions()
            .get::<OrgId>()
            .ok_or_else(|| tonic::Status::internal("the request context did not run for this call"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for OrgId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<OrgId>()
            .cloned()
            .ok_or_else(|| ApiError::new("internal", "the request context did not run for this route"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(value: Option<&'static str>, multitenancy: bool) -> OrgId {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert("x-scope-orgid", axum::http::HeaderValue::from_static(v));
        }
        OrgId::resolve(&h, multitenancy, &Scope::Any)
    }

    #[test]
    fn one_tenant_for_writes_several_for_reads() {
        assert_eq!(org(None, false).tenant().unwrap().as_str(), "anonymous");
        assert_eq!(org(Some("x"), false).tenants().unwrap(), vec!["anonymous"]);
        assert_eq!(org(Some(" b "), true).tenant().unwrap().as_str(), "b");
        assert_eq!(org(Some("b|a|b"), true).tenants().unwrap(), vec!["a", "b"]);
        let e = org(Some("b|a"), true).tenant().unwrap_err();
        assert_eq!(e.code, "unauthenticated");
        assert!(e.message.contains("2 tenants"), "{}", e.message);
        assert_eq!(org(None, true).tenants().unwrap_err(), ApiError::new("unauthenticated", "no org id"));
        assert_eq!(org(Some("a/b"), true).tenant().unwrap_err().code, "unauthenticated");
    }

    #[test]
    fn a_scoped_credential_reaches_its_tenants_only() {
        let scope = Scope::Tenants(vec!["a".into(), "b".into()]);
        let mut h = HeaderMap::new();
        assert_eq!(OrgId::resolve(&h, true, &scope).tenant().unwrap().as_str(), "a", "without a header: the first");
        h.insert("x-scope-orgid", axum::http::HeaderValue::from_static("b|a"));
        assert_eq!(OrgId::resolve(&h, true, &scope).tenants().unwrap(), vec!["a", "b"]);
        h.insert("x-scope-orgid", axum::http::HeaderValue::from_static("a|c"));
        let e = OrgId::resolve(&h, true, &scope).tenants().unwrap_err();
        assert_eq!((e.code, e.message.as_str()), ("permission_denied", "this credential may not access tenant \"c\""));
        assert_eq!(OrgId::resolve(&h, false, &scope).tenant().unwrap().as_str(), "anonymous");
    }
}
