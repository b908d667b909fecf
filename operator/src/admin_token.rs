//! The cluster's admin token. The data plane serves deletes, a writer's
//! drain and the metastore's membership only on its admin listener, behind
//! a bearer token; the operator creates that token once per cluster (a
//! random Secret it owns, so it goes with the cluster), mounts it into
//! every pod, and sends it on its own admin calls (drain, membership).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use phlox_crds::v1alpha1::PyroscopeCluster;

use crate::names::{ADMIN_TOKEN_KEY, Names};
use crate::{Error, Result};

/// The cluster's admin token, its Secret created if missing.
pub async fn ensure(client: &Client, cr: &PyroscopeCluster) -> Result<String> {
    let names = Names::of(cr)?;
    let api: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);
    let name = names.admin_token_secret();
    if let Some(secret) = api.get_opt(&name).await? {
        return token_of(&secret, &name);
    }
    let owner = cr.controller_owner_ref(&()).ok_or(Error::MissingField("metadata.uid"))?;
    let token = random_token()?;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(names.namespace.clone()),
            labels: Some(names.labels(None)),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(ADMIN_TOKEN_KEY.to_owned(), ByteString(token.clone().into_bytes()))])),
        ..Default::default()
    };
    match api
        .create(&PostParams { field_manager: Some(crate::names::FIELD_MANAGER.into()), ..Default::default() }, &secret)
        .await
    {
        Ok(_) => {
            tracing::info!(secret = %name, "created the cluster's admin token");
            Ok(token)
        }
        // Created meanwhile (another reconcile): that one is the token.
        Err(kube::Error::Api(e)) if e.code == 409 => token_of(&api.get(&name).await?, &name),
        Err(e) => Err(e.into()),
    }
}

fn token_of(secret: &Secret, name: &str) -> Result<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(ADMIN_TOKEN_KEY))
        .and_then(|t| String::from_utf8(t.0.clone()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::AdminToken(format!("Secret {name} has no `{ADMIN_TOKEN_KEY}`: delete it to get a new one"))
        })
}

/// 32 random bytes, hex.
fn random_token() -> Result<String> {
    use std::io::Read;
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| Error::AdminToken(format!("cannot read /dev/urandom for the admin token: {e}")))?;
    Ok(random.iter().map(|b| format!("{b:02x}")).collect())
}
