//! `/metastore/membership` on a process that runs a metastore voter: the
//! Raft membership as this voter sees it (`GET`), and the voter change the
//! operator orchestrates (`POST {"voters": {"<id>": "<host:port>"}}` on the
//! leader: new voters join as learners, catch up, then vote; voters left
//! out stop voting). A follower answers 409 naming the leader.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use phlox_metastore::{MetastoreError, MetastoreNode};
use serde::Deserialize;
use serde_json::json;

/// How long new voters get to catch up with the leader's log.
const CATCH_UP: Duration = Duration::from_secs(60);

/// The body of a change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangeVoters {
    voters: BTreeMap<u64, String>,
}

pub(crate) async fn get(State(node): State<Arc<MetastoreNode>>) -> Response {
    Json(node.membership()).into_response()
}

pub(crate) async fn change(
    State(node): State<Arc<MetastoreNode>>,
    body: Result<Json<ChangeVoters>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(change) = match body {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, Json(json!({"error": e.body_text()}))).into_response(),
    };
    match node.change_voters(change.voters, CATCH_UP).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => {
            let status = match &e {
                MetastoreError::NotLeader { .. } => StatusCode::CONFLICT,
                MetastoreError::InvalidMembership(_) => StatusCode::BAD_REQUEST,
                MetastoreError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            let leader = match &e {
                MetastoreError::NotLeader { leader } => *leader,
                _ => node.membership().leader,
            };
            (status, Json(json!({"error": e.to_string(), "leader": leader}))).into_response()
        }
    }
}
