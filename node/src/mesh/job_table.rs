//! A bounded, expiring map of per-job state (§15.3): at most `cap` jobs, each dropped once
//! it is `ttl` old. Time is an argument, so that expiry is tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Why a job was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `cap` unexpired jobs are already held.
    Full,
    /// A job with this id is already held.
    Duplicate,
}

/// Jobs by id, each with the time it was added.
#[derive(Debug)]
pub struct JobTable<T> {
    entries: HashMap<[u8; 16], (Instant, T)>,
    cap: usize,
    ttl: Duration,
}

impl<T> JobTable<T> {
    /// An empty table holding at most `cap` jobs for at most `ttl` each.
    pub fn new(cap: usize, ttl: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            cap,
            ttl,
        }
    }

    /// Drops every job that is `ttl` old or older at `now`.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.entries
            .retain(|_, (added, _)| now.saturating_duration_since(*added) < ttl);
    }

    /// Whether an unexpired job `id` is held at `now`.
    pub fn contains(&mut self, id: &[u8; 16], now: Instant) -> bool {
        self.expire(now);
        self.entries.contains_key(id)
    }

    /// Adds job `id` at `now`, after dropping expired ones.
    pub fn insert(&mut self, id: [u8; 16], value: T, now: Instant) -> Result<(), Refused> {
        self.expire(now);
        if self.entries.len() >= self.cap {
            return Err(Refused::Full);
        }
        if self.entries.contains_key(&id) {
            return Err(Refused::Duplicate);
        }
        self.entries.insert(id, (now, value));
        Ok(())
    }

    /// The state of job `id` if it is held and unexpired at `now`.
    pub fn get_mut(&mut self, id: &[u8; 16], now: Instant) -> Option<&mut T> {
        self.expire(now);
        self.entries.get_mut(id).map(|(_, v)| v)
    }

    /// Removes job `id`.
    pub fn remove(&mut self, id: &[u8; 16]) -> Option<T> {
        self.entries.remove(id).map(|(_, v)| v)
    }

    /// Jobs held, expired or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no job is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(i: u8) -> [u8; 16] {
        [i; 16]
    }

    #[test]
    fn capacity_is_enforced_until_jobs_expire() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(120);
        let mut t = JobTable::new(32, ttl);
        for i in 0..32 {
            t.insert(id(i), i, t0).unwrap();
        }
        assert_eq!(t.insert(id(200), 200, t0), Err(Refused::Full));
        // One tick before the ttl every job is still there, and the table is still full.
        let before = t0 + ttl - Duration::from_millis(1);
        assert_eq!(t.insert(id(200), 200, before), Err(Refused::Full));
        assert_eq!(t.get_mut(&id(5), before), Some(&mut 5));
        // At the ttl they are gone: the old ids are unknown and there is room again.
        let at = t0 + ttl;
        assert!(t.get_mut(&id(5), at).is_none());
        assert!(!t.contains(&id(0), at));
        assert!(t.is_empty());
        t.insert(id(200), 200, at).unwrap();
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn duplicates_are_refused_and_removal_frees_the_id() {
        let t0 = Instant::now();
        let mut t = JobTable::new(2, Duration::from_secs(10));
        t.insert(id(1), "a", t0).unwrap();
        assert_eq!(t.insert(id(1), "b", t0), Err(Refused::Duplicate));
        assert_eq!(t.remove(&id(1)), Some("a"));
        t.insert(id(1), "b", t0).unwrap();
        assert_eq!(t.get_mut(&id(1), t0), Some(&mut "b"));
    }

    #[test]
    fn jobs_expire_by_their_own_age() {
        let t0 = Instant::now();
        let mut t = JobTable::new(4, Duration::from_secs(10));
        t.insert(id(1), 1, t0).unwrap();
        t.insert(id(2), 2, t0 + Duration::from_secs(6)).unwrap();
        let later = t0 + Duration::from_secs(12);
        assert!(t.get_mut(&id(1), later).is_none());
        assert_eq!(t.get_mut(&id(2), later), Some(&mut 2));
    }
}
