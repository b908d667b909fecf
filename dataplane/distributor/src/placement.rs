//! Shard placement, a pure function every distributor computes the same way:
//! a dataset (tenant, service) owns `shards_per_dataset` consecutive shards
//! starting at its jump-consistent-hash slot; a series picks one of them by
//! fingerprint. Keeping a service on few shards keeps its symbols together
//! (dedup), spreading over more than one keeps a hot service off a single
//! shard.

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
    fn a_dataset_stays_on_its_shards() {
        let mut used: Vec<u32> = (0..1000).map(|fp| shard_for("t", "svc", fp, 16, 2)).collect();
        used.sort();
        used.dedup();
        assert_eq!(used.len(), 2);
        assert_eq!(shard_for("t", "svc", 5, 16, 2), shard_for("t", "svc", 5, 16, 2));
        assert!(shard_for("t", "svc", 5, 1, 4) == 0);
    }
}
