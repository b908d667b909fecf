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
//!   an hour the range cuts, mostly inside ──▶ its hour row whole; the read range
//!           widens to the hour, and its covers' rows outside the query subtract
//!           (Dataset.negated): half an hour of raw rows at most per edge
//!   each chosen span ──▶ Dataset.covered += span ∩ range on each of its covers,
//!                        and += the rest of the bucket on the rollup itself
//!   read range beyond the query ──▶ Dataset.covered on every other raw dataset
//!   raw datasets with nothing left to read ──▶ left out
//!   rollup datasets not chosen ──▶ left out
//! ```
//!
//! The answer equals reading every raw row: a rollup row holds the sums of
//! exactly the rows of its covers in its hour, and exactly those rows are
//! skipped (or, outside the query, subtracted). Rows of blocks that are not
//! its covers (late data) are read raw.

use std::collections::{BTreeMap, BTreeSet};

use phlox_block::is_tenant_index;
use phlox_block::rollup::{DAY_MS, HOUR_MS, bucket_start, is_rollup};
use phlox_proto::metastore::v1::{BlockMeta, Dataset, TimeRange};

/// Tenant of a dataset of `block`.
fn tenant_of<'a>(block: &'a BlockMeta, ds: &'a Dataset) -> &'a str {
    if ds.tenant.is_empty() { &block.tenant } else { &ds.tenant }
}

/// A rollup dataset the query may read: every cover listed, no pending
/// deletion.
struct Usable {
    block: usize,
    dataset: usize,
    /// Its bucket, `[start, end)` ms, and the width of its rows' steps.
    start: i64,
    end: i64,
    step: i64,
}

/// What [`plan`] leaves to read: blocks, and the range (ms, inclusive) the
/// leaves read: the query's, widened to whole hours at an edge read from a
/// rollup less its rows outside the query.
#[derive(Debug)]
pub(crate) struct Plan {
    pub blocks: Vec<BlockMeta>,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// The range whose blocks [`plan`] needs for `[start_ms, end_ms]`: whole
/// UTC days, so that every cover of a rollup the range cuts is listed.
pub(crate) fn widened(start_ms: i64, end_ms: i64) -> (i64, i64) {
    (bucket_start(start_ms, DAY_MS), bucket_start(end_ms, DAY_MS).saturating_add(DAY_MS - 1))
}

/// Rewrites a query's blocks (raw blocks and rollups of the [`widened`]
/// range; the query's range is `[start_ms, end_ms]`, ms, both inclusive)
/// so that whole steps are read from rollups and the rest from raw rows.
/// Every rollup not used and every raw dataset outside the range is left
/// out.
pub(crate) fn plan(blocks: Vec<BlockMeta>, start_ms: i64, end_ms: i64) -> Plan {
    let mut blocks = blocks;
    // (block id, tenant, service) of every raw dataset → its position.
    let mut raw: BTreeMap<(&str, &str, &str), (usize, usize)> = BTreeMap::new();
    for (b, block) in blocks.iter().enumerate().filter(|(_, b)| !is_rollup(b)) {
        for (d, ds) in block.datasets.iter().enumerate().filter(|(_, d)| !is_tenant_index(d)) {
            raw.insert((block.id.as_str(), tenant_of(block, ds), ds.name.as_str()), (b, d));
        }
    }
    // Usable rollup datasets per (tenant, service).
    let mut usable: BTreeMap<(String, String), Vec<Usable>> = BTreeMap::new();
    for (b, block) in blocks.iter().enumerate().filter(|(_, b)| is_rollup(b)) {
        let step = if block.rollup_step > 0 { block.rollup_step } else { HOUR_MS };
        for (d, ds) in block.datasets.iter().enumerate().filter(|(_, d)| !is_tenant_index(d)) {
            let tenant = tenant_of(block, ds);
            if ds.deleted.is_empty()
                && !ds.rollup_covers.is_empty()
                && ds.rollup_covers.iter().all(|c| raw.contains_key(&(c.as_str(), tenant, ds.name.as_str())))
            {
                usable.entry((tenant.to_owned(), ds.name.clone())).or_default().push(Usable {
                    block: b,
                    dataset: d,
                    start: block.rollup_start,
                    end: block.rollup_end,
                    step,
                });
            }
        }
    }
    // Per service: whole steps inside the range, the longest span first, of
    // the widest step (a day's sums over its hours'), none overlapping one
    // already chosen; then each hour the range cuts, when most of it is
    // inside, read whole from an hour's row less the raw rows outside.
    let mut chosen: BTreeMap<(usize, usize), Vec<(i64, i64)>> = BTreeMap::new();
    let mut covered: BTreeMap<(usize, usize), Vec<TimeRange>> = BTreeMap::new();
    let mut negated_hours: BTreeMap<(usize, usize), Vec<(i64, i64)>> = BTreeMap::new();
    let (mut read_start, mut read_end) = (start_ms, end_ms);
    for (_, list) in usable {
        let mut spans: Vec<(i64, i64, &Usable)> = list
            .iter()
            .filter_map(|u| {
                let first = bucket_start(start_ms.saturating_add(u.step - 1), u.step);
                let after_last = bucket_start(end_ms.saturating_add(1), u.step);
                let (lo, hi) = (u.start.max(first), u.end.min(after_last));
                (lo < hi).then_some((lo, hi, u))
            })
            .collect();
        spans.sort_by_key(|&(lo, hi, u)| (std::cmp::Reverse(hi - lo), std::cmp::Reverse(u.step), lo));
        let mut taken: Vec<(i64, i64)> = Vec::new();
        let mut answered: Vec<(i64, i64, &Usable)> = Vec::new();
        for (lo, hi, u) in spans {
            if taken.iter().all(|&(s, e)| hi <= s || e <= lo) {
                taken.push((lo, hi));
                answered.push((lo, hi, u));
            }
        }
        for hour in cut_hours(start_ms, end_ms) {
            let inside = hour.1.min(end_ms.saturating_add(1)) - hour.0.max(start_ms);
            if inside.saturating_mul(2) <= HOUR_MS || taken.iter().any(|&(s, e)| s < hour.1 && hour.0 < e) {
                continue;
            }
            // Prefer a dataset read anyway (one object less).
            let holders = list.iter().filter(|u| u.step == HOUR_MS && u.start <= hour.0 && hour.1 <= u.end);
            let Some(u) =
                holders.min_by_key(|u| !answered.iter().any(|a| (a.2.block, a.2.dataset) == (u.block, u.dataset)))
            else {
                continue;
            };
            taken.push(hour);
            answered.push((hour.0, hour.1, u));
            read_start = read_start.min(hour.0);
            read_end = read_end.max(hour.1 - 1);
            let ds = &blocks[u.block].datasets[u.dataset];
            let tenant = tenant_of(&blocks[u.block], ds);
            for cover in &ds.rollup_covers {
                if let Some(&at) = raw.get(&(cover.as_str(), tenant, ds.name.as_str())) {
                    negated_hours.entry(at).or_default().push(hour);
                }
            }
        }
        for (lo, hi, u) in answered {
            chosen.entry((u.block, u.dataset)).or_default().push((lo, hi));
            let ds = &blocks[u.block].datasets[u.dataset];
            let tenant = tenant_of(&blocks[u.block], ds);
            // Rows of its covers inside the range are answered here.
            let (lo, hi) = (lo.max(start_ms), hi.min(end_ms.saturating_add(1)));
            for cover in &ds.rollup_covers {
                if let Some(&at) = raw.get(&(cover.as_str(), tenant, ds.name.as_str())) {
                    covered.entry(at).or_default().push(TimeRange { start: lo, end: hi - 1 });
                }
            }
        }
    }
    drop(raw);
    // The read range beyond the query's: subtracted from covers of an hour
    // read whole, skipped elsewhere.
    let outside: Vec<TimeRange> = [(read_start, start_ms - 1), (end_ms.saturating_add(1), read_end)]
        .into_iter()
        .filter(|(s, e)| s <= e)
        .map(|(start, end)| TimeRange { start, end })
        .collect();
    // Raw datasets: skip the covered rows; leave out those with nothing else.
    let mut keep: BTreeSet<(usize, usize)> = BTreeSet::new();
    for (b, block) in blocks.iter_mut().enumerate().filter(|(_, b)| !is_rollup(b)) {
        for (d, ds) in block.datasets.iter_mut().enumerate().filter(|(_, d)| !is_tenant_index(d)) {
            let mut ranges = covered.remove(&(b, d)).unwrap_or_default();
            let (lo, hi) = (ds.min_time.max(start_ms), ds.max_time.min(end_ms));
            let inside = lo <= hi && !spans(&ranges, lo, hi);
            let hours = negated_hours.get(&(b, d)).map_or(&[][..], Vec::as_slice);
            let mut negated = Vec::new();
            for o in outside.iter().filter(|o| o.start <= ds.max_time && ds.min_time <= o.end) {
                if hours.iter().any(|&(s, e)| s <= o.start && o.end < e) {
                    negated.push(*o);
                } else {
                    ranges.push(*o);
                }
            }
            if inside || !negated.is_empty() {
                keep.insert((b, d));
                ds.covered = ranges;
                ds.negated = negated;
            }
        }
    }
    for ((b, d), spans) in &chosen {
        // A rollup's rows outside the chosen steps are skipped.
        let block = &mut blocks[*b];
        let (start, end) = (block.rollup_start, block.rollup_end);
        block.datasets[*d].covered = gaps(start, end, spans);
        keep.insert((*b, *d));
    }
    for (b, block) in blocks.iter_mut().enumerate() {
        let before = block.datasets.len();
        let mut d = 0;
        block.datasets.retain(|ds| {
            let kept = is_tenant_index(ds) || keep.contains(&(b, d));
            d += 1;
            kept
        });
        // A tenant index would still list the series of a dataset left out.
        if is_rollup(block) || block.datasets.len() != before {
            block.datasets.retain(|ds| !is_tenant_index(ds));
        }
    }
    blocks.retain(|b| b.datasets.iter().any(|d| !is_tenant_index(d)));
    Plan { blocks, start_ms: read_start, end_ms: read_end }
}

/// The hours (`[start, end)` ms) that `[start_ms, end_ms]` cuts: at most
/// the first and the last.
fn cut_hours(start_ms: i64, end_ms: i64) -> Vec<(i64, i64)> {
    let whole = |h: i64| start_ms <= h && h.saturating_add(HOUR_MS - 1) <= end_ms;
    let (first, last) = (bucket_start(start_ms, HOUR_MS), bucket_start(end_ms, HOUR_MS));
    let mut hours = Vec::new();
    if !whole(first) {
        hours.push((first, first.saturating_add(HOUR_MS)));
    }
    if last != first && !whole(last) {
        hours.push((last, last.saturating_add(HOUR_MS)));
    }
    hours
}

/// `[start, end)` less `spans`, as inclusive ranges.
fn gaps(start: i64, end: i64, spans: &[(i64, i64)]) -> Vec<TimeRange> {
    let mut sorted = spans.to_vec();
    sorted.sort_unstable();
    let mut out = Vec::new();
    let mut at = start;
    for (lo, hi) in sorted {
        if lo > at {
            out.push(TimeRange { start: at, end: lo - 1 });
        }
        at = at.max(hi);
    }
    if at < end {
        out.push(TimeRange { start: at, end: end - 1 });
    }
    out
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
        // The range cuts hour 0 (half inside: raw rows) and hour 2 (half
        // and a millisecond inside: its rollup less b's rows after the end);
        // hour 1 is whole.
        let p = plan(blocks, H / 2, 2 * H + H / 2);
        let out = p.blocks;
        assert_eq!(ids(&out), ["a", "b", "r1", "r2"]);
        assert_eq!((p.start_ms, p.end_ms), (H / 2, 3 * H - 1));
        assert_eq!(out[0].datasets[0].covered, vec![TimeRange { start: H, end: 2 * H - 1 }]);
        assert!(out[0].datasets[0].negated.is_empty());
        assert_eq!(
            out[1].datasets[0].covered,
            vec![TimeRange { start: H, end: 2 * H - 1 }, TimeRange { start: 2 * H, end: 2 * H + H / 2 }]
        );
        assert_eq!(out[1].datasets[0].negated, vec![TimeRange { start: 2 * H + H / 2 + 1, end: 3 * H - 1 }]);
        assert!(out[2].datasets[0].covered.is_empty() && out[3].datasets[0].covered.is_empty());
    }

    #[test]
    fn an_hour_mostly_inside_is_read_whole_less_the_rest_and_others_skip_the_rest() {
        // Service s has hour rollups; service u (late data only, no rollup)
        // and s's late block must skip the part of the read range beyond
        // the query, not subtract it.
        let blocks = vec![
            raw("a", "s", 0, 2 * H - 1),
            raw("late", "s", 10, H + 10),
            raw("u", "u", 0, 2 * H - 1),
            rollup("r0", "s", 0, H, &["a"]),
            rollup("r1", "s", H, 2 * H, &["a"]),
        ];
        // 40 minutes of hour 0, 10 of hour 1.
        let (start, end) = (H / 3, H + H / 6 - 1);
        let p = plan(blocks, start, end);
        assert_eq!((p.start_ms, p.end_ms), (0, end));
        assert_eq!(ids(&p.blocks), ["a", "late", "u", "r0"]);
        let [a, late, u] = [&p.blocks[0], &p.blocks[1], &p.blocks[2]].map(|b| &b.datasets[0]);
        let before = TimeRange { start: 0, end: start - 1 };
        assert_eq!(a.covered, vec![TimeRange { start, end: H - 1 }]);
        assert_eq!(a.negated, vec![before]);
        assert_eq!((late.covered.clone(), late.negated.is_empty()), (vec![before], true));
        assert_eq!((u.covered.clone(), u.negated.is_empty()), (vec![before], true));
        assert!(p.blocks[3].datasets[0].covered.is_empty());
        // Both edges in one hour, 50 of its 60 minutes inside.
        let blocks = vec![raw("a", "s", 0, H - 1), rollup("r0", "s", 0, H, &["a"])];
        let p = plan(blocks, H / 12, H - H / 12 - 1);
        assert_eq!((p.start_ms, p.end_ms), (0, H - 1));
        assert_eq!(ids(&p.blocks), ["a", "r0"]);
        assert_eq!(
            p.blocks[0].datasets[0].negated,
            vec![TimeRange { start: 0, end: H / 12 - 1 }, TimeRange { start: H - H / 12, end: H - 1 }]
        );
        // 20 of its 60 minutes: raw rows only.
        let blocks = vec![raw("a", "s", 0, H - 1), rollup("r0", "s", 0, H, &["a"])];
        let p = plan(blocks, H / 3, 2 * H / 3);
        assert_eq!((ids(&p.blocks), p.start_ms, p.end_ms), (vec!["a"], H / 3, 2 * H / 3));
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
        assert_eq!(ids(&plan(blocks.clone(), 0, 24 * H - 1).blocks), ["d"]);
        // Two hours: the day's rollup (one object), its other hours skipped.
        let out = plan(blocks.clone(), 0, 2 * H - 1).blocks;
        assert_eq!(ids(&out), ["d"]);
        assert_eq!(out[0].datasets[0].covered, vec![TimeRange { start: 2 * H, end: 24 * H - 1 }]);
        // Cut inside hours: whole hours 1..5 from the day's rollup, the rest
        // of hour 0 from block a; block b is all covered.
        let out = plan(blocks, H / 2, 5 * H + 10).blocks;
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
        let out = plan(blocks.clone(), 0, 24 * H - 1).blocks;
        assert_eq!(ids(&out), ["day"]);
        assert!(out[0].datasets[0].covered.is_empty());
        // One millisecond short of the day: its hours, the last one whole
        // less b's last millisecond.
        let p = plan(blocks, 0, 24 * H - 2);
        let out = p.blocks;
        assert_eq!((p.start_ms, p.end_ms), (0, 24 * H - 1));
        assert_eq!(ids(&out), ["b", "hours"]);
        assert_eq!(
            out[0].datasets[0].covered,
            vec![TimeRange { start: 0, end: 23 * H - 1 }, TimeRange { start: 23 * H, end: 24 * H - 2 }]
        );
        assert_eq!(out[0].datasets[0].negated, vec![TimeRange { start: 24 * H - 1, end: 24 * H - 1 }]);
        assert!(out[1].datasets[0].covered.is_empty());
    }

    #[test]
    fn a_rollup_whose_cover_is_gone_or_deleted_is_not_used() {
        // Cover "x" is not in the answer (rewritten, expired): raw rows only.
        let blocks = vec![raw("a", "s", 0, H - 1), rollup("r0", "s", 0, H, &["a", "x"])];
        assert_eq!(ids(&plan(blocks, 0, H).blocks), ["a"]);
        let mut pending = rollup("r0", "s", 0, H, &["a"]);
        pending.datasets[0].deleted = vec![TimeRange { start: 10, end: 20 }];
        let blocks = vec![raw("a", "s", 0, H - 1), pending];
        let out = plan(blocks, 0, H).blocks;
        assert_eq!(ids(&out), ["a"]);
        assert!(out[0].datasets[0].covered.is_empty());
    }

    #[test]
    fn late_data_that_a_rollup_does_not_cover_is_read_raw() {
        let blocks = vec![raw("a", "s", 0, H - 1), raw("late", "s", 100, 200), rollup("r0", "s", 0, H, &["a"])];
        assert_eq!(ids(&plan(blocks, 0, H).blocks), ["late", "r0"]);
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
        // Hour 13 is all but 5 ms inside: read whole, less b's first 5 ms.
        let p = plan(blocks, 13 * H + 5, 20 * H);
        let out = p.blocks;
        assert_eq!((p.start_ms, p.end_ms), (13 * H, 20 * H));
        assert_eq!(ids(&out), ["b", "hours"]);
        assert_eq!(
            out[0].datasets[0].covered,
            vec![TimeRange { start: 14 * H, end: 20 * H - 1 }, TimeRange { start: 13 * H + 5, end: 14 * H - 1 }]
        );
        assert_eq!(out[0].datasets[0].negated, vec![TimeRange { start: 13 * H, end: 13 * H + 4 }]);
        assert_eq!(
            out[1].datasets[0].covered,
            vec![TimeRange { start: 0, end: 13 * H - 1 }, TimeRange { start: 20 * H, end: 24 * H - 1 }]
        );
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
