//! Keys remembered for a while, each with a value: the decisions the engine replays for a
//! flow's next packets, the final verdicts of peeked flows, the flows the reader looked up.
//! Time is passed in, so it is tested in virtual time.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A map whose entries are forgotten `keep` after they were last inserted.
#[derive(Debug)]
pub(crate) struct Recent<K, V> {
    keep: Duration,
    map: HashMap<K, (Instant, V)>,
    /// Insertions in time order; an entry whose key was inserted again since is skipped.
    order: VecDeque<(Instant, K)>,
}

impl<K: Hash + Eq + Copy, V> Recent<K, V> {
    /// Nothing remembered yet; entries last `keep`.
    pub(crate) fn new(keep: Duration) -> Self {
        Self { keep, map: HashMap::new(), order: VecDeque::new() }
    }

    /// Remembers `value` for `key` from `now` (a value already there is replaced, and kept
    /// from `now`).
    pub(crate) fn insert(&mut self, now: Instant, key: K, value: V) {
        self.map.insert(key, (now, value));
        self.order.push_back((now, key));
    }

    /// As [`insert`](Self::insert), forgetting the oldest entries first while `most` are
    /// remembered.
    pub(crate) fn insert_bounded(&mut self, now: Instant, key: K, value: V, most: usize) {
        while self.map.len() >= most && !self.map.contains_key(&key) {
            let Some((at, old)) = self.order.pop_front() else { break };
            if self.map.get(&old).is_some_and(|(last, _)| *last == at) {
                self.map.remove(&old);
            }
        }
        self.insert(now, key, value);
    }

    /// The value remembered for `key`.
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(_, v)| v)
    }

    /// How many keys are remembered.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether `key` is remembered.
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Forgets `key` now.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        self.map.remove(key).map(|(_, v)| v)
    }

    /// Forgets what was inserted `keep` or longer before `now`.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.order.front() {
            if now.duration_since(at) < self.keep {
                break;
            }
            self.order.pop_front();
            if self.map.get(&key).is_some_and(|(last, _)| *last == at) {
                self.map.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods, reason = "a starting instant for virtual time")]
    fn entries_last_from_their_last_insertion() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut r: Recent<u32, &str> = Recent::new(2 * s);
        r.insert(t0, 1, "a");
        r.insert(t0 + s, 2, "b");
        r.insert(t0 + s, 1, "c");
        r.expire(t0 + 2 * s);
        assert_eq!(r.get(&1), Some(&"c"), "inserted again at 1 s: kept until 3 s");
        assert!(r.contains(&2));
        r.expire(t0 + 3 * s);
        assert!(!r.contains(&1) && !r.contains(&2));
        r.insert(t0 + 3 * s, 3, "d");
        assert_eq!(r.remove(&3), Some("d"));
        assert_eq!(r.get(&3), None);
        // Bounded: the oldest goes first, a key inserted again counts from its last time.
        for (i, k) in [4, 5, 4, 6].into_iter().enumerate() {
            r.insert_bounded(t0 + 4 * s + s * u32::try_from(i).unwrap_or(0), k, "e", 2);
        }
        assert!(!r.contains(&5) && r.contains(&4) && r.contains(&6));
    }
}
