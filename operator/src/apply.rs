//! Server-side apply of one child, skipped when nothing changed.
//!
//! Every child carries the hash of what the operator last applied. A child
//! whose hash matches and whose live fields still hold every desired value
//! is left alone: a reconcile with nothing changed issues no write. A child
//! edited by someone (`kubectl scale`, `kubectl edit`) is applied again, and
//! a missing one (deleted by someone) is recreated. An existing object of
//! the same name that this cluster does not own is reported, never taken over.

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
    if let Some(live) = &live {
        let owner = desired.owner_references().first().map(|o| o.uid.clone());
        if !live.owner_references().iter().any(|o| Some(&o.uid) == owner.as_ref()) {
            return Err(Error::NotOwned { kind: K::kind(&()).to_string(), name });
        }
        if live.annotations().get(DESIRED_HASH_ANNOTATION) == Some(&hash)
            && live.meta().deletion_timestamp.is_none()
            && holds(&serde_json::to_value(live)?, &serde_json::to_value(&desired)?)
        {
            return Ok((live.clone(), Outcome::Unchanged));
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api.patch(&name, &params, &Patch::Apply(&desired)).await?;
    Ok((applied, if live.is_some() { Outcome::Updated } else { Outcome::Created }))
}

/// Whether `live` holds every value of `desired`: objects field by field
/// (fields the API server or other controllers add are ignored), lists of
/// the same length element by element, scalars equal.
pub(crate) fn holds(live: &serde_json::Value, desired: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d.iter().all(|(k, dv)| l.get(k).is_some_and(|lv| holds(lv, dv))),
        (Value::Array(l), Value::Array(d)) => l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| holds(lv, dv)),
        _ => live == desired,
    }
}
