//! Server-side apply of one child, skipped when nothing changed.
//!
//! Every child carries the hash of what the operator last applied. A child
//! whose hash matches is left alone: a reconcile with nothing changed
//! issues no write. A missing child (deleted by someone) is recreated.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::names::{DESIRED_HASH_ANNOTATION, FIELD_MANAGER};
use crate::{Error, Result};

/// What applying a child did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Created,
    Updated,
}

/// Hash of a desired object (before the hash annotation is added).
pub fn desired_hash<K: Serialize>(obj: &K) -> Result<String> {
    let bytes = serde_json::to_vec(obj)?;
    Ok(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)))
}

/// Applies `desired` unless the live object already has its hash. Returns
/// the live object (with its status) and what was done.
pub async fn apply<K>(client: &Client, namespace: &str, mut desired: K) -> Result<(K, Outcome)>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired.meta().name.clone().ok_or(Error::MissingField("child metadata.name"))?;
    let hash = desired_hash(&desired)?;
    desired.annotations_mut().insert(DESIRED_HASH_ANNOTATION.to_owned(), hash.clone());
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let live = api.get_opt(&name).await?;
    if let Some(live) = &live
        && live.annotations().get(DESIRED_HASH_ANNOTATION) == Some(&hash)
        && live.meta().deletion_timestamp.is_none()
    {
        return Ok((live.clone(), Outcome::Unchanged));
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api.patch(&name, &params, &Patch::Apply(&desired)).await?;
    Ok((applied, if live.is_some() { Outcome::Updated } else { Outcome::Created }))
}
