//! Segment-writer membership: who heartbeated, where, and when.

use std::collections::BTreeMap;

use phlox_proto::metastore::v1::SegmentWriterMember;
use serde::{Deserialize, Serialize};

use super::{InvalidRequest, Response};

/// A member that has not heartbeated for this long (by the proposers'
/// clocks) is dropped at the next heartbeat of any member. Callers that need
/// a fresher view filter on [`Member::last_heartbeat_ms`].
pub const MEMBER_EXPIRY_MS: i64 = 10 * 60 * 1000;

/// A segment writer as the metastore knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Member id (stable per writer).
    pub id: String,
    /// Its gRPC address.
    pub address: String,
    /// Unix ms of its last heartbeat, as the leader saw it.
    pub last_heartbeat_ms: i64,
    /// Leaving the placement (distributors stop routing to it).
    #[serde(default)]
    pub draining: bool,
}

impl From<Member> for SegmentWriterMember {
    fn from(m: Member) -> Self {
        SegmentWriterMember { id: m.id, address: m.address, last_heartbeat: m.last_heartbeat_ms, draining: m.draining }
    }
}

/// Members by id.
pub(crate) type Members = BTreeMap<String, Member>;

pub(crate) fn validate_heartbeat(id: &str) -> Result<(), InvalidRequest> {
    if id.is_empty() { Err(InvalidRequest::MissingMember) } else { Ok(()) }
}

/// Records a heartbeat, expires silent members and answers the membership.
pub(crate) fn apply_heartbeat(
    members: &mut Members,
    id: String,
    address: String,
    now_ms: i64,
    draining: bool,
) -> Response {
    if let Err(e) = validate_heartbeat(&id) {
        return Response::Rejected(e);
    }
    members.insert(id.clone(), Member { id, address, last_heartbeat_ms: now_ms, draining });
    let cutoff = now_ms.saturating_sub(MEMBER_EXPIRY_MS);
    members.retain(|_, m| m.last_heartbeat_ms >= cutoff);
    Response::Members(members.values().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(response: &Response) -> Vec<&str> {
        match response {
            Response::Members(ms) => ms.iter().map(|m| m.id.as_str()).collect(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn heartbeats_update_members_and_expire_silent_ones() {
        let mut members = Members::new();
        apply_heartbeat(&mut members, "b".into(), "b:1".into(), 0, false);
        let r = apply_heartbeat(&mut members, "a".into(), "a:1".into(), 10, false);
        assert_eq!(ids(&r), vec!["a", "b"]);
        let r = apply_heartbeat(&mut members, "a".into(), "a:2".into(), MEMBER_EXPIRY_MS + 5, false);
        assert_eq!(ids(&r), vec!["a"]);
        assert_eq!(members["a"].address, "a:2");
        assert_eq!(members["a"].last_heartbeat_ms, MEMBER_EXPIRY_MS + 5);
        assert_eq!(
            apply_heartbeat(&mut members, String::new(), "x".into(), 1, false),
            Response::Rejected(InvalidRequest::MissingMember)
        );
    }
}
