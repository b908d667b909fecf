//! Keys of profiles this writer made durable recently, expiring after the
//! dedup window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use phlox_model::ProfileKey;
use rustc_hash::FxHashSet;

#[derive(Debug)]
pub(crate) struct RecentKeys {
    window: Duration,
    set: FxHashSet<ProfileKey>,
    order: VecDeque<(Instant, ProfileKey)>,
}

impl RecentKeys {
    pub(crate) fn new(window: Duration) -> Self {
        Self { window, set: FxHashSet::default(), order: VecDeque::new() }
    }

    pub(crate) fn contains(&self, k: &ProfileKey) -> bool {
        self.set.contains(k)
    }

    pub(crate) fn insert_all(&mut self, now: Instant, keys: impl Iterator<Item = ProfileKey>) {
        for k in keys {
            if self.set.insert(k) {
                self.order.push_back((now, k));
            }
        }
        while let Some(&(t, k)) = self.order.front() {
            if now.duration_since(t) <= self.window {
                break;
            }
            self.order.pop_front();
            self.set.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_expire_after_the_window() {
        let mut r = RecentKeys::new(Duration::from_secs(10));
        let t0 = Instant::now();
        r.insert_all(t0, [ProfileKey([1; 16])].into_iter());
        assert!(r.contains(&ProfileKey([1; 16])));
        r.insert_all(t0 + Duration::from_secs(11), [ProfileKey([2; 16])].into_iter());
        assert!(!r.contains(&ProfileKey([1; 16])));
        assert!(r.contains(&ProfileKey([2; 16])));
    }
}
