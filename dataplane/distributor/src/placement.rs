//! Shard placement, a pure function every distributor computes the same way:
//! a dataset (tenant, service) owns `shards_per_dataset` consecutive shards
//! starting at its jump-consistent-hash slot; a series picks one of them by
//! fingerprint. Keeping a service on few shards keeps its symbols together
//! (dedup), spreading over more than one keeps a hot service off a single
//! writer. The distributor caps `shards_per_dataset` at the number of
//! writers: shards are dealt to writers round-robin, so consecutive shards
//! are on distinct writers and no writer holds two shards of one dataset
//! (each would intern its symbols again, every segment).

use xxhash_rust::xxh3::xxh3_64;

/// Jump consistent hash (Lamping & Veach, 2014): a bucket in `0..buckets`.
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let buckets = i64::from(buckets.max(1));
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

/// The segment writer (index into the live writers, sorted by id) that owns
/// `shard`: shards are dealt round-robin, so every writer owns ⌊S/n⌋ or
/// ⌈S/n⌉ of the S shards for any number n of writers. (Hashing the raw shard
/// numbers, as a consistent hash of 4 shards over 2 writers did, could give
/// one writer every shard.) Writers hold no state between segments, so the
/// shards that move when n changes cost nothing but a new owner.
pub fn writer_for_shard(shard: u32, writers: u32) -> u32 {
    shard % writers.max(1)
}

/// The shard of one series.
pub fn shard_for(tenant: &str, service: &str, series_fingerprint: u64, shards: u32, shards_per_dataset: u32) -> u32 {
    let shards = shards.max(1);
    let mut key = Vec::with_capacity(tenant.len() + service.len() + 1);
    key.extend_from_slice(tenant.as_bytes());
    key.push(0xff);
    key.extend_from_slice(service.as_bytes());
    let first = jump_hash(xxh3_64(&key), shards);
    let k = shards_per_dataset.clamp(1, shards);
    (first + (series_fingerprint % u64::from(k)) as u32) % shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hash_is_stable_and_moves_few_keys() {
        assert_eq!(jump_hash(0, 1), 0);
        let moved = (0..10_000u64).filter(|&k| jump_hash(k, 10) != jump_hash(k, 11)).count();
        // About 1/11 of the keys move when a bucket is added.
        assert!((700..1200).contains(&moved), "{moved}");
        for k in 0..1000u64 {
            assert!(jump_hash(k, 7) < 7);
        }
    }

    #[test]
    fn shards_spread_evenly_over_any_number_of_writers() {
        for shards in [4, 16, 64] {
            for writers in 1..=16u32 {
                let mut owned = vec![0u32; writers as usize];
                for s in 0..shards {
                    let w = writer_for_shard(s, writers);
                    assert!(w < writers);
                    owned[w as usize] += 1;
                }
                let (min, max) = (*owned.iter().min().unwrap(), *owned.iter().max().unwrap());
                assert_eq!(owned.iter().sum::<u32>(), shards);
                assert!(max - min <= 1, "{shards} shards over {writers} writers: {owned:?}");
                assert_eq!(max, shards.div_ceil(writers), "{shards} shards over {writers} writers: {owned:?}");
            }
        }
        // The default: 4 shards, a dataset on 2 consecutive ones: with 2
        // writers every dataset has one shard on each.
        for service in ["svc", "api", "web", "checkout", "cart"] {
            let a = shard_for("t", service, 0, 4, 2);
            let b = shard_for("t", service, 1, 4, 2);
            assert_ne!(writer_for_shard(a, 2), writer_for_shard(b, 2), "{service}");
        }
    }

    #[test]
    fn a_dataset_stays_on_its_shards() {
        // Two consecutive shards (modulo the shard count), chosen by the
        // fingerprint's parity.
        for service in ["svc", "api", "web", "checkout"] {
            let mut used: Vec<u32> = (0..1000).map(|fp| shard_for("t", service, fp, 16, 2)).collect();
            used.sort();
            used.dedup();
            assert_eq!(used.len(), 2, "{service}: {used:?}");
            let (even, odd) = (shard_for("t", service, 0, 16, 2), shard_for("t", service, 1, 16, 2));
            assert_eq!(odd, (even + 1) % 16, "{service}");
            assert!((0..1000).all(|fp| shard_for("t", service, fp, 16, 2) == if fp % 2 == 0 { even } else { odd }));
        }
        // One shard in all: everything on shard 0; more shards per dataset
        // than shards: every shard used.
        assert!((0..100).all(|fp| shard_for("t", "svc", fp, 1, 4) == 0));
        let mut all: Vec<u32> = (0..100).map(|fp| shard_for("t", "svc", fp, 3, 8)).collect();
        all.sort();
        all.dedup();
        assert_eq!(all, vec![0, 1, 2]);
        // Datasets spread: 200 services over 16 shards start on every shard.
        let mut starts: Vec<u32> = (0..200).map(|i| shard_for("t", &format!("svc-{i}"), 0, 16, 1)).collect();
        starts.sort();
        starts.dedup();
        assert_eq!(starts.len(), 16, "{starts:?}");
    }
}

/// How many shards each dataset spreads over, adapted to its ingest rate:
/// `ceil(rate / unit)` clamped to `[min, max]`, measured over windows of
/// [`RATE_WINDOW`]. It grows at once (a hot service gets more shards, so
/// more segment writers, within one window) and shrinks one shard at a time
/// after [`SHRINK_AFTER`] low windows, so a noisy rate does not move series
/// back and forth. Local to each distributor: with several distributors each
/// sees its share of a dataset's traffic, and a series may then land on a
/// different shard than another distributor picks, which only costs some
/// symbol deduplication (profiles are deduplicated by id in the metastore).
#[derive(Debug)]
pub struct AdaptiveShards {
    min: u32,
    max: u32,
    unit_bytes_per_second: f64,
    datasets: std::sync::Mutex<Datasets>,
}

/// Length of one rate measurement.
pub const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);
/// Low windows in a row before a dataset gives a shard back.
pub const SHRINK_AFTER: u32 = 3;
/// A dataset idle this long is forgotten (it starts again at `min`).
const IDLE: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug, Default)]
struct Datasets {
    by_key: std::collections::HashMap<(String, String), DatasetRate>,
    last_sweep: Option<std::time::Instant>,
}

#[derive(Debug)]
struct DatasetRate {
    window_start: std::time::Instant,
    bytes: u64,
    shards: u32,
    low_windows: u32,
}

/// A change of a dataset's shard count, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardChange {
    Grew,
    Shrank,
}

impl AdaptiveShards {
    /// Datasets use `min..=max` shards, one per `unit_bytes_per_second` of
    /// uncompressed profile bytes.
    pub fn new(min: u32, max: u32, unit_bytes_per_second: f64) -> Self {
        let min = min.max(1);
        Self {
            min,
            max: max.max(min),
            unit_bytes_per_second: if unit_bytes_per_second > 0.0 { unit_bytes_per_second } else { f64::INFINITY },
            datasets: std::sync::Mutex::new(Datasets::default()),
        }
    }

    /// Records `bytes` of a dataset at `now` and returns its shard count
    /// (and whether it just changed).
    pub fn observe(
        &self,
        tenant: &str,
        service: &str,
        bytes: u64,
        now: std::time::Instant,
    ) -> (u32, Option<ShardChange>) {
        let mut guard = self.datasets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let datasets = &mut *guard;
        if datasets.last_sweep.is_none_or(|t| now.saturating_duration_since(t) >= IDLE) {
            datasets.by_key.retain(|_, d| now.saturating_duration_since(d.window_start) < IDLE);
            datasets.last_sweep = Some(now);
        }
        let key = (tenant.to_owned(), service.to_owned());
        let d = datasets.by_key.entry(key).or_insert(DatasetRate {
            window_start: now,
            bytes: 0,
            shards: self.min,
            low_windows: 0,
        });
        d.bytes = d.bytes.saturating_add(bytes);
        let elapsed = now.saturating_duration_since(d.window_start);
        let mut change = None;
        if elapsed >= RATE_WINDOW {
            let rate = d.bytes as f64 / elapsed.as_secs_f64();
            let want = ((rate / self.unit_bytes_per_second).ceil() as u32).clamp(self.min, self.max);
            if want > d.shards {
                d.shards = want;
                d.low_windows = 0;
                change = Some(ShardChange::Grew);
            } else if want < d.shards {
                d.low_windows += 1;
                if d.low_windows >= SHRINK_AFTER {
                    d.shards -= 1;
                    d.low_windows = 0;
                    change = Some(ShardChange::Shrank);
                }
            } else {
                d.low_windows = 0;
            }
            d.window_start = now;
            d.bytes = 0;
        }
        (d.shards, change)
    }
}

#[cfg(test)]
mod adaptive_tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Feeds `rate` bytes/s for `secs` seconds in 1 s pushes; the shard count after each push.
    fn feed(a: &AdaptiveShards, t0: Instant, from_s: u64, secs: u64, rate: u64) -> Vec<u32> {
        (from_s..from_s + secs).map(|s| a.observe("t", "svc", rate, t0 + Duration::from_secs(s + 1)).0).collect()
    }

    #[test]
    fn shards_follow_the_rate_up_at_once_and_down_slowly() {
        let a = AdaptiveShards::new(2, 8, 1000.0);
        let t0 = Instant::now();
        a.observe("t", "svc", 0, t0);
        // 500 B/s: the minimum.
        assert!(feed(&a, t0, 0, 30, 500).iter().all(|&k| k == 2));
        // 5 kB/s: 5 shards at the end of the first full window.
        let up = feed(&a, t0, 30, 20, 5000);
        assert_eq!(&up[..9], &[2; 9]);
        assert_eq!(up[9], 5, "{up:?}");
        assert!(up[9..].iter().all(|&k| k == 5));
        // 50 kB/s: capped at 8.
        assert_eq!(*feed(&a, t0, 50, 10, 50_000).last().unwrap(), 8);
        // Back to 500 B/s: one shard fewer every 3 windows, down to 2.
        let down = feed(&a, t0, 60, 200, 500);
        let changes: Vec<u32> = down.windows(2).filter(|w| w[0] != w[1]).map(|w| w[1]).collect();
        assert_eq!(changes, vec![7, 6, 5, 4, 3, 2], "{down:?}");
        assert_eq!(down.iter().position(|&k| k == 7), Some(29), "3 windows of 10 s");
        // Other datasets are independent.
        assert_eq!(a.observe("t", "other", 1_000_000, t0 + Duration::from_secs(300)).0, 2);
    }

    #[test]
    fn a_rate_that_wobbles_around_a_boundary_does_not_flap() {
        let a = AdaptiveShards::new(1, 8, 1000.0);
        let t0 = Instant::now();
        a.observe("t", "svc", 0, t0);
        let mut all = Vec::new();
        for w in 0..30u64 {
            // Alternating 2.9 kB/s and 1.9 kB/s windows (3 and 2 shards wanted):
            // it grows to 3 once and stays.
            let rate = if w % 2 == 0 { 2900 } else { 1900 };
            all.extend(feed(&a, t0, w * 10, 10, rate));
        }
        let changes = all.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!(changes, 1, "{all:?}");
        assert_eq!(*all.last().unwrap(), 3);
    }
}
