//! The `cache` import of contract 0.2: one small store per gateway, shared by every instance
//! of its plugin, for what is costly to fetch and safe to lose (OAuth access tokens, signing
//! certificates). Bounded in entries and bytes; entries expire by their TTL; when full, the
//! entry closest to expiry goes first. Memory only: a restart costs a refetch.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries one gateway may hold.
const MAX_ENTRIES: usize = 256;
/// Key and value bytes one gateway may hold in all.
const MAX_BYTES: usize = 1 << 20;
/// A single value past this is not kept (a cache entry, not a blob store).
const MAX_VALUE: usize = 64 << 10;
const MAX_KEY: usize = 256;
/// No entry outlives this, whatever TTL the plugin asks for.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Default)]
pub struct GatewayCache {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, (Vec<u8>, Instant)>,
    bytes: usize,
}

impl Entries {
    fn remove(&mut self, key: &str) {
        if let Some((value, _)) = self.map.remove(key) {
            self.bytes -= key.len() + value.len();
        }
    }
}

impl GatewayCache {
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.get_at(key, Instant::now())
    }

    pub fn set(&self, key: String, value: Vec<u8>, ttl: Duration) {
        self.set_at(key, value, ttl, Instant::now())
    }

    pub fn remove(&self, key: &str) {
        self.entries.lock().expect("cache lock").remove(key);
    }

    fn get_at(&self, key: &str, now: Instant) -> Option<Vec<u8>> {
        let mut entries = self.entries.lock().expect("cache lock");
        match entries.map.get(key) {
            Some((value, expires)) if *expires > now => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn set_at(&self, key: String, value: Vec<u8>, ttl: Duration, now: Instant) {
        let mut entries = self.entries.lock().expect("cache lock");
        entries.remove(&key);
        if key.len() > MAX_KEY || value.len() > MAX_VALUE || ttl.is_zero() {
            return;
        }
        let size = key.len() + value.len();
        if entries.map.len() >= MAX_ENTRIES || entries.bytes + size > MAX_BYTES {
            let expired: Vec<String> = entries
                .map
                .iter()
                .filter(|(_, (_, expires))| *expires <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for k in expired {
                entries.remove(&k);
            }
        }
        while entries.map.len() >= MAX_ENTRIES || entries.bytes + size > MAX_BYTES {
            let soonest = entries
                .map
                .iter()
                .min_by_key(|(_, (_, expires))| *expires)
                .map(|(k, _)| k.clone());
            match soonest {
                Some(k) => entries.remove(&k),
                None => break,
            }
        }
        entries.bytes += size;
        entries.map.insert(key, (value, now + ttl.min(MAX_TTL)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_by_their_ttl_and_can_be_removed() {
        let cache = GatewayCache::default();
        let t0 = Instant::now();
        cache.set_at("token".into(), b"abc".to_vec(), Duration::from_secs(60), t0);
        assert_eq!(
            cache
                .get_at("token", t0 + Duration::from_secs(59))
                .as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(cache.get_at("token", t0 + Duration::from_secs(60)), None);
        cache.set_at("token".into(), b"abc".to_vec(), Duration::from_secs(60), t0);
        cache.remove("token");
        assert_eq!(cache.get_at("token", t0), None);
        assert_eq!(cache.entries.lock().unwrap().bytes, 0);
        // Capped TTL, and oversized or zero-TTL values are not kept.
        cache.set_at(
            "long".into(),
            vec![1],
            Duration::from_secs(10 * 24 * 3600),
            t0,
        );
        assert_eq!(cache.get_at("long", t0 + MAX_TTL), None);
        cache.set_at(
            "big".into(),
            vec![0; MAX_VALUE + 1],
            Duration::from_secs(60),
            t0,
        );
        cache.set_at("zero".into(), vec![1], Duration::ZERO, t0);
        assert_eq!(
            (cache.get_at("big", t0), cache.get_at("zero", t0)),
            (None, None)
        );
    }

    #[test]
    fn a_full_cache_drops_the_entry_closest_to_expiry() {
        let cache = GatewayCache::default();
        let t0 = Instant::now();
        for i in 0..MAX_ENTRIES {
            let ttl = Duration::from_secs(100 + i as u64);
            cache.set_at(format!("k{i}"), vec![0; 8], ttl, t0);
        }
        cache.set_at("new".into(), vec![1], Duration::from_secs(1000), t0);
        assert_eq!(cache.get_at("k0", t0), None, "soonest to expire went first");
        assert!(cache.get_at("k1", t0).is_some());
        assert!(cache.get_at("new", t0).is_some());
        let entries = cache.entries.lock().unwrap();
        assert_eq!(entries.map.len(), MAX_ENTRIES);
        let bytes: usize = entries
            .map
            .iter()
            .map(|(k, (v, _))| k.len() + v.len())
            .sum();
        assert_eq!(entries.bytes, bytes);
        drop(entries);
        // The byte bound holds too: big values push the others out.
        for i in 0..40 {
            cache.set_at(
                format!("b{i}"),
                vec![0; MAX_VALUE],
                Duration::from_secs(5000),
                t0,
            );
        }
        assert!(cache.entries.lock().unwrap().bytes <= MAX_BYTES);
        assert!(cache.get_at("b39", t0).is_some());
    }
}
