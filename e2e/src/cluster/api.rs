//! An in-memory Kubernetes API that answers watches.
//!
//! kube-fake-client keeps the objects and answers get, list, create,
//! patch (server-side apply included), replace and delete, but not
//! `?watch=true`. [`Api`] puts a thin layer in front of it that:
//! - records every successful write as a watch event (ADDED, MODIFIED,
//!   DELETED) in one ordered log, writes being applied one at a time;
//! - stamps list answers with a resourceVersion of that log (`s<seq>`), so a
//!   watch started from a list misses nothing and repeats nothing;
//! - serves watches from the log (from a list's version, or from an
//!   object's resourceVersion when a watcher resumes), filtered by
//!   namespace, label selector and `metadata.name`/`metadata.namespace`
//!   field selectors, ending after `timeoutSeconds` as the API server does;
//! - garbage-collects: deleting an object deletes the objects whose owner
//!   references name it (background propagation), unless the delete asked
//!   for `propagationPolicy: Orphan` (their owner references are removed).
//!
//! What it does not do: admission, defaulting, validation beyond the
//! fake's, finalizers, bookmarks, or resourceVersion "too old" errors.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use serde_json::Value;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Where a request points: `/api/v1/namespaces/ns/pods/name/status` is the
/// collection `/api/v1/pods`, namespace `ns`, name `name`, subresource `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    collection: String,
    namespace: Option<String>,
    name: Option<String>,
}

impl Target {
    fn parse(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (prefix, rest) = match *parts.first()? {
            "api" => (format!("/api/{}", parts.get(1)?), &parts[2..]),
            "apis" => (format!("/apis/{}/{}", parts.get(1)?, parts.get(2)?), &parts[3..]),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some((*ns).to_owned()), tail),
            _ => (None, rest),
        };
        let resource = rest.first()?;
        Some(Self { collection: format!("{prefix}/{resource}"), namespace, name: rest.get(1).map(|s| (*s).to_owned()) })
    }
}

/// One recorded change.
#[derive(Debug, Clone)]
struct Event {
    seq: u64,
    collection: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Log {
    seq: u64,
    events: Vec<Event>,
    /// The seq of the event that produced each object resourceVersion.
    by_rv: HashMap<String, u64>,
    /// Every live object: (collection, namespace, name) → object.
    live: BTreeMap<(String, String, String), Value>,
}

fn meta_str<'a>(o: &'a Value, field: &str) -> &'a str {
    o["metadata"][field].as_str().unwrap_or_default()
}

impl Log {
    fn push(&mut self, collection: &str, kind: &'static str, object: Value) {
        self.seq += 1;
        let key =
            (collection.to_owned(), meta_str(&object, "namespace").to_owned(), meta_str(&object, "name").to_owned());
        if kind == "DELETED" {
            self.live.remove(&key);
        } else {
            self.live.insert(key, object.clone());
        }
        let rv = meta_str(&object, "resourceVersion").to_owned();
        if !rv.is_empty() {
            self.by_rv.insert(rv, self.seq);
        }
        self.events.push(Event { seq: self.seq, collection: collection.to_owned(), kind, object });
    }
}

/// The shared state of the layer.
struct Shared {
    fake: kube::Client,
    log: Mutex<Log>,
    /// Serializes writes (and list snapshots) so the log's order is the store's.
    writes: tokio::sync::Mutex<()>,
    changed: tokio::sync::watch::Sender<u64>,
}

/// A Kubernetes API in memory, watches included: [`Api::client`] is a
/// `kube::Client` that controllers, reflectors and `Api<K>` use unchanged.
#[derive(Clone)]
pub struct Api {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

impl Api {
    /// Wraps a kube-fake-client `Client` (built without initial objects:
    /// every object is created through this layer, so it is in the log).
    pub fn new(fake: kube::Client) -> Self {
        let (changed, _) = tokio::sync::watch::channel(0);
        Self { shared: Arc::new(Shared { fake, log: Mutex::new(Log::default()), writes: Default::default(), changed }) }
    }

    /// A client of this API.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    async fn handle(self, req: Request<kube::client::Body>) -> Result<Response<Body>, BoxError> {
        let query = params(req.uri().query().unwrap_or_default());
        let target = Target::parse(req.uri().path());
        if req.method() == Method::GET && matches!(query.get("watch").map(String::as_str), Some("true" | "1")) {
            let target = target.ok_or("a watch of an unknown path")?;
            return Ok(self.watch(target, query));
        }
        let method = req.method().clone();
        let list = method == Method::GET && target.as_ref().is_some_and(|t| t.name.is_none());
        if method == Method::GET && !list {
            return forward(&self.shared.fake, req).await;
        }
        // A DELETE's options (propagationPolicy) come in its body.
        let (req, orphan) = if method == Method::DELETE {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await?;
            let options: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let query = params(parts.uri.query().unwrap_or_default());
            let orphan = options["propagationPolicy"] == "Orphan"
                || query.get("propagationPolicy").is_some_and(|p| p == "Orphan");
            (Request::from_parts(parts, kube::client::Body::from(bytes.to_vec())), orphan)
        } else {
            (req, false)
        };
        let _one_at_a_time = self.shared.writes.lock().await;
        let response = self.shared.fake.send(req).await?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect_bytes().await?;
        if !parts.status.is_success() {
            return Ok(Response::from_parts(parts, full(bytes)));
        }
        let Some(target) = target else { return Ok(Response::from_parts(parts, full(bytes))) };
        if list {
            // The list's version is the log's: a watch from it starts right after.
            let mut v: Value = serde_json::from_slice(&bytes)?;
            let seq = self.shared.log.lock().map_err(|_| "log poisoned")?.seq;
            v["metadata"]["resourceVersion"] = Value::from(format!("s{seq}"));
            return Ok(Response::from_parts(parts, full(Bytes::from(serde_json::to_vec(&v)?))));
        }
        let object: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut deleted = None;
        {
            let mut log = self.shared.log.lock().map_err(|_| "log poisoned")?;
            let key = |o: &Value| {
                (target.collection.clone(), meta_str(o, "namespace").to_owned(), meta_str(o, "name").to_owned())
            };
            if method == Method::DELETE {
                let name = target.name.clone().unwrap_or_default();
                let k = (target.collection.clone(), target.namespace.clone().unwrap_or_default(), name);
                if let Some(last) = log.live.get(&k).cloned() {
                    log.push(&target.collection, "DELETED", last.clone());
                    deleted = Some(last);
                }
            } else if object.get("metadata").is_some() {
                let kind = if log.live.contains_key(&key(&object)) { "MODIFIED" } else { "ADDED" };
                log.push(&target.collection, kind, object.clone());
            }
            let seq = log.seq;
            self.shared.changed.send_replace(seq);
        }
        drop(_one_at_a_time);
        if let Some(owner) = deleted {
            self.collect_garbage(&owner, orphan).await?;
        } else if self.orphaned(&object) {
            // Written for an owner that is gone (a controller acting on a
            // cached owner): the garbage collector removes it, as a real
            // cluster's does.
            let path = object_path(&target.collection, meta_str(&object, "namespace"), meta_str(&object, "name"));
            if let Ok(request) = Request::delete(path).body(kube::client::Body::empty()) {
                let delete = tower::Service::call(&mut self.clone(), request);
                tokio::spawn(async move {
                    let _ = delete.await;
                });
            }
        }
        Ok(Response::from_parts(parts, full(bytes)))
    }

    /// Whether `object` has owners and none of them exists.
    fn orphaned(&self, object: &Value) -> bool {
        let Some(refs) = object["metadata"]["ownerReferences"].as_array().filter(|r| !r.is_empty()) else {
            return false;
        };
        let Ok(log) = self.shared.log.lock() else { return false };
        !refs.iter().any(|r| log.live.values().any(|o| o["metadata"]["uid"] == r["uid"]))
    }

    /// Deletes (or, for an orphaning delete, releases) every object owned by `owner`.
    async fn collect_garbage(&self, owner: &Value, orphan: bool) -> Result<(), BoxError> {
        let uid = meta_str(owner, "uid").to_owned();
        if uid.is_empty() {
            return Ok(());
        }
        let owned: Vec<(String, Value)> = {
            let log = self.shared.log.lock().map_err(|_| "log poisoned")?;
            log.live
                .iter()
                .filter(|(_, o)| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid.as_str())))
                })
                .map(|((c, _, _), o)| (c.clone(), o.clone()))
                .collect()
        };
        for (collection, o) in owned {
            let path = object_path(&collection, meta_str(&o, "namespace"), meta_str(&o, "name"));
            let request = if orphan {
                let refs: Vec<Value> = o["metadata"]["ownerReferences"]
                    .as_array()
                    .map(|r| r.iter().filter(|r| r["uid"].as_str() != Some(uid.as_str())).cloned().collect())
                    .unwrap_or_default();
                let patch = serde_json::json!({"metadata": {"ownerReferences": refs}});
                Request::patch(path)
                    .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
                    .body(kube::client::Body::from(serde_json::to_vec(&patch)?))?
            } else {
                Request::delete(path).body(kube::client::Body::empty())?
            };
            let response = Box::pin(self.clone().handle(request)).await?;
            if !response.status().is_success() && response.status() != StatusCode::NOT_FOUND {
                return Err(format!(
                    "garbage collection of {collection} {}: {}",
                    meta_str(&o, "name"),
                    response.status()
                )
                .into());
            }
        }
        Ok(())
    }

    /// A watch: the log's events after the requested version that match, as
    /// JSON lines, then the new ones as they come, until `timeoutSeconds`.
    fn watch(&self, target: Target, query: HashMap<String, String>) -> Response<Body> {
        let shared = Arc::clone(&self.shared);
        let from = {
            let log = shared.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match query.get("resourceVersion").map(String::as_str) {
                Some(v) if v.starts_with('s') => v[1..].parse().unwrap_or(log.seq),
                Some(v) if !v.is_empty() && v != "0" => log.by_rv.get(v).copied().unwrap_or(log.seq),
                _ => log.seq,
            }
        };
        let labels = query.get("labelSelector").map(|s| LabelSelector::parse(s)).unwrap_or_default();
        let fields = query.get("fieldSelector").cloned().unwrap_or_default();
        let timeout = query.get("timeoutSeconds").and_then(|s| s.parse().ok()).unwrap_or(290);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let changed = shared.changed.subscribe();
        let matches = move |e: &Event| {
            e.collection == target.collection
                && target.namespace.as_deref().is_none_or(|ns| meta_str(&e.object, "namespace") == ns)
                && labels.matches(&e.object["metadata"]["labels"])
                && fields_match(&fields, &e.object)
        };
        let stream = futures::stream::unfold((from, changed), move |(mut cursor, mut changed)| {
            let shared = Arc::clone(&shared);
            let matches = matches.clone();
            async move {
                loop {
                    let batch: Vec<u8> = {
                        let log = shared.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        let start = log.events.partition_point(|e| e.seq <= cursor);
                        let mut out = Vec::new();
                        for e in &log.events[start..] {
                            cursor = e.seq;
                            if matches(e) {
                                let line = serde_json::json!({"type": e.kind, "object": e.object});
                                out.extend(serde_json::to_vec(&line).unwrap_or_default());
                                out.push(b'\n');
                            }
                        }
                        out
                    };
                    if !batch.is_empty() {
                        let frame: Result<http_body::Frame<Bytes>, BoxError> =
                            Ok(http_body::Frame::data(Bytes::from(batch)));
                        return Some((frame, (cursor, changed)));
                    }
                    match tokio::time::timeout_at(deadline, changed.changed()).await {
                        Ok(Ok(())) => continue,
                        _ => return None,
                    }
                }
            }
        });
        let body = http_body_util::StreamBody::new(stream).boxed_unsync();
        let mut response = Response::new(body);
        response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        response
    }
}

impl tower::Service<Request<kube::client::Body>> for Api {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        Box::pin(self.clone().handle(req))
    }
}

fn full(bytes: Bytes) -> Body {
    http_body_util::Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
}

async fn forward(fake: &kube::Client, req: Request<kube::client::Body>) -> Result<Response<Body>, BoxError> {
    let (parts, body) = fake.send(req).await?.into_parts();
    Ok(Response::from_parts(parts, full(body.collect_bytes().await?)))
}

fn object_path(collection: &str, namespace: &str, name: &str) -> String {
    let (prefix, resource) = collection.rsplit_once('/').unwrap_or(("", collection));
    if namespace.is_empty() {
        format!("{prefix}/{resource}/{name}")
    } else {
        format!("{prefix}/namespaces/{namespace}/{resource}/{name}")
    }
}

fn params(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
            .flatten();
        match (hex, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An equality-based label selector (`a=b`, `a==b`, `a!=b`, `a`, `!a`).
#[derive(Debug, Clone, Default)]
struct LabelSelector(Vec<(String, Option<String>, bool)>);

impl LabelSelector {
    fn parse(s: &str) -> Self {
        let mut terms = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if let Some((k, v)) = term.split_once("!=") {
                terms.push((k.trim().to_owned(), Some(v.trim().to_owned()), false));
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                terms.push((k.trim().to_owned(), Some(v.trim().to_owned()), true));
            } else if let Some(k) = term.strip_prefix('!') {
                terms.push((k.trim().to_owned(), None, false));
            } else {
                terms.push((term.to_owned(), None, true));
            }
        }
        Self(terms)
    }

    fn matches(&self, labels: &Value) -> bool {
        self.0.iter().all(|(k, v, equal)| {
            let have = labels.get(k).and_then(Value::as_str);
            match (v, equal) {
                (Some(v), true) => have == Some(v.as_str()),
                (Some(v), false) => have != Some(v.as_str()),
                (None, true) => have.is_some(),
                (None, false) => have.is_none(),
            }
        })
    }
}

fn fields_match(selector: &str, object: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (field, value, equal) = match term.split_once("!=") {
            Some((f, v)) => (f, v, false),
            None => match term.split_once("==").or_else(|| term.split_once('=')) {
                Some((f, v)) => (f, v, true),
                None => return true,
            },
        };
        let have = match field {
            "metadata.name" => meta_str(object, "name"),
            "metadata.namespace" => meta_str(object, "namespace"),
            _ => return true,
        };
        (have == value) == equal
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_collection() {
        let t = Target::parse("/apis/apps/v1/namespaces/phlox/statefulsets/phlox-metastore/status").unwrap();
        assert_eq!(t.collection, "/apis/apps/v1/statefulsets");
        assert_eq!((t.namespace.as_deref(), t.name.as_deref()), (Some("phlox"), Some("phlox-metastore")));
        let t = Target::parse("/api/v1/pods").unwrap();
        assert_eq!((t.collection.as_str(), t.namespace, t.name), ("/api/v1/pods", None, None));
        let t = Target::parse("/api/v1/namespaces/phlox/pods").unwrap();
        assert_eq!((t.namespace.as_deref(), t.name), (Some("phlox"), None));
        assert_eq!(
            object_path("/apis/apps/v1/statefulsets", "phlox", "x"),
            "/apis/apps/v1/namespaces/phlox/statefulsets/x"
        );
    }

    #[test]
    fn selectors() {
        let s = LabelSelector::parse("app.kubernetes.io/managed-by=phlox-operator,tier!=db,!legacy");
        assert!(s.matches(&serde_json::json!({"app.kubernetes.io/managed-by": "phlox-operator"})));
        assert!(!s.matches(&serde_json::json!({"app.kubernetes.io/managed-by": "phlox-operator", "legacy": "1"})));
        assert!(!s.matches(&serde_json::json!({})));
        assert_eq!(
            decode("app.kubernetes.io%2Fmanaged-by%3Dphlox-operator"),
            "app.kubernetes.io/managed-by=phlox-operator"
        );
        let o = serde_json::json!({"metadata": {"name": "a", "namespace": "n"}});
        assert!(fields_match("metadata.name=a", &o) && !fields_match("metadata.name=b", &o));
    }
}
