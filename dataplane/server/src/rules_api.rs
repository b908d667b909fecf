//! `settings.v1.RecordingRulesService` on the public port: Connect (binary
//! proto and protobuf-JSON, as Grafana calls it) and gRPC / gRPC-Web on the
//! same paths. Rules are per tenant (`X-Scope-OrgID`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use phlox_model::TenantId;
use phlox_proto::settings::v1 as s;
use phlox_proto::settings::v1::recording_rules_service_server::{RecordingRulesService, RecordingRulesServiceServer};
use phlox_recording::{RuleStore, StoreError};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response as GrpcResponse, Status};
use tonic_web::{GrpcWebLayer, GrpcWebService};
use tower::Layer;

use crate::connect::{self, Codec, ConnectError, decode, respond};
use crate::http::{HttpState, tenant};

/// The rules API: the store and each tenant's `max_recording_rules`.
#[derive(Debug)]
pub(crate) struct RulesApi {
    pub(crate) store: Arc<RuleStore>,
    pub(crate) default_max: usize,
    pub(crate) max_by_tenant: BTreeMap<String, usize>,
}

impl RulesApi {
    fn max_rules(&self, tenant: &str) -> usize {
        self.max_by_tenant.get(tenant).copied().unwrap_or(self.default_max)
    }

    async fn call(&self, tenant: &str, method: &str, c: Codec, body: &[u8]) -> Result<Response, Response> {
        let store = &self.store;
        let r = match method {
            "GetRecordingRule" => {
                let req: s::GetRecordingRuleRequest = decode(c, body)?;
                store
                    .get(tenant, &req.id)
                    .await
                    .map(|rule| respond(c, &s::GetRecordingRuleResponse { rule: Some(rule) }))
            }
            "ListRecordingRules" => {
                let _: s::ListRecordingRulesRequest = decode(c, body)?;
                store.list(tenant).await.map(|rules| respond(c, &s::ListRecordingRulesResponse { rules }))
            }
            "UpsertRecordingRule" => {
                let req: s::UpsertRecordingRuleRequest = decode(c, body)?;
                store
                    .upsert(tenant, req, self.max_rules(tenant))
                    .await
                    .map(|rule| respond(c, &s::UpsertRecordingRuleResponse { rule: Some(rule) }))
            }
            "DeleteRecordingRule" => {
                let req: s::DeleteRecordingRuleRequest = decode(c, body)?;
                store.delete(tenant, &req.id).await.map(|()| respond(c, &s::DeleteRecordingRuleResponse {}))
            }
            other => {
                return Err(ConnectError::new(
                    "unimplemented",
                    format!("settings.v1.RecordingRulesService/{other} does not exist"),
                )
                .into_response());
            }
        };
        r.map_err(|e| store_error(&e).into_response())
    }
}

fn store_error(e: &StoreError) -> ConnectError {
    if e.code() == "internal" {
        tracing::warn!(error = %e, "recording rules");
    }
    ConnectError::new(e.code(), e.to_string())
}

/// `POST /settings.v1.RecordingRulesService/{method}`.
pub(crate) async fn rules(
    State(st): State<Arc<HttpState>>,
    Path(method): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let headers = request.headers().clone();
    let Some(api) = st.rules.as_ref() else {
        return ConnectError::new("unimplemented", "this process does not serve recording rules").into_response();
    };
    let tenant = match tenant(&headers, st.multitenancy) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/grpc")
        && let Some(grpc) = st.grpc_rules.clone()
    {
        return crate::http::call_grpc(grpc, request, tenant).await;
    }
    let (codec, body) = match connect::unary_request(&headers, request.into_body(), 1 << 20, "invalid_argument").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match api.call(tenant.as_str(), &method, codec, &body).await {
        Ok(r) | Err(r) => r,
    }
}

/// The gRPC form of the same API.
pub(crate) struct GrpcRules {
    api: Arc<RulesApi>,
}

fn grpc_tenant<T>(r: &Request<T>) -> Result<String, Status> {
    r.extensions().get::<TenantId>().map(|t| t.as_str().to_owned()).ok_or_else(|| Status::unauthenticated("no org id"))
}

fn status(e: &StoreError) -> Status {
    store_error(e).into_status()
}

#[tonic::async_trait]
impl RecordingRulesService for GrpcRules {
    async fn get_recording_rule(
        &self,
        r: Request<s::GetRecordingRuleRequest>,
    ) -> Result<GrpcResponse<s::GetRecordingRuleResponse>, Status> {
        let t = grpc_tenant(&r)?;
        let rule = self.api.store.get(&t, &r.into_inner().id).await.map_err(|e| status(&e))?;
        Ok(GrpcResponse::new(s::GetRecordingRuleResponse { rule: Some(rule) }))
    }
    async fn list_recording_rules(
        &self,
        r: Request<s::ListRecordingRulesRequest>,
    ) -> Result<GrpcResponse<s::ListRecordingRulesResponse>, Status> {
        let t = grpc_tenant(&r)?;
        let rules = self.api.store.list(&t).await.map_err(|e| status(&e))?;
        Ok(GrpcResponse::new(s::ListRecordingRulesResponse { rules }))
    }
    async fn upsert_recording_rule(
        &self,
        r: Request<s::UpsertRecordingRuleRequest>,
    ) -> Result<GrpcResponse<s::UpsertRecordingRuleResponse>, Status> {
        let t = grpc_tenant(&r)?;
        let max = self.api.max_rules(&t);
        let rule = self.api.store.upsert(&t, r.into_inner(), max).await.map_err(|e| status(&e))?;
        Ok(GrpcResponse::new(s::UpsertRecordingRuleResponse { rule: Some(rule) }))
    }
    async fn delete_recording_rule(
        &self,
        r: Request<s::DeleteRecordingRuleRequest>,
    ) -> Result<GrpcResponse<s::DeleteRecordingRuleResponse>, Status> {
        let t = grpc_tenant(&r)?;
        self.api.store.delete(&t, &r.into_inner().id).await.map_err(|e| status(&e))?;
        Ok(GrpcResponse::new(s::DeleteRecordingRuleResponse {}))
    }
}

pub(crate) type GrpcRulesService = GrpcWebService<RecordingRulesServiceServer<GrpcRules>>;

pub(crate) fn service(api: Arc<RulesApi>) -> GrpcRulesService {
    let server = RecordingRulesServiceServer::new(GrpcRules { api })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip);
    GrpcWebLayer::new().layer(server)
}

/// Re-reads the provisioned rules from the configuration every 10 s (a
/// ConfigMap update on Kubernetes), so rules kept in Git apply without a
/// restart. A configuration that fails keeps the current rules.
pub(crate) fn spawn_provisioned_reload(store: Arc<RuleStore>, load: crate::app::ConfigLoader) {
    tokio::spawn(async move {
        let mut current = load().ok().map(|c| c.recording_rules.rules);
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            let next = match load() {
                Ok(c) => c.recording_rules.rules,
                Err(e) => {
                    tracing::warn!(error = %e, "config reload failed; keeping the current recording rules");
                    continue;
                }
            };
            if current.as_ref() == Some(&next) {
                continue;
            }
            for e in store.set_provisioned(&crate::app::provisioned_rules_of(&next)) {
                tracing::error!(error = %e, "recording_rules.rules: this rule is left out");
            }
            tracing::info!(tenants = next.len(), "provisioned recording rules reloaded");
            current = Some(next);
        }
    });
}

/// `POST /settings.v1.SettingsService/{Get,Set,Delete}` (Connect): the
/// tenant's key/value settings.
pub(crate) async fn settings(
    State(st): State<Arc<HttpState>>,
    Path(method): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let headers = request.headers().clone();
    let Some(store) = st.settings.as_ref() else {
        return ConnectError::new("unimplemented", "this process does not serve settings").into_response();
    };
    let tenant = match tenant(&headers, st.multitenancy) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let (codec, body) = match connect::unary_request(&headers, request.into_body(), 1 << 20, "invalid_argument").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let tenant = tenant.as_str();
    let now_ms = crate::http::now_ms();
    let result = match method.as_str() {
        "Get" => match decode::<s::GetSettingsRequest>(codec, &body) {
            Ok(_) => store.get(tenant).await.map(|settings| respond(codec, &s::GetSettingsResponse { settings })),
            Err(r) => return r,
        },
        "Set" => match decode::<s::SetSettingsRequest>(codec, &body) {
            Ok(req) => match req.setting {
                Some(setting) => store
                    .set(tenant, setting, now_ms)
                    .await
                    .map(|setting| respond(codec, &s::SetSettingsResponse { setting: Some(setting) })),
                None => return ConnectError::invalid_argument("setting is missing").into_response(),
            },
            Err(r) => return r,
        },
        "Delete" => match decode::<s::DeleteSettingsRequest>(codec, &body) {
            Ok(req) => store.delete(tenant, &req.name).await.map(|()| respond(codec, &s::DeleteSettingsResponse {})),
            Err(r) => return r,
        },
        other => {
            return ConnectError::new("unimplemented", format!("settings.v1.SettingsService/{other} does not exist"))
                .into_response();
        }
    };
    result.unwrap_or_else(|e| {
        if e.code() == "internal" {
            tracing::warn!(error = %e, "settings");
        }
        ConnectError::new(e.code(), e.to_string()).into_response()
    })
}
