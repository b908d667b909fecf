//! The long-range planner: which rollups a stack query reads instead of raw
//! rows, and which raw rows it then skips.
//!
//! ```text
//! blocks of the range (raw and rollups, from the metastore)
//!   per (tenant, service): usable rollup datasets = whole steps (hours, or the day) of
//!                          its bucket inside [start, end], no pending deletion, every
//!                          cover present with that dataset
//!   choose: the longest span first, of the widest step (a day's sums), then hours
//!           outside those chosen
//!   each chosen span ──▶ Dataset.covered += span on each of its covers,
//!                        and += the rest of the bucket on the rollup itself
//!   raw datasets whose part of the range is all covered ──▶ left out
//!   rollup datasets not chosen ──▶ left out
//! ```
//!
//! The answer equals reading every raw row: a rollup row holds the sums of
//! exactly the rows of its covers in its hour, and exactly those rows are
//! skipped. Rows of blocks that are not its covers (late data) are read raw.

use std::collections::{BTreeMap, BTreeSet};

use phlox_block::is_tenant_index;
use phlox_block::rollup::{DAY_MS, HOUR_MS, bucket_start, is_rollup};
use phlox_proto::metastore::v1::{BlockMeta, Dataset, TimeRange};

/// Tenant of a dataset of `block`.
fn tenant_of<'a>(block: &'a BlockMeta, ds: &'a Dataset) -> &'a str {
    if ds.tenant.is_empty() { &block.tenant } else { &ds.tenant }
}

/// A usable rollup dataset and the whole hours of the range it answers.
struct Candidate {
    block: usize,
    dataset: usize,
    /// The span used, `[lo, hi)` ms: whole steps of its bucket inside the range.
    lo: i64,
    hi: i64,
    /// Width of its rows' time buckets.
    step: i64,
}

/// The range whose blocks [`plan`] needs for `[start_ms, end_ms]`: whole
/// UTC days, so that every cover of a rollup the range cuts is listed.
pub(crate) fn widened(start_ms: i64, end_ms: i64) -> (i64, i64) {
    (bucket_start(start_ms, DAY_MS), bucket_start(end_ms, DAY_MS).saturating_add(DAY_MS - 1))
}

/// Rewrites a query's blocks (raw blocks and rollups of the
/// [`widened`] range; the query's range is `[start_ms, end_ms]`, ms, both
/// inclusive) so that whole steps are read from rollups and the rest from
/// raw rows. Every rollup not used and every raw dataset outside the
/// range is left out.
pub(crate) fn plan(blocks: Vec<BlockMeta>, start_ms: i64, end_ms: i64) -> Vec<BlockMeta> {
    let mut blocks = blocks;
    // (block id, tenant, service) of every raw dataset → its position.
    let mut raw: BTreeMap<(&str, &str, &str), (usize, usize)> = BTreeMap::new();
    for (b, block) in blocks.iter().enumerate().filter(|(_, b)| !is_rollup(b)) {
        for (d, ds) in block.datasets.iter().enumerate().filter(|(_, d)| !is_tenant_index(d)) {
            raw.insert((block.id.as_str(), tenant_of(block, ds), ds.name.as_str()), (b, d));
        }
    }
    // Usable rollup datasets per (tenant, service), with the whole steps
    // (hours, or the day) of the range they hold.
    let mut candidates: BTreeMap<(String, String), Vec<Candidate>> = BTreeMap::new();
    for (b, block) in blocks.iter().enumerate().filter(|(_, b)| is_rollup(b)) {
        let step = if block.rollup_step > 0 { block.rollup_step } else { HOUR_MS };
        let first = bucket_start(start_ms.saturating_add(step - 1), step);
        let after_last = bucket_start(end_ms.saturating_add(1), step);
        let (lo, hi) = (block.rollup_start.max(first), block.rollup_end.min(after_last));
        if lo >= hi {
            continue;
        }
        for (d, ds) in block.datasets.iter().enumerate().filter(|(_, d)| !is_tenant_index(d)) {
            let tenant = tenant_of(block, ds);
            let usable = ds.deleted.is_empty()
                && !ds.rollup_covers.is_empty()
                && ds.rollup_covers.iter().all(|c| raw.contains_key(&(c.as_str(), tenant, ds.name.as_str())));
            if usable {
                candidates.entry((tenant.to_owned(), ds.name.clone())).or_default().push(Candidate {
                    block: b,
                    dataset: d,
                    lo,
                    hi,
                    step,
                });
            }
        }
    }
    // Choose: the longest span first, of the widest step (a day's sums over
    // its hours'), none overlapping one already chosen.
    let mut chosen: BTreeMap<(usize, usize), (i64, i64)> = BTreeMap::new();
    let mut covered: BTreeMap<(usize, usize), Vec<TimeRange>> = BTreeMap::new();
    for (_, mut list) in candidates {
        list.sort_by_key(|c| (std::cmp::Reverse(c.hi - c.lo), std::cmp::Reverse(c.step), c.lo));
        let mut taken: Vec<(i64, i64)> = Vec::new();
        for c in list {
            if taken.iter().any(|&(s, e)| c.lo < e && s < c.hi) {
                continue;
            }
            taken.push((c.lo, c.hi));
            chosen.insert((c.block, c.dataset), (c.lo, c.hi));
            let block = &blocks[c.block];
            let ds = &block.datasets[c.dataset];
            let tenant = tenant_of(block, ds);
            for cover in &ds.rollup_covers {
                if let Some(&at) = raw.get(&(cover.as_str(), tenant, ds.name.as_str())) {
                    covered.entry(at).or_default().push(TimeRange { start: c.lo, end: c.hi - 1 });
                }
            }
        }
    }
    drop(raw);
    // Raw datasets: skip the covered rows; leave out those with nothing else.
    let mut dropped: BTreeSet<(usize, usize)> = BTreeSet::new();
    for ((b, d), ranges) in covered {
        let ds = &mut blocks[b].datasets[d];
        let (lo, hi) = (ds.min_time.max(start_ms), ds.max_time.min(end_ms));
        if spans(&ranges, lo, hi) {
            dropped.insert((b, d));
        } else {
            ds.covered = ranges;
        }
    }
    for ((b, d), (lo, hi)) in &chosen {
        // A rollup's rows outside the chosen hours are skipped.
        let block = &mut blocks[*b];
        let (start, end) = (block.rollup_start, block.rollup_end);
        let ds = &mut block.datasets[*d];
        if *lo > start {
            ds.covered.push(TimeRange { start, end: lo - 1 });
        }
        if *hi < end {
            ds.covered.push(TimeRange { start: *hi, end: end - 1 });
        }
    }
    for (b, block) in blocks.iter_mut().enumerate() {
        let rollup = is_rollup(block);
        let before = block.datasets.len();
        let mut d = 0;
        block.datasets.retain(|ds| {
            let keep = is_tenant_index(ds)
                || if rollup {
                    chosen.contains_key(&(b, d))
                } else {
                    !dropped.contains(&(b, d)) && ds.max_time >= start_ms && ds.min_time <= end_ms
                };
            d += 1;
            keep
        });
        // A tenant index would still list the series of a dataset left out.
        if rollup || block.datasets.len() != before {
            block.datasets.retain(|ds| !is_tenant_index(ds));
        }
    }
    blocks.retain(|b| b.datasets.iter().any(|d| !is_tenant_index(d)));
    blocks
}

/// Whether `ranges` (inclusive ms) cover every millisecond of `[lo, hi]`.
fn spans(ranges: &[TimeRange], lo: i64, hi: i64) -> bool {
    if lo > hi {
        return true;
    }
    let mut sorted: Vec<(i64, i64)> = ranges.iter().map(|r| (r.start, r.end)).collect();
    sorted.sort_unstable();
    let mut next = lo;
    for (s, e) in sorted {
        if s > next {
            return false;
        }
        if e >= next {
            next = e.saturating_add(1);
            if next > hi {
                return true;
            }
        }
    }
    next > hi
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(id: &str, name: &str, min: i64, max: i64) -> BlockMeta {
        BlockMeta {
            id: id.into(),
            tenant: "t".into(),
            min_time: min,
            max_time: max,
            datasets: vec![Dataset { name: name.into(), min_time: min, max_time: max, ..Default::default() }],
            ..Default::default()
        }
    }

    fn rollup(id: &str, name: &str, start: i64, end: i64, covers: &[&str]) -> BlockMeta {
        stepped(id, name, start, end, H, covers)
    }

    fn stepped(id: &str, name: &str, start: i64, end: i64, step: i64, covers: &[&str]) -> BlockMeta {
        BlockMeta {
            id: id.into(),
            tenant: "t".into(),
            min_time: start,
            max_time: end - 1,
            rollup_start: start,
            rollup_end: end,
            rollup_step: step,
            rollup_covers: covers.iter().map(|c| c.to_string()).collect(),
            datasets: vec![Dataset {
                name: name.into(),
                min_time: start,
                max_time: end - 1,
                rollup_covers: covers.iter().map(|c| c.to_string()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    const H: i64 = 3_600_000;

    fn ids(blocks: &[BlockMeta]) -> Vec<&str> {
        blocks.iter().map(|b| b.id.as_str()).collect()
    }

    #[test]
    fn whole_buckets_come_from_rollups_and_the_edges_from_raw_rows() {
        // Raw a: 0..1.5 h, raw b: 1.5 h..3 h; rollups of hours 0, 1, 2.
        let blocks = vec![
            raw("a", "s", 0, H + H / 2),
            raw("b", "s", H + H / 2 + 1, 3 * H - 1),
            rollup("r0", "s", 0, H, &["a"]),
            rollup("r1", "s", H, 2 * H, &["a", "b"]),
            rollup("r2", "s", 2 * H, 3 * H, &["b"]),
        ];
        // The range cuts hour 0 and hour 2: only hour 1 is whole.
        let out = plan(blocks, H / 2, 2 * H + H / 2);
        assert_eq!(ids(&out), ["a", "b", "r1"]);
        assert_eq!(out[0].datasets[0].covered, vec![TimeRange { start: H, end: 2 * H - 1 }]);
        assert_eq!(out[1].datasets[0].covered, vec![TimeRange { start: H, end: 2 * H - 1 }]);
    }

    #[test]
    fn a_raw_block_inside_the_chosen_buckets_is_not_read() {
        let blocks = vec![
            raw("a", "s", 0, H - 1),
            raw("b", "s", H, 2 * H - 1),
            rollup("r0", "s", 0, H, &["a"]),
            rollup("r1", "s", H, 2 * H, &["b"]),
            rollup("d", "s", 0, 24 * H, &["a", "b"]),
        ];
        // The whole day: the day rollup alone.
        assert_eq!(ids(&plan(blocks.clone(), 0, 24 * H - 1)), ["d"]);
        // Two hours: the day's rollup (one object), its other hours skipped.
        let out = plan(blocks.clone(), 0, 2 * H - 1);
        assert_eq!(ids(&out), ["d"]);
        assert_eq!(out[0].datasets[0].covered, vec![TimeRange { start: 2 * H, end: 24 * H - 1 }]);
        // Cut inside hours: whole hours 1..5 from the day's rollup, the rest
        // of hour 0 from block a; block b is all covered.
        let out = plan(blocks, H / 2, 5 * H + 10);
        assert_eq!(ids(&out), ["a", "d"]);
        assert_eq!(out[0].datasets[0].covered, vec![TimeRange { start: H, end: 5 * H - 1 }]);
        assert_eq!(
            out[1].datasets[0].covered,
            vec![TimeRange { start: 0, end: H - 1 }, TimeRange { start: 5 * H, end: 24 * H - 1 }]
        );
    }

    #[test]
    fn a_whole_day_reads_its_day_sums_and_a_partial_day_its_hours() {
        let blocks = vec![
            raw("a", "s", 0, 12 * H - 1),
            raw("b", "s", 12 * H, 24 * H - 1),
            rollup("hours", "s", 0, 24 * H, &["a", "b"]),
            stepped("day", "s", 0, 24 * H, 24 * H, &["a", "b"]),
        ];
        let out = plan(blocks.clone(), 0, 24 * H - 1);
        assert_eq!(ids(&out), ["day"]);
        assert!(out[0].datasets[0].covered.is_empty());
        // One millisecond short of the day: its hours, the last one raw.
        let out = plan(blocks, 0, 24 * H - 2);
        assert_eq!(ids(&out), ["b", "hours"]);
        assert_eq!(out[0].datasets[0].covered, vec![TimeRange { start: 0, end: 23 * H - 1 }]);
        assert_eq!(out[1].datasets[0].covered, vec![TimeRange { start: 23 * H, end: 24 * H - 1 }]);
    }

    #[test]
    fn a_rollup_whose_cover_is_gone_or_deleted_is_not_used() {
        // Cover "x" is not in the answer (rewritten, expired): raw rows only.
        let blocks = vec![raw("a", "s", 0, H - 1), rollup("r0", "s", 0, H, &["a", "x"])];
        assert_eq!(ids(&plan(blocks, 0, H)), ["a"]);
        let mut pending = rollup("r0", "s", 0, H, &["a"]);
        pending.datasets[0].deleted = vec![TimeRange { start: 10, end: 20 }];
        let blocks = vec![raw("a", "s", 0, H - 1), pending];
        let out = plan(blocks, 0, H);
        assert_eq!(ids(&out), ["a"]);
        assert!(out[0].datasets[0].covered.is_empty());
    }

    #[test]
    fn late_data_that_a_rollup_does_not_cover_is_read_raw() {
        let blocks = vec![raw("a", "s", 0, H - 1), raw("late", "s", 100, 200), rollup("r0", "s", 0, H, &["a"])];
        assert_eq!(ids(&plan(blocks, 0, H)), ["late", "r0"]);
    }

    #[test]
    fn a_cut_day_uses_covers_outside_the_range_and_reads_none_of_them() {
        // The day's hours cover a (hours 0..12) and b (12..24); the range
        // starts in hour 13: a is listed (the widened range) but not read.
        let blocks = vec![
            raw("a", "s", 0, 12 * H - 1),
            raw("b", "s", 12 * H, 24 * H - 1),
            rollup("hours", "s", 0, 24 * H, &["a", "b"]),
        ];
        assert_eq!(widened(13 * H + 5, 20 * H), (0, 24 * H - 1));
        let out = plan(blocks, 13 * H + 5, 20 * H);
        assert_eq!(ids(&out), ["b", "hours"]);
        assert_eq!(out[0].datasets[0].covered, vec![TimeRange { start: 14 * H, end: 20 * H - 1 }]);
    }

    #[test]
    fn spans_needs_every_millisecond() {
        let r = |s, e| TimeRange { start: s, end: e };
        assert!(spans(&[r(0, 9), r(10, 19)], 0, 19));
        assert!(!spans(&[r(0, 9), r(11, 19)], 0, 19));
        assert!(spans(&[r(0, 100)], 5, 6));
        assert!(!spans(&[], 5, 6));
    }
}
