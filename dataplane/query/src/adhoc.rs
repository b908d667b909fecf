//! Ad hoc profiles (`adhocprofiles.v1.AdHocProfileService`): single
//! profiles uploaded from a file (Grafana's "ad hoc" view), kept per tenant
//! in the bucket and shown as flamebearer profiles without being ingested.
//!
//! An upload carries the file in base64: a pprof profile (gzipped or not)
//! or collapsed stacks (`a;b;c 12` per line). The file is stored as sent
//! (decoded) at `adhoc/<tenant>/<ulid>.profile`, then its name and upload
//! time at `adhoc/<tenant>/<ulid>.meta.json`, which List reads alone; every
//! Get parses the file again (uploads are rare, and the stored form stays
//! the file).

use std::sync::Arc;

use base64::Engine as _;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use phlox_block::paths::{ADHOC_META_SUFFIX, ADHOC_PREFIX, adhoc_file_path, adhoc_meta_path};
use phlox_model::StackTree;
use phlox_pprof::Profile;
use phlox_proto::adhocprofiles::v1 as a;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Why an ad hoc profiles call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdHocError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Internal(String),
}

impl AdHocError {
    /// The Connect/gRPC code name of the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "invalid_argument",
            Self::NotFound(_) => "not_found",
            Self::Internal(_) => "internal",
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Largest file an upload may carry once decoded (and gunzipped).
pub const MAX_PROFILE_BYTES: usize = 64 << 20;
/// Frames kept per stack (the root-most, as ingest keeps them with its
/// default `max_profile_stacktrace_depth`).
const MAX_DEPTH: usize = 1000;
/// Most call tree nodes a file may make (bounds the memory of a parse).
const MAX_TREE_NODES: usize = 1 << 20;
/// Frames all samples of a file may expand to (work bound: a file of many
/// samples with deep stacks of inlined lines).
const MAX_EXPANDED_FRAMES: usize = 1 << 26;

fn too_many_nodes() -> AdHocError {
    bad(format!("profile has more than {MAX_TREE_NODES} distinct call tree nodes"))
}

/// The stored metadata of an upload.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    name: String,
    /// Unix ms.
    uploaded_at: i64,
}

/// The service: a bucket and the flame graph node limits of queries.
pub struct AdHocProfiles {
    store: Arc<dyn ObjectStore>,
    limits: crate::QueryLimits,
    /// Monotonic ids, so uploads of one millisecond list in upload order.
    ids: std::sync::Mutex<ulid::Generator>,
}

/// One sample type of a parsed file and its call tree.
#[derive(Debug)]
struct Typed {
    name: String,
    unit: String,
    tree: StackTree,
}

fn bad(message: impl Into<String>) -> AdHocError {
    AdHocError::InvalidArgument(message.into())
}

/// The file of an upload request (base64).
fn decode_base64(data: &str) -> Result<Vec<u8>, AdHocError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| bad(format!("profile is not base64: {e}")))?;
    if raw.len() > MAX_PROFILE_BYTES {
        return Err(bad(format!("profile is {} bytes, more than the limit of {MAX_PROFILE_BYTES}", raw.len())));
    }
    Ok(raw)
}

/// Parses an uploaded file into one call tree per sample type.
/// [`parse`] on a blocking thread: decoding a large file is CPU work that
/// must not hold the threads answering health checks.
async fn parse_off_runtime(raw: bytes::Bytes) -> Result<Vec<Typed>, AdHocError> {
    tokio::task::spawn_blocking(move || parse(&raw))
        .await
        .map_err(|e| AdHocError::Internal(format!("parsing failed: {e}")))?
}

fn parse(raw: &[u8]) -> Result<Vec<Typed>, AdHocError> {
    let raw = phlox_pprof::maybe_gunzip(raw, MAX_PROFILE_BYTES)
        .map_err(|e| bad(format!("profile does not gunzip (limit {MAX_PROFILE_BYTES} bytes): {e}")))?;
    let pprof_error = match Profile::decode(&raw).and_then(|p| p.validate().map(|()| p)) {
        Ok(p) if !p.sample_types.is_empty() => return pprof_trees(&p),
        Ok(_) => "it has no sample types".to_owned(),
        Err(e) => e.to_string(),
    };
    collapsed_tree(&raw).unwrap_or_else(|| {
        Err(bad(format!("profile is neither pprof ({pprof_error}) nor collapsed stacks (`a;b;c 12` per line)")))
    })
}

/// One tree per sample type of a pprof profile.
fn pprof_trees(p: &Profile) -> Result<Vec<Typed>, AdHocError> {
    let mut out: Vec<Typed> = p
        .sample_types
        .iter()
        .map(|t| Typed {
            name: p.strings.str(t.r#type).to_owned(),
            unit: p.strings.str(t.unit).to_owned(),
            tree: StackTree::default(),
        })
        .collect();
    // The frames of each location (outermost first), borrowed from the
    // string table (a long name used by many lines is not copied per line).
    let location_frames: Vec<Vec<std::borrow::Cow<'_, str>>> = p
        .locations
        .iter()
        .map(|loc| {
            let lines = p.lines.get(loc.lines.start as usize..loc.lines.end as usize).unwrap_or(&[]);
            if lines.is_empty() {
                return vec![format!("0x{:x}", loc.address).into()];
            }
            lines
                .iter()
                .rev()
                .map(|line| {
                    let name = p.function(line.function_id).map(|f| p.strings.str(f.name)).unwrap_or("");
                    if name.is_empty() { format!("0x{:x}", loc.address).into() } else { name.into() }
                })
                .collect()
        })
        .collect();
    let mut frames: Vec<&str> = Vec::new();
    let mut expanded = 0usize;
    for i in 0..p.sample_count() {
        frames.clear();
        // Root first (locations are leaf first), at most MAX_DEPTH frames:
        // inlined lines beyond it are never expanded.
        for &loc_id in p.sample_location_ids(i).iter().rev() {
            let room = MAX_DEPTH - frames.len();
            if room == 0 {
                break;
            }
            if let Some(pos) = p.location_position(loc_id) {
                frames.extend(location_frames[pos].iter().take(room).map(|f| f.as_ref()));
            }
        }
        expanded += frames.len();
        if expanded > MAX_EXPANDED_FRAMES {
            return Err(bad(format!("profile expands to more than {MAX_EXPANDED_FRAMES} frames")));
        }
        for (t, typed) in out.iter_mut().enumerate() {
            let v = p.sample_value(i, t);
            if v != 0 {
                typed.tree.add_stack(frames.iter().copied(), v);
                if typed.tree.node_count() > MAX_TREE_NODES {
                    return Err(too_many_nodes());
                }
            }
        }
    }
    Ok(out)
}

/// Collapsed stacks: `frame;frame;frame value` per line, blank lines
/// skipped. `None` when any line is not of that form; an error when the
/// tree grows past [`MAX_TREE_NODES`].
fn collapsed_tree(raw: &[u8]) -> Option<Result<Vec<Typed>, AdHocError>> {
    let text = std::str::from_utf8(raw).ok()?;
    let mut tree = StackTree::default();
    let mut lines = 0;
    // Absolute sum, so no node's value can overflow.
    let mut sum = 0i64;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (stack, value) = line.rsplit_once(' ')?;
        let value: i64 = value.parse().ok()?;
        sum = sum.checked_add(value.checked_abs()?)?;
        if stack.trim().is_empty() {
            return None;
        }
        tree.add_stack(stack.trim().split(';').take(MAX_DEPTH), value);
        if tree.node_count() > MAX_TREE_NODES {
            return Some(Err(too_many_nodes()));
        }
        lines += 1;
    }
    (lines > 0).then(|| Ok(vec![Typed { name: "samples".into(), unit: "count".into(), tree }]))
}

/// The index of the wanted sample type (the first when none is asked for).
fn pick(types: &[Typed], wanted: Option<&str>) -> Result<usize, AdHocError> {
    match wanted.filter(|w| !w.is_empty()) {
        None => Ok(0),
        Some(w) => types.iter().position(|t| t.name == w).ok_or_else(|| {
            let known: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
            bad(format!("profile type {w:?} is not in the profile (it has {known:?})"))
        }),
    }
}

impl std::fmt::Debug for AdHocProfiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdHocProfiles").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl AdHocProfiles {
    pub fn new(store: Arc<dyn ObjectStore>, limits: crate::QueryLimits) -> Self {
        Self { store, limits, ids: std::sync::Mutex::new(ulid::Generator::new()) }
    }

    fn max_nodes(&self, requested: Option<i64>) -> Result<usize, AdHocError> {
        match requested {
            None | Some(0) => Ok(self.limits.max_flamegraph_nodes_default.max(1) as usize),
            Some(n) if n < 0 => Err(bad(format!("max_nodes {n} is negative"))),
            Some(n) if n > self.limits.max_flamegraph_nodes_max => {
                Err(bad(format!("max_nodes {n} exceeds the limit of {}", self.limits.max_flamegraph_nodes_max)))
            }
            Some(n) => Ok(n as usize),
        }
    }

    async fn get_object(&self, path: &object_store::path::Path, id: &str) -> Result<bytes::Bytes, AdHocError> {
        match self.store.get(path).await {
            Ok(r) => r.bytes().await.map_err(storage),
            Err(object_store::Error::NotFound { .. }) => Err(AdHocError::NotFound(format!("profile {id:?} not found"))),
            Err(e) => Err(storage(e)),
        }
    }

    fn id_of(id: &str) -> Result<Ulid, AdHocError> {
        Ulid::from_string(id).map_err(|_| AdHocError::NotFound(format!("profile {id:?} not found")))
    }

    async fn load_meta(&self, tenant: &str, id: &str) -> Result<Meta, AdHocError> {
        let bytes = self.get_object(&adhoc_meta_path(tenant, Self::id_of(id)?), id).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| AdHocError::Internal(format!("stored profile {id:?} is corrupt: {e}")))
    }

    /// An upload's metadata and file.
    async fn load(&self, tenant: &str, id: &str) -> Result<(Meta, bytes::Bytes), AdHocError> {
        let meta = self.load_meta(tenant, id).await?;
        let file = self.get_object(&adhoc_file_path(tenant, Self::id_of(id)?), id).await?;
        Ok((meta, file))
    }

    fn response(
        &self,
        id: String,
        meta: &Meta,
        types: &[Typed],
        profile_type: Option<&str>,
        max_nodes: Option<i64>,
    ) -> Result<a::AdHocProfilesGetResponse, AdHocError> {
        let i = pick(types, profile_type)?;
        let flame = crate::flamegraph(&types[i].tree, self.max_nodes(max_nodes)?);
        let fb = crate::flamebearer::flamebearer_single(
            &flame,
            &types[i].name,
            &types[i].unit,
            serde_json::Value::Null,
            serde_json::Value::Null,
        );
        Ok(a::AdHocProfilesGetResponse {
            id,
            name: meta.name.clone(),
            uploaded_at: meta.uploaded_at,
            profile_type: types[i].name.clone(),
            profile_types: types.iter().map(|t| t.name.clone()).collect(),
            flamebearer_profile: fb.to_string(),
        })
    }

    pub async fn get(
        &self,
        tenant: &str,
        r: a::AdHocProfilesGetRequest,
    ) -> Result<a::AdHocProfilesGetResponse, AdHocError> {
        let (meta, file) = self.load(tenant, &r.id).await?;
        self.response(r.id, &meta, &parse_off_runtime(file).await?, r.profile_type.as_deref(), r.max_nodes)
    }

    pub async fn upload(
        &self,
        tenant: &str,
        r: a::AdHocProfilesUploadRequest,
    ) -> Result<a::AdHocProfilesGetResponse, AdHocError> {
        let meta = Meta { name: r.name, uploaded_at: now_ms() };
        let id = match self.ids.lock().ok().and_then(|mut g| g.generate().ok()) {
            Some(id) => id,
            // A poisoned lock or a millisecond's ids used up: a random id.
            None => Ulid::new(),
        };
        // Parse first: a file that cannot be shown is not kept.
        let file = bytes::Bytes::from(decode_base64(&r.profile)?);
        let response =
            self.response(id.to_string(), &meta, &parse_off_runtime(file.clone()).await?, None, r.max_nodes)?;
        let meta_bytes = serde_json::to_vec(&meta).map_err(|e| AdHocError::Internal(e.to_string()))?;
        self.store.put(&adhoc_file_path(tenant, id), PutPayload::from(file)).await.map_err(storage)?;
        self.store.put(&adhoc_meta_path(tenant, id), PutPayload::from(meta_bytes)).await.map_err(storage)?;
        Ok(response)
    }

    pub async fn list(&self, tenant: &str) -> Result<a::AdHocProfilesListResponse, AdHocError> {
        let prefix = object_store::path::Path::from_iter([ADHOC_PREFIX, tenant]);
        let metas: Vec<_> = self.store.list(Some(&prefix)).try_collect().await.map_err(storage)?;
        let mut profiles = Vec::with_capacity(metas.len());
        for m in metas {
            let Some(id) = m.location.filename().and_then(|f| f.strip_suffix(ADHOC_META_SUFFIX)) else { continue };
            match self.load_meta(tenant, id).await {
                Ok(s) => profiles.push(a::AdHocProfilesProfileMetadata {
                    id: id.to_owned(),
                    name: s.name,
                    uploaded_at: s.uploaded_at,
                }),
                // Deleted between the list and the read.
                Err(AdHocError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        profiles.sort_by(|x, y| (x.uploaded_at, &x.id).cmp(&(y.uploaded_at, &y.id)));
        Ok(a::AdHocProfilesListResponse { profiles })
    }

    pub async fn diff(
        &self,
        tenant: &str,
        r: a::AdHocProfilesDiffRequest,
    ) -> Result<a::AdHocProfilesDiffResponse, AdHocError> {
        let (left, right) = futures::try_join!(self.load(tenant, &r.left_id), self.load(tenant, &r.right_id))?;
        let (left, right) = (parse_off_runtime(left.1).await?, parse_off_runtime(right.1).await?);
        // Only types both sides have can be compared.
        let common: Vec<String> =
            left.iter().filter(|l| right.iter().any(|r| r.name == l.name)).map(|l| l.name.clone()).collect();
        let name = match r.profile_type.as_deref().filter(|t| !t.is_empty()) {
            Some(t) if common.iter().any(|c| c == t) => t.to_owned(),
            Some(t) => return Err(bad(format!("profile type {t:?} is not in both profiles (common: {common:?})"))),
            None => common.first().cloned().ok_or_else(|| bad("the two profiles have no sample type in common"))?,
        };
        let (l, rt) = (&left[pick(&left, Some(&name))?], &right[pick(&right, Some(&name))?]);
        let d = phlox_model::diff_flamegraph(&l.tree, &rt.tree, self.max_nodes(r.max_nodes)?);
        let flame = phlox_proto::querier::v1::FlameGraphDiff {
            names: d.names,
            levels: d.levels.into_iter().map(|values| phlox_proto::querier::v1::Level { values }).collect(),
            total: d.left_ticks.wrapping_add(d.right_ticks),
            max_self: d.max_self,
            left_ticks: d.left_ticks,
            right_ticks: d.right_ticks,
        };
        Ok(a::AdHocProfilesDiffResponse {
            profile_types: common,
            flamebearer_profile: crate::flamebearer::flamebearer_double(&flame, &l.name, &l.unit).to_string(),
        })
    }
}

fn storage(e: object_store::Error) -> AdHocError {
    tracing::warn!(error = %e, "ad hoc profiles storage");
    AdHocError::Internal(format!("ad hoc profiles storage: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn flame_total(fb: &str) -> i64 {
        let v: serde_json::Value = serde_json::from_str(fb).unwrap_or_default();
        v["flamebearer"]["numTicks"].as_i64().unwrap_or(-1)
    }

    #[test]
    fn pprof_files_give_one_tree_per_sample_type() {
        let mut b = phlox_pprof::testkit::ProfileBuilder::new("samples", "count");
        b.add_sample_type("cpu", "nanoseconds");
        b.sample(&["main", "work"], &[3, 30], &[]);
        b.sample(&["main", "gc"], &[1, 10], &[]);
        let types = parse(&b.encode()).unwrap();
        let names: Vec<(&str, &str, i64)> =
            types.iter().map(|t| (t.name.as_str(), t.unit.as_str(), t.tree.total())).collect();
        assert_eq!(names, vec![("samples", "count", 4), ("cpu", "nanoseconds", 40)]);
        // Gzipped, the same.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &b.encode()).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(parse(&gz).unwrap()[1].tree.total(), 40);
    }

    #[test]
    fn collapsed_stacks_are_accepted_and_garbage_is_named() {
        let types = parse(b"main;work 7\n\nmain;gc 5\n").unwrap();
        assert_eq!((types[0].name.as_str(), types[0].tree.total()), ("samples", 12));
        let e = parse(b"not a profile").unwrap_err();
        assert!(e.to_string().contains("neither pprof"), "{e}");
        let e = parse(b"a 9223372036854775807\nb 1\n").unwrap_err();
        assert!(e.to_string().contains("neither pprof"), "overflowing values are refused: {e}");
        // Deep stacks keep their root-most frames; too many nodes is a 400.
        let deep = format!("{} 1\n", vec!["f"; 5_000].join(";"));
        assert_eq!(parse(deep.as_bytes()).unwrap()[0].tree.node_count(), MAX_DEPTH + 1);
        let wide: String = (0..MAX_TREE_NODES + 1).map(|i| format!("f{i} 1\n")).collect();
        let e = parse(wide.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("distinct call tree nodes"), "{e}");
        let e = decode_base64("%%%").unwrap_err();
        assert!(e.to_string().contains("not base64"), "{e}");
    }

    #[tokio::test]
    async fn uploads_are_kept_per_tenant_and_diffed() {
        let svc = AdHocProfiles::new(Arc::new(object_store::memory::InMemory::new()), crate::QueryLimits::default());
        let up = |name: &str, data: &[u8]| a::AdHocProfilesUploadRequest {
            name: name.into(),
            profile: b64(data),
            max_nodes: None,
        };
        let l = svc.upload("t", up("before.txt", b"main;work 7\nmain;gc 3\n")).await.unwrap();
        assert_eq!((l.profile_type.as_str(), flame_total(&l.flamebearer_profile)), ("samples", 10));
        let r = svc.upload("t", up("after.txt", b"main;work 2\nmain;gc 3\n")).await.unwrap();
        let listed = svc.list("t").await.unwrap().profiles;
        assert_eq!(listed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), vec!["before.txt", "after.txt"]);
        assert!(svc.list("other").await.unwrap().profiles.is_empty());
        let got = svc
            .get("t", a::AdHocProfilesGetRequest { id: l.id.clone(), profile_type: None, max_nodes: None })
            .await
            .unwrap();
        assert_eq!((got.name.as_str(), flame_total(&got.flamebearer_profile)), ("before.txt", 10));
        assert!(matches!(svc.load("other", &l.id).await.unwrap_err(), AdHocError::NotFound(_)));
        let d = svc
            .diff(
                "t",
                a::AdHocProfilesDiffRequest { left_id: l.id, right_id: r.id, profile_type: None, max_nodes: None },
            )
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&d.flamebearer_profile).unwrap();
        assert_eq!((v["leftTicks"].as_i64(), v["rightTicks"].as_i64()), (Some(10), Some(5)));
        assert_eq!(v["metadata"]["format"], "double");
    }
}
