//! The gateway's cache: a small store the host shares between every call of this gateway's
//! plugin, for what is costly to fetch and safe to lose (an OAuth access token, a PSP's
//! signing certificate). The host may drop an entry at any time, so a miss must lead to a
//! refetch, never to a failure or a different answer.

use std::time::Duration;

/// The value stored under `key`, unless it expired or the host dropped it.
pub fn get(key: &str) -> Option<Vec<u8>> {
    crate::host::cache_get(key)
}

/// [`get`] as UTF-8 text; a value that is not text counts as a miss.
pub fn get_text(key: &str) -> Option<String> {
    get(key).and_then(|v| String::from_utf8(v).ok())
}

/// Keeps `value` under `key` for `ttl` (the host may keep it shorter; at most 24 hours).
pub fn set(key: &str, value: &[u8], ttl: Duration) {
    let ms = u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX);
    crate::host::cache_set(key, value, ms)
}

/// Forgets `key` (say, a token the PSP refused before it expired).
pub fn remove(key: &str) {
    crate::host::cache_remove(key)
}
