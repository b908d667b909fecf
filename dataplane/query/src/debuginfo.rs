//! Debug files by GNU build id (`debuginfo.v1alpha1.DebuginfoService`) and
//! the symbolizer that reads them: native frames that arrive as (mapping
//! build id, address) get function names, files and lines, inlined frames
//! included, at query time.
//!
//! ```text
//! ShouldInitiateUpload ─▶ debuginfo/<tenant>/<build id>/metadata.json   state uploading
//! POST …/Upload/<id>   ─▶ debuginfo/<tenant>/<build id>/debuginfo       streamed, size-limited, ELF checked
//! UploadFinished       ─▶ metadata.json                                 state uploaded, size
//! query: a dataset's symbols with line-less locations of a mapping with a build id
//!        ─▶ Symbolizer: the tenant's upload, else a debuginfod server's file (kept in
//!           debuginfo/_debuginfod/<build id>/debuginfo), parsed once and cached per
//!           tenant and build id; a missing one remembered for `retry_missing`
//!        ─▶ addr2line per distinct address → lines appended
//!        ─▶ still line-less: a frame named by its address (0x…)
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, TryStreamExt};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use phlox_block::{FunctionRow, Symbols};
use phlox_proto::debuginfo::v1alpha1 as d;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "debuginfo";
/// How long an upload may take before another client may start it again.
const UPLOAD_STALE: Duration = Duration::from_secs(15 * 60);
/// Parsed debug files kept per process, and their bytes in all.
const MAX_FILES: usize = 64;
const MAX_FILES_BYTES: usize = 1 << 30;
/// Resolved addresses kept per debug file.
const MAX_RESOLVED: usize = 1 << 20;
/// Largest file taken from a debuginfod server.
const MAX_DEBUGINFOD_BYTES: usize = 1 << 30;
/// Where files fetched from debuginfod are kept (shared by tenants: they
/// are public).
const DEBUGINFOD_CACHE: &str = "_debuginfod";

#[derive(Debug, thiserror::Error)]
pub enum DebugInfoError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Internal(String),
}

impl DebugInfoError {
    /// The Connect/gRPC code name of the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "invalid_argument",
            Self::NotFound(_) => "not_found",
            Self::TooLarge(_) => "resource_exhausted",
            Self::Internal(_) => "internal",
        }
    }
}

fn not_elf() -> DebugInfoError {
    DebugInfoError::InvalidArgument("the upload is not an ELF file".to_owned())
}

fn storage(e: object_store::Error) -> DebugInfoError {
    DebugInfoError::Internal(format!("bucket: {e}"))
}

/// A GNU build id: 2 to 128 hex digits (lower case as stored).
pub fn check_build_id(id: &str) -> Result<String, DebugInfoError> {
    if (2..=128).contains(&id.len()) && id.len().is_multiple_of(2) && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(DebugInfoError::InvalidArgument(format!(
            "invalid GNU build id {:?}: want an even number (2-128) of hex digits",
            id.chars().take(140).collect::<String>()
        )))
    }
}

fn file_path(tenant: &str, id: &str) -> Path {
    Path::from_iter([PREFIX, tenant, id, "debuginfo"])
}

fn meta_path(tenant: &str, id: &str) -> Path {
    Path::from_iter([PREFIX, tenant, id, "metadata.json"])
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// What is stored next to a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    name: String,
    go_build_id: String,
    otel_file_id: String,
    file_type: i32,
    uploaded: bool,
    started_at_ms: i64,
    finished_at_ms: i64,
    size_bytes: i64,
}

/// Per-tenant limits of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugInfoLimits {
    /// Largest file, bytes.
    pub max_file_bytes: u64,
    /// Most files a tenant keeps.
    pub max_files: usize,
}

/// The debug files of every tenant in the bucket.
#[derive(Debug, Clone)]
pub struct DebugInfoStore {
    store: Arc<dyn ObjectStore>,
}

impl DebugInfoStore {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    async fn meta(&self, tenant: &str, id: &str) -> Result<Option<Meta>, DebugInfoError> {
        match self.store.get(&meta_path(tenant, id)).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(storage)?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| DebugInfoError::Internal(format!("debug file {id}: metadata: {e}")))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    async fn put_meta(&self, tenant: &str, id: &str, meta: &Meta) -> Result<(), DebugInfoError> {
        let bytes = serde_json::to_vec(meta).map_err(|e| DebugInfoError::Internal(e.to_string()))?;
        self.store.put(&meta_path(tenant, id), PutPayload::from(bytes)).await.map_err(storage)?;
        Ok(())
    }

    /// Whether a client should upload `file`; when so, the upload is
    /// recorded as started.
    pub async fn should_initiate_upload(
        &self,
        tenant: &str,
        file: d::FileMetadata,
        limits: DebugInfoLimits,
    ) -> Result<d::ShouldInitiateUploadResponse, DebugInfoError> {
        let id = check_build_id(&file.gnu_build_id)?;
        let answer = |upload: bool, reason: &str| d::ShouldInitiateUploadResponse {
            should_initiate_upload: upload,
            reason: reason.to_owned(),
        };
        match self.meta(tenant, &id).await? {
            Some(m) if m.uploaded => return Ok(answer(false, "debuginfo already exists")),
            Some(m) if now_ms() - m.started_at_ms < UPLOAD_STALE.as_millis() as i64 => {
                return Ok(answer(false, "debuginfo upload already in progress"));
            }
            Some(_) => {}
            None => {
                let files = self.count(tenant).await?;
                if files >= limits.max_files {
                    return Err(DebugInfoError::TooLarge(format!(
                        "tenant has {files} debug files, the limit is {}",
                        limits.max_files
                    )));
                }
            }
        }
        let meta = Meta {
            name: file.name,
            go_build_id: file.go_build_id,
            otel_file_id: file.otel_file_id,
            file_type: file.r#type,
            uploaded: false,
            started_at_ms: now_ms(),
            finished_at_ms: 0,
            size_bytes: 0,
        };
        self.put_meta(tenant, &id, &meta).await?;
        Ok(answer(true, "debuginfo not found"))
    }

    /// Streams an ELF file to the bucket, at most `limits.max_file_bytes`;
    /// a body that is not an ELF file or is too large is refused and not kept
    /// (a file stored before under the id stays). An upload that was not
    /// initiated counts against `limits.max_files` here.
    pub async fn upload<S, E>(
        &self,
        tenant: &str,
        build_id: &str,
        body: S,
        limits: DebugInfoLimits,
    ) -> Result<u64, DebugInfoError>
    where
        S: Stream<Item = Result<bytes::Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let id = check_build_id(build_id)?;
        if self.meta(tenant, &id).await?.is_none() {
            let files = self.count(tenant).await?;
            if files >= limits.max_files {
                return Err(DebugInfoError::TooLarge(format!(
                    "tenant has {files} debug files, the limit is {}",
                    limits.max_files
                )));
            }
        }
        let upload = self.store.put_multipart(&file_path(tenant, &id)).await.map_err(storage)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
        let mut size = 0u64;
        let mut head: Vec<u8> = Vec::with_capacity(4);
        let mut body = std::pin::pin!(body);
        let failed = loop {
            let chunk = match body.next().await {
                None => break None,
                Some(Err(e)) => break Some(DebugInfoError::InvalidArgument(format!("reading the upload: {e}"))),
                Some(Ok(c)) => c,
            };
            size += chunk.len() as u64;
            if size > limits.max_file_bytes {
                break Some(DebugInfoError::TooLarge(format!(
                    "debug file larger than the tenant's limit of {} bytes",
                    limits.max_file_bytes
                )));
            }
            if head.len() < 4 {
                head.extend(chunk.iter().take(4 - head.len()));
                if !b"\x7fELF".starts_with(&head) {
                    break Some(not_elf());
                }
            }
            if let Err(e) = writer.wait_for_capacity(2).await {
                break Some(storage(e));
            }
            writer.write(&chunk);
        };
        let failed = failed.or_else(|| (head.len() < 4).then(not_elf));
        if let Some(e) = failed {
            writer.abort().await.map_err(storage)?;
            return Err(e);
        }
        writer.finish().await.map_err(storage)?;
        Ok(size)
    }

    /// Marks an upload complete.
    pub async fn upload_finished(&self, tenant: &str, build_id: &str) -> Result<(), DebugInfoError> {
        let id = check_build_id(build_id)?;
        let head = match self.store.head(&file_path(tenant, &id)).await {
            Ok(h) => h,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(DebugInfoError::NotFound(format!("no upload of debug file {id}")));
            }
            Err(e) => return Err(storage(e)),
        };
        let mut meta = self.meta(tenant, &id).await?.unwrap_or(Meta {
            name: String::new(),
            go_build_id: String::new(),
            otel_file_id: String::new(),
            file_type: 0,
            uploaded: false,
            started_at_ms: now_ms(),
            finished_at_ms: 0,
            size_bytes: 0,
        });
        meta.uploaded = true;
        meta.finished_at_ms = now_ms();
        meta.size_bytes = head.size as i64;
        self.put_meta(tenant, &id, &meta).await
    }

    /// The tenant's files (uploaded or being uploaded), from one listing.
    async fn count(&self, tenant: &str) -> Result<usize, DebugInfoError> {
        let prefix = Path::from_iter([PREFIX, tenant]);
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await.map_err(storage)?;
        Ok(objects.iter().filter(|o| o.location.filename() == Some("metadata.json")).count())
    }

    async fn list_meta(&self, tenant: &str) -> Result<Vec<(String, Meta)>, DebugInfoError> {
        let prefix = Path::from_iter([PREFIX, tenant]);
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await.map_err(storage)?;
        let mut out = Vec::new();
        for o in objects.iter().filter(|o| o.location.filename() == Some("metadata.json")) {
            let Some(id) = o.location.parts().nth(2) else { continue };
            if let Some(meta) = self.meta(tenant, id.as_ref()).await? {
                out.push((id.as_ref().to_owned(), meta));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    pub async fn list(&self, tenant: &str) -> Result<d::ListDebuginfoResponse, DebugInfoError> {
        let ts = |ms: i64| {
            (ms > 0)
                .then(|| d::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 })
        };
        let object = self
            .list_meta(tenant)
            .await?
            .into_iter()
            .map(|(id, m)| d::ObjectMetadata {
                file: Some(d::FileMetadata {
                    gnu_build_id: id,
                    go_build_id: m.go_build_id,
                    otel_file_id: m.otel_file_id,
                    name: m.name,
                    r#type: m.file_type,
                }),
                state: if m.uploaded {
                    d::object_metadata::State::Uploaded as i32
                } else {
                    d::object_metadata::State::Uploading as i32
                },
                started_at: ts(m.started_at_ms),
                finished_at: ts(m.finished_at_ms),
                size_bytes: m.size_bytes,
            })
            .collect();
        Ok(d::ListDebuginfoResponse { object })
    }

    pub async fn delete(&self, tenant: &str, build_id: &str) -> Result<(), DebugInfoError> {
        let id = check_build_id(build_id)?;
        for path in [meta_path(tenant, &id), file_path(tenant, &id)] {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(storage(e)),
            }
        }
        Ok(())
    }

    /// The file of a finished upload.
    async fn file(&self, tenant: &str, id: &str) -> Result<Option<bytes::Bytes>, DebugInfoError> {
        if !self.meta(tenant, id).await?.is_some_and(|m| m.uploaded) {
            return Ok(None);
        }
        match self.store.get(&file_path(tenant, id)).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(storage)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }
}

type Reader = gimli::EndianArcSlice<gimli::RunTimeEndian>;

/// One frame of a resolved address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub function: String,
    pub file: String,
    pub line: i64,
}

/// A parsed debug file: DWARF line and inline information, the loadable
/// segments (file offsets → addresses) and the symbol table (for code
/// without DWARF).
pub struct DebugFile {
    /// addr2line's context fills caches as it reads (not `Sync`).
    dwarf: Mutex<addr2line::Context<Reader>>,
    /// (file offset, size in the file, virtual address) of each PT_LOAD.
    segments: Vec<(u64, u64, u64)>,
    /// (address, size, name), sorted by address.
    symbols: Vec<(u64, u64, String)>,
    /// Frames of the addresses resolved so far (queries of many datasets
    /// resolve the same addresses).
    resolved: Mutex<HashMap<u64, Vec<Frame>>>,
    /// Bytes of the sections and symbols held.
    bytes: usize,
}

impl std::fmt::Debug for DebugFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugFile").field("segments", &self.segments).finish_non_exhaustive()
    }
}

impl DebugFile {
    /// Parses an ELF file (any DWARF version gimli reads; compressed sections too).
    pub fn parse(data: &[u8]) -> Result<Self, DebugInfoError> {
        let bad = |e: &dyn std::fmt::Display| DebugInfoError::InvalidArgument(format!("debug file: {e}"));
        let file = object::File::parse(data).map_err(|e| bad(&e))?;
        let endian = if file.is_little_endian() { gimli::RunTimeEndian::Little } else { gimli::RunTimeEndian::Big };
        let mut bytes = 0usize;
        let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
            let data = file
                .section_by_name(id.name())
                .and_then(|s| s.uncompressed_data().ok())
                .unwrap_or(std::borrow::Cow::Borrowed(&[]));
            bytes += data.len();
            Ok(gimli::EndianArcSlice::new(Arc::from(&*data), endian))
        };
        let dwarf = gimli::Dwarf::load(load).map_err(|e| bad(&e))?;
        let dwarf = addr2line::Context::from_dwarf(dwarf).map_err(|e| bad(&e))?;
        let segments = file
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, size, s.address())
            })
            .collect();
        let mut symbols: Vec<(u64, u64, String)> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.kind() == object::SymbolKind::Text && s.address() != 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_owned())))
            .collect();
        symbols.sort_by_key(|s| s.0);
        bytes += symbols.iter().map(|s| s.2.len() + 40).sum::<usize>();
        Ok(Self { dwarf: Mutex::new(dwarf), segments, symbols, resolved: Mutex::new(HashMap::new()), bytes })
    }

    /// The address in the file of a runtime address of a mapping loaded at
    /// `memory_start` from `file_offset`.
    pub fn file_address(&self, address: u64, memory_start: u64, file_offset: u64) -> u64 {
        let offset = address.wrapping_sub(memory_start).wrapping_add(file_offset);
        self.segments
            .iter()
            .find(|&&(o, size, _)| o <= offset && offset < o.saturating_add(size))
            .map_or(offset, |&(o, _, vaddr)| (offset - o).wrapping_add(vaddr))
    }

    /// The file address of a location's address in `mapping`: inside the
    /// mapping's range it is a runtime address (pprof from a process:
    /// [`DebugFile::file_address`]); outside it (the OpenTelemetry eBPF
    /// profiler sends addresses within the file, and mappings without a
    /// range) it is one already.
    pub fn address_of(&self, address: u64, mapping: &phlox_block::MappingRow) -> u64 {
        if mapping.memory_start <= address && address < mapping.memory_limit {
            self.file_address(address, mapping.memory_start, mapping.file_offset)
        } else {
            address
        }
    }

    /// The frames at a file address, innermost first; empty when unknown.
    pub fn frames(&self, address: u64) -> Vec<Frame> {
        if let Ok(resolved) = self.resolved.lock()
            && let Some(frames) = resolved.get(&address)
        {
            return frames.clone();
        }
        let frames = self.resolve(address);
        if let Ok(mut resolved) = self.resolved.lock() {
            if resolved.len() >= MAX_RESOLVED {
                resolved.clear();
            }
            resolved.insert(address, frames.clone());
        }
        frames
    }

    fn resolve(&self, address: u64) -> Vec<Frame> {
        let mut out = Vec::new();
        let dwarf = self.dwarf.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(mut frames) = dwarf.find_frames(address).skip_all_loads() {
            while let Ok(Some(f)) = frames.next() {
                let function =
                    f.function.as_ref().and_then(|n| n.demangle().ok().map(|s| s.into_owned())).unwrap_or_default();
                let (file, line) = f
                    .location
                    .map_or((String::new(), 0), |l| (l.file.unwrap_or("").to_owned(), i64::from(l.line.unwrap_or(0))));
                out.push(Frame { function, file, line });
            }
        }
        drop(dwarf);
        if out.iter().all(|f| f.function.is_empty()) {
            // No DWARF function: the symbol table's.
            let at = self.symbols.partition_point(|s| s.0 <= address);
            if let Some((start, size, name)) = at.checked_sub(1).map(|i| &self.symbols[i])
                && (address < start.saturating_add(*size) || *size == 0)
            {
                let name = addr2line::demangle_auto(std::borrow::Cow::Borrowed(name.as_str()), None).into_owned();
                match out.first_mut() {
                    Some(f) => f.function = name,
                    None => out.push(Frame { function: name, file: String::new(), line: 0 }),
                }
            }
        }
        out.retain(|f| !f.function.is_empty() || !f.file.is_empty());
        out
    }
}

/// A parsed file, or when none was found.
type Cached = Result<Arc<DebugFile>, Instant>;

/// Resolves native frames of datasets' symbols from uploaded debug files
/// and a debuginfod server.
#[derive(Debug)]
pub struct Symbolizer {
    store: DebugInfoStore,
    /// Parsed files by (tenant, build id); `Err(when)` = none found at `when`.
    files: Mutex<HashMap<(String, String), Cached>>,
    /// A debuginfod server's base URL and the client for it.
    debuginfod: Option<(String, reqwest::Client)>,
    retry_missing: Duration,
    /// Bumped by [`Symbolizer::forget`]: answers cached with build ids not
    /// found then look for them again at once.
    generation: std::sync::atomic::AtomicU64,
}

impl Symbolizer {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store: DebugInfoStore::new(store),
            files: Mutex::new(HashMap::new()),
            debuginfod: None,
            retry_missing: phlox_config::SymbolizerConfig::default().retry_missing,
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Forgets what is known of a build id's file (an upload finished or a
    /// file was deleted in this process).
    pub fn forget(&self, tenant: &str, build_id: &str) {
        if let Ok(mut files) = self.files.lock() {
            files.remove(&(tenant.to_owned(), build_id.to_ascii_lowercase()));
        }
        self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Changes whenever [`Symbolizer::forget`] is called.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fetches files not uploaded from a debuginfod server at `url`
    /// (`GET {url}/buildid/{id}/debuginfo`; empty: none).
    pub fn with_debuginfod(mut self, url: &str) -> Self {
        let url = url.trim_end_matches('/');
        self.debuginfod = (!url.is_empty()).then(|| {
            let client = reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap_or_default();
            (url.to_owned(), client)
        });
        self
    }

    /// How long a build id without a file is not looked up again.
    pub fn with_retry_missing(mut self, after: Duration) -> Self {
        self.retry_missing = after;
        self
    }

    /// How long answers with unresolved frames of a missing file are kept.
    pub fn retry_missing(&self) -> Duration {
        self.retry_missing
    }

    /// A debuginfod server's file: from the bucket's copy, else fetched
    /// (and kept there).
    async fn debuginfod(&self, id: &str) -> Result<Option<bytes::Bytes>, DebugInfoError> {
        let Some((url, client)) = &self.debuginfod else { return Ok(None) };
        let path = file_path(DEBUGINFOD_CACHE, id);
        match self.store.store.get(&path).await {
            Ok(r) => return Ok(Some(r.bytes().await.map_err(storage)?)),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(storage(e)),
        }
        let fail = |e: &dyn std::fmt::Display| DebugInfoError::Internal(format!("debuginfod {url}: {e}"));
        let mut response = client.get(format!("{url}/buildid/{id}/debuginfo")).send().await.map_err(|e| fail(&e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(fail(&response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(&e))? {
            if body.len() + chunk.len() > MAX_DEBUGINFOD_BYTES {
                return Err(fail(&format!("file {id} larger than {MAX_DEBUGINFOD_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        if !body.starts_with(b"\x7fELF") {
            return Err(fail(&format!("file {id} is not ELF")));
        }
        let body = bytes::Bytes::from(body);
        self.store.store.put(&path, PutPayload::from(body.clone())).await.map_err(storage)?;
        Ok(Some(body))
    }

    /// Whether a debug file of any of `build_ids` can be found now.
    pub async fn any_found(&self, tenant: &str, build_ids: &[String]) -> bool {
        for id in build_ids {
            if self.file(tenant, id).await.is_some() {
                return true;
            }
        }
        false
    }

    async fn file(&self, tenant: &str, id: &str) -> Option<Arc<DebugFile>> {
        let key = (tenant.to_owned(), id.to_owned());
        if let Ok(files) = self.files.lock() {
            match files.get(&key) {
                Some(Ok(f)) => return Some(Arc::clone(f)),
                Some(Err(when)) if when.elapsed() < self.retry_missing => return None,
                _ => {}
            }
        }
        let found = match self.store.file(tenant, id).await {
            Ok(None) => self.debuginfod(id).await,
            other => other,
        };
        let parsed = match found {
            Ok(Some(bytes)) => match tokio::task::spawn_blocking(move || DebugFile::parse(&bytes)).await {
                Ok(Ok(f)) => Some(Arc::new(f)),
                Ok(Err(e)) => {
                    tracing::warn!(tenant, build_id = id, error = %e, "debug file unreadable");
                    None
                }
                Err(_) => None,
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(tenant, build_id = id, error = %e, "debug file not read");
                None
            }
        };
        if let Ok(mut files) = self.files.lock() {
            let held: usize = files.values().filter_map(|f| f.as_ref().ok()).map(|f| f.bytes).sum();
            let adding = parsed.as_ref().map_or(0, |f| f.bytes);
            if files.len() >= MAX_FILES || held + adding > MAX_FILES_BYTES {
                files.clear();
            }
            files.insert(key, parsed.clone().ok_or_else(Instant::now));
        }
        parsed
    }

    /// `symbols` with every line-less location of a mapping with a build id
    /// resolved from its debug file where there is one, and every other
    /// line-less location named by its address (`0x…`); `None` when there
    /// are no line-less locations. The second value: the build ids that had
    /// no file (the answer changes once one is uploaded).
    pub async fn symbolize(&self, tenant: &str, symbols: &Symbols) -> Option<(Symbols, Vec<String>)> {
        let lineless: Vec<usize> = (0..symbols.location_lines.len())
            .filter(|&l| {
                symbols.location_lines[l].is_empty() && symbols.location_address.get(l).is_some_and(|&a| a != 0)
            })
            .collect();
        if lineless.is_empty() {
            return None;
        }
        let mut out = symbols.clone();
        let mut missing = Vec::new();
        let mut strings: HashMap<String, u32> = HashMap::new();
        let mut functions: HashMap<(u32, u32), u32> = HashMap::new();
        let mut by_build_id: HashMap<u32, Option<Arc<DebugFile>>> = HashMap::new();
        // One resolution per distinct (build id, address).
        let mut resolved: HashMap<(u32, u64), Vec<Frame>> = HashMap::new();
        for l in lineless {
            let address = symbols.location_address[l];
            let mapping = symbols.location_mapping.get(l).and_then(|&m| symbols.mappings.get(m as usize));
            let build_id = mapping.map_or(0, |m| m.build_id);
            let id = symbols.strings.get(build_id as usize).map_or("", String::as_str);
            let mut frames = Vec::new();
            if let (Some(m), Ok(id)) = (mapping, check_build_id(id)) {
                if let std::collections::hash_map::Entry::Vacant(e) = by_build_id.entry(build_id) {
                    let file = self.file(tenant, &id).await;
                    if file.is_none() {
                        missing.push(id.clone());
                    }
                    e.insert(file);
                }
                if let Some(Some(file)) = by_build_id.get(&build_id) {
                    frames = resolved
                        .entry((build_id, address))
                        .or_insert_with(|| file.frames(file.address_of(address, m)))
                        .clone();
                }
            }
            if frames.is_empty() {
                frames.push(Frame { function: format!("0x{address:x}"), file: String::new(), line: 0 });
            }
            let start = out.lines.len() as u32;
            for f in frames {
                let name = intern(&mut out.strings, &mut strings, f.function);
                let file = intern(&mut out.strings, &mut strings, f.file);
                let next = out.functions.len() as u32;
                let function = *functions.entry((name, file)).or_insert_with(|| {
                    out.functions.push(FunctionRow { name, system_name: name, filename: file, start_line: 0 });
                    next
                });
                out.lines.push((function, f.line));
            }
            out.location_lines[l] = start..out.lines.len() as u32;
        }
        Some((out, missing))
    }
}

fn intern(strings: &mut Vec<String>, ids: &mut HashMap<String, u32>, s: String) -> u32 {
    if let Some(&id) = ids.get(&s) {
        return id;
    }
    let id = strings.len() as u32;
    strings.push(s.clone());
    ids.insert(s, id);
    id
}

#[cfg(test)]
mod tests {
    use phlox_block::MappingRow;

    use super::*;

    #[test]
    fn build_ids_are_even_runs_of_hex_digits() {
        assert_eq!(check_build_id("ABcd01").unwrap(), "abcd01");
        for bad in ["", "a", "abc", "zz", "../x", &"a".repeat(130)] {
            assert!(matches!(check_build_id(bad), Err(DebugInfoError::InvalidArgument(_))), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn uploads_keep_to_the_tenants_limits_and_keep_nothing_refused() {
        let bucket: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let store = DebugInfoStore::new(Arc::clone(&bucket));
        let limits = DebugInfoLimits { max_file_bytes: 8, max_files: 1 };
        let file = |id: &str| d::FileMetadata { gnu_build_id: id.into(), ..Default::default() };
        assert!(store.should_initiate_upload("t", file("aa"), limits).await.unwrap().should_initiate_upload);
        // A second file over `max_files` (another tenant is not counted).
        let err = store.should_initiate_upload("t", file("bb"), limits).await.unwrap_err();
        assert!(matches!(err, DebugInfoError::TooLarge(_)), "{err}");
        assert!(store.should_initiate_upload("u", file("bb"), limits).await.unwrap().should_initiate_upload);
        let body = |b: &'static [u8]| futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b))]);
        let too_large = store.upload("t", "aa", body(b"\x7fELF12345"), limits).await.unwrap_err();
        assert!(matches!(too_large, DebugInfoError::TooLarge(_)), "{too_large}");
        let not_elf = store.upload("t", "aa", body(b"ELF?"), limits).await.unwrap_err();
        assert!(matches!(not_elf, DebugInfoError::InvalidArgument(_)), "{not_elf}");
        assert!(matches!(store.upload_finished("t", "aa").await, Err(DebugInfoError::NotFound(_))));
        assert_eq!(store.upload("t", "aa", body(b"\x7fELF1234"), limits).await.unwrap(), 8);
        store.upload_finished("t", "aa").await.unwrap();
        let listed = store.list("t").await.unwrap().object;
        assert_eq!((listed.len(), listed[0].size_bytes, listed[0].state), (1, 8, 1));
        assert!(store.list("u").await.unwrap().object.iter().all(|o| o.state == 0));
        // Uploading without initiating is held to `max_files` too.
        let err = store.upload("t", "cc", body(b"\x7fELF1234"), limits).await.unwrap_err();
        assert!(matches!(err, DebugInfoError::TooLarge(_)), "{err}");
    }

    #[test]
    fn a_file_that_is_not_elf_is_refused() {
        assert!(matches!(DebugFile::parse(b"not an ELF file"), Err(DebugInfoError::InvalidArgument(_))));
    }

    #[tokio::test]
    async fn frames_without_a_debug_file_are_named_by_address_and_their_build_ids_reported() {
        let s = Symbolizer::new(Arc::new(object_store::memory::InMemory::new()));
        // Location 0: main (has a line); 1: an address in a mapping with a
        // build id; 2: an address in a mapping without one.
        let symbols = Symbols {
            strings: vec![String::new(), "main".into(), "abcd".into()],
            functions: vec![FunctionRow { name: 1, system_name: 1, filename: 0, start_line: 0 }],
            mappings: vec![
                MappingRow { memory_start: 0, memory_limit: 0, file_offset: 0, filename: 0, build_id: 2, flags: 0 },
                MappingRow { memory_start: 0, memory_limit: 0, file_offset: 0, filename: 0, build_id: 0, flags: 0 },
            ],
            location_mapping: vec![0, 0, 1],
            location_address: vec![0x10, 0x1234, 0xbeef],
            location_lines: vec![0..1, 1..1, 1..1],
            lines: vec![(0, 3)],
            stack_parent: vec![0],
            stack_location: vec![0],
        };
        let (out, missing) = s.symbolize("t", &symbols).await.unwrap();
        assert_eq!(missing, vec!["abcd".to_owned()]);
        let name = |l: usize| {
            let r = out.location_lines[l].clone();
            r.map(|i| out.strings[out.functions[out.lines[i as usize].0 as usize].name as usize].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            (name(0), name(1), name(2)),
            (vec!["main".to_owned()], vec!["0x1234".to_owned()], vec!["0xbeef".to_owned()])
        );
        // Nothing line-less: nothing to do.
        let mut named = symbols.clone();
        named.location_lines.truncate(1);
        named.location_address = vec![0x10];
        named.location_mapping = vec![0];
        assert!(s.symbolize("t", &named).await.is_none());
    }
}
