//! `settings.v1.RecordingRulesService` and `settings.v1.SettingsService`:
//! a tenant's recording rules (as Grafana's profiles app edits them) and
//! key/value settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use phlox_proto::settings::v1 as s;
use phlox_proto::settings::v1::recording_rules_service_server::{RecordingRulesService, RecordingRulesServiceServer};
use phlox_proto::settings::v1::settings_service_server::{SettingsService, SettingsServiceServer};
use phlox_proto::settings::v1::{RecordingRulesServiceConnect, SettingsServiceConnect};
use phlox_recording::{RuleStore, SettingsStoreClient};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::rpc::{self, Rpc};
use crate::context::{ApiError, OrgId, now_ms, status};

pub(crate) const RULES_SERVICE: &str = "settings.v1.RecordingRulesService";
pub(crate) const SETTINGS_SERVICE: &str = "settings.v1.SettingsService";

/// Largest request of either service.
const MAX_REQUEST: usize = 1 << 20;

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
}

#[tonic::async_trait]
impl RecordingRulesService for RulesApi {
    async fn get_recording_rule(
        &self,
        r: Request<s::GetRecordingRuleRequest>,
    ) -> Result<Response<s::GetRecordingRuleResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        let t = tenant.as_str();
        let rule = self.store.get(t, &r.into_inner().id).await.map_err(status)?;
        Ok(Response::new(s::GetRecordingRuleResponse { rule: Some(rule) }))
    }
    async fn list_recording_rules(
        &self,
        r: Request<s::ListRecordingRulesRequest>,
    ) -> Result<Response<s::ListRecordingRulesResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        let t = tenant.as_str();
        let rules = self.store.list(t).await.map_err(status)?;
        Ok(Response::new(s::ListRecordingRulesResponse { rules }))
    }
    async fn upsert_recording_rule(
        &self,
        r: Request<s::UpsertRecordingRuleRequest>,
    ) -> Result<Response<s::UpsertRecordingRuleResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        let t = tenant.as_str();
        let max = self.max_rules(t);
        let rule = self.store.upsert(t, r.into_inner(), max).await.map_err(status)?;
        Ok(Response::new(s::UpsertRecordingRuleResponse { rule: Some(rule) }))
    }
    async fn delete_recording_rule(
        &self,
        r: Request<s::DeleteRecordingRuleRequest>,
    ) -> Result<Response<s::DeleteRecordingRuleResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        let t = tenant.as_str();
        self.store.delete(t, &r.into_inner().id).await.map_err(status)?;
        Ok(Response::new(s::DeleteRecordingRuleResponse {}))
    }
}

pub(crate) fn rules_rpc(api: Arc<RulesApi>) -> Rpc {
    let server = RecordingRulesServiceServer::from_arc(Arc::clone(&api))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_REQUEST);
    Rpc::new(RecordingRulesServiceConnect::from_arc(api), rpc::grpc(server), MAX_REQUEST)
}

/// The tenant's key/value settings.
pub(crate) struct Settings {
    store: Arc<SettingsStoreClient>,
}

#[tonic::async_trait]
impl SettingsService for Settings {
    async fn get(&self, r: Request<s::GetSettingsRequest>) -> Result<Response<s::GetSettingsResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        let t = tenant.as_str();
        let settings = self.store.get(t).await.map_err(status)?;
        Ok(Response::new(s::GetSettingsResponse { settings }))
    }
    async fn set(&self, r: Request<s::SetSettingsRequest>) -> Result<Response<s::SetSettingsResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        let t = tenant.as_str();
        let setting = r.into_inner().setting.ok_or_else(|| status(ApiError::invalid_argument("setting is missing")))?;
        let setting = self.store.set(t, setting, now_ms()).await.map_err(status)?;
        Ok(Response::new(s::SetSettingsResponse { setting: Some(setting) }))
    }
    async fn delete(
        &self,
        r: Request<s::DeleteSettingsRequest>,
    ) -> Result<Response<s::DeleteSettingsResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        let t = tenant.as_str();
        self.store.delete(t, &r.into_inner().name).await.map_err(status)?;
        Ok(Response::new(s::DeleteSettingsResponse {}))
    }
}

pub(crate) fn settings_rpc(store: Arc<SettingsStoreClient>) -> Rpc {
    let settings = Arc::new(Settings { store });
    let server = SettingsServiceServer::from_arc(Arc::clone(&settings))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_REQUEST);
    Rpc::new(SettingsServiceConnect::from_arc(settings), rpc::grpc(server), MAX_REQUEST)
}
