//! Reading objects with ranged GETs: the tail first (footer), then only the
//! sections a caller asks for.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::types::{Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use phlox_model::{Labels, ProfileId, ProfileKey};
use phlox_proto::metastore::v1::{BlockMeta, Dataset, Section, SectionKind};
use rustc_hash::FxHashSet;

use crate::format::{FORMAT_VERSION, TAIL_FETCH, TRAILER_LEN, decode_footer, parse_trailer};
use crate::sections as s;
use crate::{BlockError, Result};

/// An object in the bucket and its metadata.
#[derive(Debug, Clone)]
pub struct BlockReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    meta: BlockMeta,
}

impl BlockReader {
    /// Opens an object by reading its tail: one ranged GET in the common
    /// case, two when the footer is larger than [`TAIL_FETCH`].
    pub async fn open(store: Arc<dyn ObjectStore>, path: Path) -> Result<Self> {
        let opts = GetOptions { range: Some(GetRange::Suffix(TAIL_FETCH)), ..Default::default() };
        let res = store.get_opts(&path, opts).await?;
        let object_size = res.meta.size;
        let tail_start = res.range.start;
        let tail = res.bytes().await?;
        let p = path.to_string();
        let trailer = parse_trailer(&p, &tail)?;
        let footer_len = trailer.footer_len as u64;
        let needed = footer_len + TRAILER_LEN as u64;
        if needed > object_size {
            return Err(BlockError::Corrupt { path: p, reason: "footer longer than the object".into() });
        }
        let footer_start = object_size - needed;
        let footer = if footer_start >= tail_start {
            let from = (footer_start - tail_start) as usize;
            tail.slice(from..from + footer_len as usize)
        } else {
            store.get_range(&path, footer_start..footer_start + footer_len).await?
        };
        let mut meta = decode_footer(&p, &footer, trailer)?;
        if meta.size != object_size {
            return Err(BlockError::Corrupt {
                path: p,
                reason: format!("footer says {} bytes, object has {object_size}", meta.size),
            });
        }
        meta.size = object_size;
        Ok(Self { store, path, meta })
    }

    /// A reader from metadata the metastore already holds (no tail read).
    pub fn from_meta(store: Arc<dyn ObjectStore>, meta: BlockMeta) -> Result<Self> {
        let id = ulid::Ulid::from_string(&meta.id)
            .map_err(|_| BlockError::Corrupt { path: meta.id.clone(), reason: "block id is not a ULID".into() })?;
        let path = crate::paths::object_path(&meta.tenant, meta.shard, meta.compaction_level, id);
        if meta.format_version > FORMAT_VERSION {
            return Err(BlockError::UnsupportedVersion {
                path: path.to_string(),
                version: meta.format_version,
                max: FORMAT_VERSION,
            });
        }
        Ok(Self { store, path, meta })
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the series of tenant-index dataset `i` (see
    /// [`is_tenant_index`](crate::is_tenant_index)); their row ranges are empty.
    pub async fn tenant_index(&self, i: usize) -> Result<Vec<SeriesInfo>> {
        let reader = self.unopened(i)?;
        let bytes = reader.section(SectionKind::TenantIndex).await?;
        reader.decode_series(&bytes)
    }

    /// Opens dataset `i`: reads its series index section.
    pub async fn dataset(&self, i: usize) -> Result<DatasetReader> {
        let mut reader = self.unopened(i)?;
        let bytes = reader.section(SectionKind::Series).await?;
        reader.series = reader.decode_series(&bytes)?;
        Ok(reader)
    }

    fn unopened(&self, i: usize) -> Result<DatasetReader> {
        let ds =
            self.meta.datasets.get(i).cloned().ok_or_else(|| BlockError::Corrupt {
                path: self.path.to_string(),
                reason: format!("no dataset {i}"),
            })?;
        let reader = DatasetReader {
            store: Arc::clone(&self.store),
            path: self.path.clone(),
            size: self.meta.size,
            shadowed: ds
                .shadowed_keys
                .chunks_exact(16)
                .map(|c| {
                    let mut k = [0u8; 16];
                    k.copy_from_slice(c);
                    ProfileKey(k)
                })
                .collect(),
            series: Vec::new(),
            // Rows of pending deletions and rows a rollup answers are skipped alike.
            deleted: deleted_nanos(ds.deleted.iter().chain(&ds.covered)),
            negated: deleted_nanos(ds.negated.iter()),
            dataset: ds,
        };
        Ok(reader)
    }
}

/// Which profiles and samples a stack query counts (all when empty).
#[derive(Debug, Clone, Default)]
pub struct SampleFilter {
    pub profile_ids: Option<FxHashSet<ProfileId>>,
    /// Samples whose span id is in the set.
    pub span_ids: Option<FxHashSet<u64>>,
    /// Samples whose trace id is in the set.
    pub trace_ids: Option<FxHashSet<[u8; 16]>>,
}

/// Millisecond ranges (both ends inclusive) as nanosecond ranges.
fn deleted_nanos<'a>(ranges: impl Iterator<Item = &'a phlox_proto::metastore::v1::TimeRange>) -> Vec<(i64, i64)> {
    const NANOS_PER_MS: i64 = 1_000_000;
    ranges
        .map(|r| {
            (r.start.saturating_mul(NANOS_PER_MS), r.end.saturating_mul(NANOS_PER_MS).saturating_add(NANOS_PER_MS - 1))
        })
        .collect()
}

/// One series of a dataset with the range of its profile rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesInfo {
    pub labels: Labels,
    pub fingerprint: u64,
    pub rows: Range<u32>,
    pub min_time_nanos: i64,
    pub max_time_nanos: i64,
}

/// One stored profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRow {
    pub id: ProfileId,
    /// Index into [`DatasetReader::series`].
    pub series: u32,
    pub time_nanos: i64,
    pub total: i64,
    pub stack_ids: Vec<u32>,
    pub values: Vec<i64>,
    /// Per sample, when the profile has span ids (0 = none).
    pub span_ids: Option<Vec<u64>>,
    pub trace_ids: Option<Vec<[u8; 16]>>,
}

/// One stored profile row as [`DatasetReader::for_each_row`] hands it out:
/// borrowed from the decoded batch, stack ids refer to the dataset's
/// [`Symbols`].
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub id: ProfileId,
    /// Index into [`DatasetReader::series`] (checked to be in range).
    pub series: u32,
    pub time_nanos: i64,
    pub total: i64,
    pub stack_ids: &'a [u32],
    /// Parallel to `stack_ids`.
    pub values: &'a [i64],
    /// Per sample, when the profile has span ids (0 = none).
    pub span_ids: Option<&'a [u64]>,
    /// Per sample, 16 bytes each, present with `span_ids`.
    pub trace_ids: Option<&'a [u8]>,
}

/// A dataset of an object.
#[derive(Debug, Clone)]
pub struct DatasetReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    dataset: Dataset,
    series: Vec<SeriesInfo>,
    shadowed: FxHashSet<ProfileKey>,
    /// Nanosecond ranges (inclusive) of pending deletions: rows in them
    /// are skipped.
    deleted: Vec<(i64, i64)>,
    /// Nanosecond ranges (inclusive) whose rows stack sums subtract (a
    /// rollup's hour read whole, less what lies outside the query).
    negated: Vec<(i64, i64)>,
}

impl DatasetReader {
    /// Whether a row at `t` (ns) lies in a pending deletion's range.
    fn is_deleted(&self, t: i64) -> bool {
        self.deleted.iter().any(|&(s, e)| s <= t && t <= e)
    }

    fn is_negated(&self, t: i64) -> bool {
        self.negated.iter().any(|&(s, e)| s <= t && t <= e)
    }

    /// The object this dataset lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> &Dataset {
        &self.dataset
    }

    pub fn series(&self) -> &[SeriesInfo] {
        &self.series
    }

    fn find(&self, kind: SectionKind) -> Result<Section> {
        self.dataset.sections.iter().find(|s| s.kind == kind as i32).cloned().ok_or_else(|| BlockError::Corrupt {
            path: self.path.to_string(),
            reason: format!("dataset has no {} section", kind.as_str_name()),
        })
    }

    fn check(&self, sec: &Section) -> Result<Range<u64>> {
        let end = sec.offset.checked_add(sec.size).filter(|&e| e <= self.size).ok_or_else(|| BlockError::Corrupt {
            path: self.path.to_string(),
            reason: "section outside the object".into(),
        })?;
        Ok(sec.offset..end)
    }

    async fn section(&self, kind: SectionKind) -> Result<Bytes> {
        let sec = self.find(kind)?;
        let range = self.check(&sec)?;
        let bytes = self.store.get_range(&self.path, range).await?;
        self.verify(&sec, &bytes)?;
        Ok(bytes)
    }

    fn verify(&self, sec: &Section, bytes: &[u8]) -> Result<()> {
        if crc32fast::hash(bytes) != sec.crc32 || bytes.len() as u64 != sec.size {
            return Err(BlockError::Checksum {
                dataset: self.dataset.name.clone(),
                kind: SectionKind::try_from(sec.kind).map(|k| k.as_str_name()).unwrap_or("unknown"),
            });
        }
        Ok(())
    }

    fn corrupt(&self, reason: impl Into<String>) -> BlockError {
        BlockError::Corrupt { path: self.path.to_string(), reason: reason.into() }
    }

    fn decode_series(&self, bytes: &[u8]) -> Result<Vec<SeriesInfo>> {
        let mut out = Vec::new();
        for b in s::read_stream(bytes, &s::series_schema())? {
            let fp = s::col_u64(&b, "fingerprint")?;
            let names = s::col_list(&b, "label_names")?;
            let values = s::col_list(&b, "label_values")?;
            let name_strs = names
                .values()
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .ok_or_else(|| self.corrupt("label names"))?;
            let value_strs = values
                .values()
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .ok_or_else(|| self.corrupt("label values"))?;
            let first = s::col_u32(&b, "first_row")?;
            let count = s::col_u32(&b, "row_count")?;
            let min_t = s::col_i64(&b, "min_time_nanos")?;
            let max_t = s::col_i64(&b, "max_time_nanos")?;
            for i in 0..b.num_rows() {
                let (nr, vr) = (s::list_range(names, i), s::list_range(values, i));
                if nr != vr {
                    return Err(self.corrupt("label names and values differ in length"));
                }
                let labels = Labels::from_pairs(nr.map(|j| (name_strs.value(j), value_strs.value(j))));
                let start = first.value(i);
                let end = start.checked_add(count.value(i)).ok_or_else(|| self.corrupt("row range"))?;
                out.push(SeriesInfo {
                    labels,
                    fingerprint: fp.value(i),
                    rows: start..end,
                    min_time_nanos: min_t.value(i),
                    max_time_nanos: max_t.value(i),
                });
            }
        }
        Ok(out)
    }

    /// Reads the profile rows of the selected series (indices into
    /// [`series`](Self::series)) within `[start, end]` nanoseconds.
    /// Rows the metastore marked as duplicates are skipped.
    pub async fn profiles(&self, series: &[u32], start_nanos: i64, end_nanos: i64) -> Result<Vec<ProfileRow>> {
        let wanted: FxHashSet<u32> = series
            .iter()
            .copied()
            .filter(|&i| {
                self.series
                    .get(i as usize)
                    .is_some_and(|s| s.max_time_nanos >= start_nanos && s.min_time_nanos <= end_nanos)
            })
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let bytes = self.section(SectionKind::Profiles).await?;
        let mut out = Vec::new();
        for b in s::read_stream(&bytes, &s::profiles_schema())? {
            self.decode_rows(&b, &wanted, start_nanos, end_nanos, &mut out)?;
        }
        Ok(out)
    }

    /// Time and total of each profile of the selected series within
    /// `[start, end]` nanoseconds, without reading their samples:
    /// `(series index, time, total, profile id)`.
    pub async fn profile_totals(
        &self,
        series: &[u32],
        start_nanos: i64,
        end_nanos: i64,
    ) -> Result<Vec<(u32, i64, i64, ProfileId)>> {
        let mut wanted = vec![false; self.series.len()];
        for &i in series {
            if let Some(w) = wanted.get_mut(i as usize) {
                *w = true;
            }
        }
        let bytes = self.section(SectionKind::Profiles).await?;
        let mut out = Vec::new();
        let columns = ["id", "series", "time_nanos", "total"];
        for b in s::read_stream_columns(&bytes, &s::profiles_schema(), &columns)? {
            let sids = s::col_u32(&b, "series")?;
            let times = s::col_i64(&b, "time_nanos")?;
            let totals = s::col_i64(&b, "total")?;
            let ids = s::col_fixed(&b, "id")?;
            for i in 0..b.num_rows() {
                let (sid, t) = (sids.value(i), times.value(i));
                if !wanted.get(sid as usize).copied().unwrap_or(false)
                    || t < start_nanos
                    || t > end_nanos
                    || self.is_deleted(t)
                {
                    continue;
                }
                let mut id = [0u8; 16];
                id.copy_from_slice(ids.value(i));
                let id = ProfileId(id);
                if !self.shadowed.is_empty() {
                    let fp = self.series[sid as usize].fingerprint;
                    if self.shadowed.contains(&ProfileKey::new(&self.dataset.tenant, fp, &id)) {
                        continue;
                    }
                }
                out.push((sid, t, totals.value(i), id));
            }
        }
        Ok(out)
    }

    /// Adds the values of every sample of the selected series within
    /// `[start, end]` nanoseconds into `values`, indexed by stack id (the
    /// query hot path: no per-row allocation); rows in the dataset's
    /// `negated` ranges subtract instead. Returns the samples scanned.
    /// Stack ids outside `values` are ignored.
    pub async fn accumulate_stack_values(
        &self,
        series: &[u32],
        start_nanos: i64,
        end_nanos: i64,
        values: &mut [i64],
    ) -> Result<u64> {
        self.accumulate_filtered(series, start_nanos, end_nanos, &SampleFilter::default(), values).await
    }

    /// [`accumulate_stack_values`](Self::accumulate_stack_values) restricted
    /// to the profiles and samples a [`SampleFilter`] selects.
    pub async fn accumulate_filtered(
        &self,
        series: &[u32],
        start_nanos: i64,
        end_nanos: i64,
        filter: &SampleFilter,
        values: &mut [i64],
    ) -> Result<u64> {
        let mut wanted = vec![false; self.series.len()];
        let mut any = false;
        for &i in series {
            if let Some(s) = self.series.get(i as usize)
                && s.max_time_nanos >= start_nanos
                && s.min_time_nanos <= end_nanos
            {
                wanted[i as usize] = true;
                any = true;
            }
        }
        if !any {
            return Ok(0);
        }
        let bytes = self.section(SectionKind::Profiles).await?;
        let mut scanned = 0u64;
        let need_ids = !self.shadowed.is_empty() || filter.profile_ids.is_some();
        let per_sample = filter.span_ids.is_some() || filter.trace_ids.is_some();
        let mut columns = vec!["series", "time_nanos", "stack_ids", "values"];
        if need_ids {
            columns.push("id");
        }
        if per_sample {
            columns.extend(["span_ids", "trace_ids"]);
        }
        for b in s::read_stream_columns(&bytes, &s::profiles_schema(), &columns)? {
            let sids = s::col_u32(&b, "series")?;
            let times = s::col_i64(&b, "time_nanos")?;
            let stacks = s::col_list(&b, "stack_ids")?;
            let vals = s::col_list(&b, "values")?;
            let stack_v = s::list_values::<UInt32Type>(stacks, "stack_ids")?;
            let value_v = s::list_values::<Int64Type>(vals, "values")?;
            let (stack_v, value_v) = (stack_v.values(), value_v.values());
            let ids = if need_ids { Some(s::col_fixed(&b, "id")?) } else { None };
            let (spans, traces) = if per_sample {
                (Some(s::col_list(&b, "span_ids")?), Some(s::col_list(&b, "trace_ids")?))
            } else {
                (None, None)
            };
            let span_v = match spans {
                Some(l) => Some(s::list_values::<UInt64Type>(l, "span_ids")?),
                None => None,
            };
            let trace_v = match traces {
                Some(l) => Some(
                    l.values()
                        .as_any()
                        .downcast_ref::<arrow_array::FixedSizeBinaryArray>()
                        .ok_or_else(|| self.corrupt("trace ids"))?
                        .clone(),
                ),
                None => None,
            };
            for i in 0..b.num_rows() {
                let sid = sids.value(i);
                let t = times.value(i);
                let negated = !self.negated.is_empty() && self.is_negated(t);
                if !wanted.get(sid as usize).copied().unwrap_or(false)
                    || t < start_nanos
                    || t > end_nanos
                    || (!negated && self.is_deleted(t))
                {
                    continue;
                }
                let sign = if negated { -1 } else { 1 };
                if let Some(ids) = ids {
                    let mut id = [0u8; 16];
                    id.copy_from_slice(ids.value(i));
                    let id = ProfileId(id);
                    if filter.profile_ids.as_ref().is_some_and(|f| !f.contains(&id)) {
                        continue;
                    }
                    if !self.shadowed.is_empty() {
                        let fp = self.series[sid as usize].fingerprint;
                        if self.shadowed.contains(&ProfileKey::new(&self.dataset.tenant, fp, &id)) {
                            continue;
                        }
                    }
                }
                let (sr, vr) = (s::list_range(stacks, i), s::list_range(vals, i));
                if sr.len() != vr.len() || sr.end > stack_v.len() || vr.end > value_v.len() {
                    return Err(self.corrupt("stack ids and values differ in length"));
                }
                scanned += sr.len() as u64;
                if per_sample {
                    // Only samples with a selected span (or trace) id count.
                    let (Some(spans), Some(traces), Some(span_v), Some(trace_v)) = (spans, traces, &span_v, &trace_v)
                    else {
                        continue;
                    };
                    if s::is_null(spans, i) {
                        continue;
                    }
                    let (pr, tr) = (s::list_range(spans, i), s::list_range(traces, i));
                    if pr.len() != sr.len() || tr.len() != sr.len() || pr.end > span_v.len() || tr.end > trace_v.len() {
                        return Err(self.corrupt("span ids and samples differ in length"));
                    }
                    for k in 0..sr.len() {
                        let span_ok = filter.span_ids.as_ref().is_none_or(|f| f.contains(&span_v.value(pr.start + k)));
                        let trace_ok = filter.trace_ids.as_ref().is_none_or(|f| {
                            let mut t = [0u8; 16];
                            t.copy_from_slice(trace_v.value(tr.start + k));
                            f.contains(&t)
                        });
                        if span_ok
                            && trace_ok
                            && let Some(slot) = values.get_mut(stack_v[sr.start + k] as usize)
                        {
                            *slot = slot.wrapping_add(value_v[vr.start + k].wrapping_mul(sign));
                        }
                    }
                    continue;
                }
                // Wrapping, as release `+=` and Pyroscope's int64 sums:
                // saturating costs ~24% of the scan (measured); each
                // profile's total is checked to fit 64 bits at ingest.
                if negated {
                    for (&st, &v) in stack_v[sr].iter().zip(&value_v[vr]) {
                        if let Some(slot) = values.get_mut(st as usize) {
                            *slot = slot.wrapping_sub(v);
                        }
                    }
                    continue;
                }
                for (&st, &v) in stack_v[sr].iter().zip(&value_v[vr]) {
                    if let Some(slot) = values.get_mut(st as usize) {
                        *slot = slot.wrapping_add(v);
                    }
                }
            }
        }
        Ok(scanned)
    }

    fn decode_rows(
        &self,
        b: &RecordBatch,
        wanted: &FxHashSet<u32>,
        start: i64,
        end: i64,
        out: &mut Vec<ProfileRow>,
    ) -> Result<()> {
        let ids = s::col_fixed(b, "id")?;
        let sids = s::col_u32(b, "series")?;
        let times = s::col_i64(b, "time_nanos")?;
        let totals = s::col_i64(b, "total")?;
        let stacks = s::col_list(b, "stack_ids")?;
        let values = s::col_list(b, "values")?;
        let spans = s::col_list(b, "span_ids")?;
        let traces = s::col_list(b, "trace_ids")?;
        let stack_v = s::list_values::<UInt32Type>(stacks, "stack_ids")?;
        let value_v = s::list_values::<Int64Type>(values, "values")?;
        let span_v = s::list_values::<UInt64Type>(spans, "span_ids")?;
        let trace_v = traces
            .values()
            .as_any()
            .downcast_ref::<arrow_array::FixedSizeBinaryArray>()
            .ok_or_else(|| self.corrupt("trace ids"))?
            .clone();
        for i in 0..b.num_rows() {
            let sid = sids.value(i);
            let t = times.value(i);
            if !wanted.contains(&sid) || t < start || t > end || self.is_deleted(t) {
                continue;
            }
            let mut id = [0u8; 16];
            id.copy_from_slice(ids.value(i));
            let id = ProfileId(id);
            if !self.shadowed.is_empty() {
                let fp = self.series.get(sid as usize).map(|s| s.fingerprint).unwrap_or(0);
                if self.shadowed.contains(&ProfileKey::new(&self.dataset.tenant, fp, &id)) {
                    continue;
                }
            }
            let (sr, vr) = (s::list_range(stacks, i), s::list_range(values, i));
            if sr.len() != vr.len() || sr.end > stack_v.len() || vr.end > value_v.len() {
                return Err(self.corrupt("stack ids and values differ in length"));
            }
            let (span_ids, trace_ids) = if s::is_null(spans, i) {
                (None, None)
            } else {
                let (pr, tr) = (s::list_range(spans, i), s::list_range(traces, i));
                if pr.len() != sr.len() || tr.len() != sr.len() || pr.end > span_v.len() || tr.end > trace_v.len() {
                    return Err(self.corrupt("span ids and samples differ in length"));
                }
                let traces = tr.map(|j| {
                    let mut t = [0u8; 16];
                    t.copy_from_slice(trace_v.value(j));
                    t
                });
                (Some(span_v.values()[pr].to_vec()), Some(traces.collect()))
            };
            out.push(ProfileRow {
                id,
                series: sid,
                time_nanos: t,
                total: totals.value(i),
                stack_ids: stack_v.values()[sr].to_vec(),
                values: value_v.values()[vr].to_vec(),
                span_ids,
                trace_ids,
            });
        }
        Ok(())
    }

    /// Calls `f` with every stored row in storage order (series, time, id),
    /// except the rows the metastore shadowed or marked deleted. The profiles section is
    /// decoded one batch at a time and rows borrow the batch: nothing is
    /// allocated per row. Stops at the first error `f` returns.
    pub async fn for_each_row(&self, mut f: impl FnMut(&RowRef<'_>) -> Result<()>) -> Result<()> {
        let bytes = self.section(SectionKind::Profiles).await?;
        let schema = s::profiles_schema();
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(&bytes[..]), None)?;
        if reader.schema().fields() != schema.fields() {
            return Err(self.corrupt("profiles section has an unexpected schema"));
        }
        for b in reader {
            let b = b?;
            let ids = s::col_fixed(&b, "id")?;
            let sids = s::col_u32(&b, "series")?;
            let times = s::col_i64(&b, "time_nanos")?;
            let totals = s::col_i64(&b, "total")?;
            let stacks = s::col_list(&b, "stack_ids")?;
            let values = s::col_list(&b, "values")?;
            let spans = s::col_list(&b, "span_ids")?;
            let traces = s::col_list(&b, "trace_ids")?;
            let stack_v = s::list_values::<UInt32Type>(stacks, "stack_ids")?;
            let value_v = s::list_values::<Int64Type>(values, "values")?;
            let span_v = s::list_values::<UInt64Type>(spans, "span_ids")?;
            let trace_v = traces
                .values()
                .as_any()
                .downcast_ref::<arrow_array::FixedSizeBinaryArray>()
                .filter(|a| a.value_length() == 16)
                .ok_or_else(|| self.corrupt("trace ids"))?;
            let (stack_v, value_v, span_v, trace_data) =
                (stack_v.values(), value_v.values(), span_v.values(), trace_v.value_data());
            for i in 0..b.num_rows() {
                let sid = sids.value(i);
                let Some(series) = self.series.get(sid as usize) else {
                    return Err(self.corrupt("profile row of an unknown series"));
                };
                let mut id = [0u8; 16];
                id.copy_from_slice(ids.value(i));
                let id = ProfileId(id);
                if (!self.shadowed.is_empty()
                    && self.shadowed.contains(&ProfileKey::new(&self.dataset.tenant, series.fingerprint, &id)))
                    || self.is_deleted(times.value(i))
                {
                    continue;
                }
                let (sr, vr) = (s::list_range(stacks, i), s::list_range(values, i));
                if sr.len() != vr.len() || sr.end > stack_v.len() || vr.end > value_v.len() {
                    return Err(self.corrupt("stack ids and values differ in length"));
                }
                let (span_ids, trace_ids) = if s::is_null(spans, i) {
                    (None, None)
                } else {
                    let (pr, tr) = (s::list_range(spans, i), s::list_range(traces, i));
                    if pr.len() != sr.len()
                        || tr.len() != sr.len()
                        || pr.end > span_v.len()
                        || tr.end.checked_mul(16).is_none_or(|e| e > trace_data.len())
                    {
                        return Err(self.corrupt("span ids and samples differ in length"));
                    }
                    (Some(&span_v[pr]), Some(&trace_data[tr.start * 16..tr.end * 16]))
                };
                f(&RowRef {
                    id,
                    series: sid,
                    time_nanos: times.value(i),
                    total: totals.value(i),
                    stack_ids: &stack_v[sr],
                    values: &value_v[vr],
                    span_ids,
                    trace_ids,
                })?;
            }
        }
        Ok(())
    }

    /// Reads all symbol sections (one ranged GET: they are contiguous).
    pub async fn symbols(&self) -> Result<Symbols> {
        let kinds = [
            SectionKind::Strings,
            SectionKind::Functions,
            SectionKind::Mappings,
            SectionKind::Locations,
            SectionKind::Stacks,
        ];
        let secs = kinds.iter().map(|&k| self.find(k)).collect::<Result<Vec<_>>>()?;
        let ranges = secs.iter().map(|s| self.check(s)).collect::<Result<Vec<_>>>()?;
        let lo = ranges.iter().map(|r| r.start).min().unwrap_or(0);
        let hi = ranges.iter().map(|r| r.end).max().unwrap_or(0);
        let all = self.store.get_range(&self.path, lo..hi).await?;
        if all.len() as u64 != hi - lo {
            // The object is shorter than its metadata says (a store returns
            // what it has of a range).
            return Err(self.corrupt("symbol sections outside the object"));
        }
        let part = |i: usize| -> Result<Bytes> {
            let r = &ranges[i];
            let b = all.slice((r.start - lo) as usize..(r.end - lo) as usize);
            self.verify(&secs[i], &b)?;
            Ok(b)
        };
        Symbols::decode(&part(0)?, &part(1)?, &part(2)?, &part(3)?, &part(4)?).map_err(|e| match e {
            BlockError::Arrow(a) => self.corrupt(a.to_string()),
            other => other,
        })
    }
}

/// A function as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionRow {
    pub name: u32,
    pub system_name: u32,
    pub filename: u32,
    pub start_line: i64,
}

/// A mapping as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingRow {
    pub memory_start: u64,
    pub memory_limit: u64,
    pub file_offset: u64,
    pub filename: u32,
    pub build_id: u32,
    pub flags: u8,
}

/// A resolved frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub function: &'a str,
    pub filename: &'a str,
    pub line: i64,
}

/// The symbols of a dataset, resolved in memory.
#[derive(Debug, Clone, Default)]
pub struct Symbols {
    pub strings: Vec<String>,
    pub functions: Vec<FunctionRow>,
    pub mappings: Vec<MappingRow>,
    /// Per location: mapping and the range of its lines.
    pub location_mapping: Vec<u32>,
    pub location_address: Vec<u64>,
    pub location_lines: Vec<Range<u32>>,
    /// (function, line) of every location line, innermost first per location.
    pub lines: Vec<(u32, i64)>,
    /// Stack tree: parent and location of each node; node 0 is the root.
    pub stack_parent: Vec<u32>,
    pub stack_location: Vec<u32>,
}

impl Symbols {
    fn decode(strings: &[u8], functions: &[u8], mappings: &[u8], locations: &[u8], stacks: &[u8]) -> Result<Self> {
        let mut out = Symbols::default();
        for b in s::read_stream(strings, &s::strings_schema())? {
            let c = s::col_str(&b, "value")?;
            out.strings.extend((0..c.len()).map(|i| c.value(i).to_owned()));
        }
        for b in s::read_stream(functions, &s::functions_schema())? {
            let (n, sn, f, l) = (
                s::col_u32(&b, "name")?,
                s::col_u32(&b, "system_name")?,
                s::col_u32(&b, "filename")?,
                s::col_i64(&b, "start_line")?,
            );
            for i in 0..b.num_rows() {
                out.functions.push(FunctionRow {
                    name: n.value(i),
                    system_name: sn.value(i),
                    filename: f.value(i),
                    start_line: l.value(i),
                });
            }
        }
        for b in s::read_stream(mappings, &s::mappings_schema())? {
            let (ms, ml, fo) =
                (s::col_u64(&b, "memory_start")?, s::col_u64(&b, "memory_limit")?, s::col_u64(&b, "file_offset")?);
            let (f, bi, fl) = (s::col_u32(&b, "filename")?, s::col_u32(&b, "build_id")?, s::col_u8(&b, "flags")?);
            for i in 0..b.num_rows() {
                out.mappings.push(MappingRow {
                    memory_start: ms.value(i),
                    memory_limit: ml.value(i),
                    file_offset: fo.value(i),
                    filename: f.value(i),
                    build_id: bi.value(i),
                    flags: fl.value(i),
                });
            }
        }
        for b in s::read_stream(locations, &s::locations_schema())? {
            let (m, a) = (s::col_u32(&b, "mapping")?, s::col_u64(&b, "address")?);
            let (lf, ln) = (s::col_list(&b, "line_functions")?, s::col_list(&b, "line_numbers")?);
            let (lfv, lnv) =
                (s::list_values::<UInt32Type>(lf, "line_functions")?, s::list_values::<Int64Type>(ln, "line_numbers")?);
            for i in 0..b.num_rows() {
                let (fr, nr) = (s::list_range(lf, i), s::list_range(ln, i));
                if fr != nr || fr.end > lfv.len() || nr.end > lnv.len() {
                    return Err(BlockError::Corrupt { path: String::new(), reason: "location lines".into() });
                }
                let start = out.lines.len() as u32;
                out.lines.extend(fr.map(|j| (lfv.value(j), lnv.value(j))));
                out.location_mapping.push(m.value(i));
                out.location_address.push(a.value(i));
                out.location_lines.push(start..out.lines.len() as u32);
            }
        }
        let (version, batches) = s::read_stream_one_of(stacks, &[s::stacks_schema(), s::stacks_schema_v1()])?;
        for b in batches {
            let l = s::col_u32(&b, "location")?;
            if version == 0 {
                let d = s::col_u32(&b, "parent_distance")?;
                let first = out.stack_parent.len();
                for (i, &d) in d.values().iter().enumerate() {
                    let node = (first + i) as u32;
                    // The root is its own parent (distance 0); any other
                    // node's parent lies before it.
                    let parent = if node == 0 {
                        0
                    } else if d == 0 || d > node {
                        u32::MAX
                    } else {
                        node - d
                    };
                    out.stack_parent.push(parent);
                }
            } else {
                out.stack_parent.extend_from_slice(s::col_u32(&b, "parent")?.values());
            }
            out.stack_location.extend_from_slice(l.values());
        }
        out.validate()?;
        Ok(out)
    }

    /// Every reference points inside its table, and parents precede children
    /// (so walking a stack always terminates).
    fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(BlockError::Corrupt { path: String::new(), reason: format!("symbols: {what}") });
        let ns = self.strings.len() as u32;
        if self.functions.iter().any(|f| f.name >= ns || f.system_name >= ns || f.filename >= ns) {
            return bad("function string out of range");
        }
        if self.mappings.iter().any(|m| m.filename >= ns || m.build_id >= ns) {
            return bad("mapping string out of range");
        }
        let nf = self.functions.len() as u32;
        if self.lines.iter().any(|l| l.0 >= nf) {
            return bad("line function out of range");
        }
        let nm = self.mappings.len() as u32;
        if self.location_mapping.iter().any(|&m| m >= nm) {
            return bad("location mapping out of range");
        }
        let nl = self.location_mapping.len() as u32;
        for (i, (&p, &l)) in self.stack_parent.iter().zip(&self.stack_location).enumerate().skip(1) {
            if p as usize >= i || l >= nl {
                return bad("stack node out of order or range");
            }
        }
        Ok(())
    }

    /// Number of stack nodes (valid stack ids are `0..len`).
    pub fn stack_count(&self) -> usize {
        self.stack_parent.len()
    }

    /// Location ids of a stack, leaf first.
    pub fn stack_locations(&self, stack_id: u32) -> impl Iterator<Item = u32> + '_ {
        let mut node = stack_id as usize;
        std::iter::from_fn(move || {
            if node == 0 || node >= self.stack_parent.len() {
                return None;
            }
            let loc = self.stack_location[node];
            node = self.stack_parent[node] as usize;
            Some(loc)
        })
    }

    /// Frames of a stack, root first; inlined frames expanded (outermost first).
    pub fn resolve(&self, stack_id: u32) -> Vec<Frame<'_>> {
        let mut frames = Vec::new();
        for loc in self.stack_locations(stack_id) {
            let Some(r) = self.location_lines.get(loc as usize) else { continue };
            for &(f, line) in self.lines[r.start as usize..r.end as usize].iter() {
                let func = self.functions.get(f as usize).copied();
                frames.push(Frame {
                    function: func.map(|f| self.strings[f.name as usize].as_str()).unwrap_or(""),
                    filename: func.map(|f| self.strings[f.filename as usize].as_str()).unwrap_or(""),
                    line,
                });
            }
        }
        frames.reverse();
        frames
    }

    /// Function names of a stack, root first.
    pub fn function_names(&self, stack_id: u32) -> Vec<&str> {
        self.resolve(stack_id).into_iter().map(|f| f.function).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use arrow_array::RecordBatch;

    use super::Symbols;
    use crate::sections as s;

    fn stream(schema: &arrow_schema::SchemaRef, columns: Vec<arrow_array::ArrayRef>) -> Vec<u8> {
        let mut out = Vec::new();
        let b: RecordBatch = s::batch(schema, columns).unwrap();
        s::write_stream_with(schema, &[b], &mut out, arrow_ipc::CompressionType::ZSTD).unwrap();
        out
    }

    /// Symbols with two locations and the given STACKS section.
    fn decode(stacks: &[u8]) -> crate::Result<Symbols> {
        let strings = stream(&s::strings_schema(), vec![s::strings([""].into_iter())]);
        let functions = stream(
            &s::functions_schema(),
            vec![s::u32s(vec![0]), s::u32s(vec![0]), s::u32s(vec![0]), s::i64s(vec![0])],
        );
        let mappings = stream(
            &s::mappings_schema(),
            vec![
                s::u64s(vec![0]),
                s::u64s(vec![0]),
                s::u64s(vec![0]),
                s::u32s(vec![0]),
                s::u32s(vec![0]),
                s::u8s(vec![0]),
            ],
        );
        let offsets = s::offsets([1usize, 1].into_iter()).unwrap();
        let locations = stream(
            &s::locations_schema(),
            vec![
                s::u32s(vec![0, 0]),
                s::u64s(vec![0x10, 0x20]),
                s::list(arrow_schema::DataType::UInt32, offsets.clone(), s::u32s(vec![0, 0]), None).unwrap(),
                s::list(arrow_schema::DataType::Int64, offsets, s::i64s(vec![1, 2]), None).unwrap(),
            ],
        );
        Symbols::decode(&strings, &functions, &mappings, &locations, stacks)
    }

    #[test]
    fn stacks_of_both_format_versions_decode_to_the_same_tree() {
        // root ─ 1 ─ 2
        //   └─ 3 ─ 4
        let v1 = stream(&s::stacks_schema_v1(), vec![s::u32s(vec![0, 0, 1, 0, 3]), s::u32s(vec![0, 0, 1, 1, 0])]);
        let v2 = stream(&s::stacks_schema(), vec![s::u32s(vec![0, 1, 1, 3, 1]), s::u32s(vec![0, 0, 1, 1, 0])]);
        let (a, b) = (decode(&v1).unwrap(), decode(&v2).unwrap());
        assert_eq!(a.stack_parent, vec![0, 0, 1, 0, 3]);
        assert_eq!(b.stack_parent, a.stack_parent);
        assert_eq!(b.stack_location, vec![0, 0, 1, 1, 0]);
        assert_eq!(b.stack_locations(4).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn a_distance_that_points_at_itself_or_before_the_root_is_corrupt() {
        for d in [vec![0, 0], vec![0, 2], vec![0, 1, 3]] {
            let n = d.len();
            let stacks = stream(&s::stacks_schema(), vec![s::u32s(d.clone()), s::u32s(vec![0; n])]);
            let err = decode(&stacks).unwrap_err();
            assert!(err.to_string().contains("stack node"), "{d:?}: {err}");
        }
    }
}
