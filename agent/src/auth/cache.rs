//! Short-lived caches for network account backends: positive lookups only, so a new
//! user or address is seen at once while a removed one lingers at most the TTL, and
//! passwords only as a keyed hash.
//!
//! Why cache at all: every RCPT and every login would otherwise be a directory round
//! trip, and IMAP clients log in again for every folder they poll.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Entries kept at most; when full, expired entries are dropped, then everything (a
/// cache miss is only a directory query, so the simplest bound will do).
const MAX_ENTRIES: usize = 10_000;

/// A map whose entries expire `ttl` after insertion. A zero TTL disables it.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        TtlCache {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(key) {
            Some((born, v)) if born.elapsed() < self.ttl => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            map.retain(|_, (born, _)| born.elapsed() < ttl);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), value));
    }

    pub fn remove(&self, key: &K) {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// Successful logins: login → (user, keyed SHA-256 of the password). The key is random
/// per process and never leaves memory, so a memory dump does not give hashes that can
/// be attacked offline with a precomputed table, nor ones valid on another host.
#[derive(Debug)]
pub struct PasswordCache {
    key: Option<[u8; 32]>,
    entries: TtlCache<String, (String, [u8; 32])>,
}

impl PasswordCache {
    /// Disabled (every lookup misses) if `ttl` is zero or no random key can be had.
    pub fn new(ttl: Duration) -> Self {
        let key = random_key();
        if key.is_none() && !ttl.is_zero() {
            tracing::warn!("no random key for the password cache; logins are not cached");
        }
        PasswordCache {
            key,
            entries: TtlCache::new(if key.is_some() { ttl } else { Duration::ZERO }),
        }
    }

    fn digest(key: &[u8; 32], login: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(key);
        h.update(login.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// The user `login` authenticated as, if it did with this same password within the
    /// TTL.
    pub fn get(&self, login: &str, password: &str) -> Option<String> {
        let key = self.key.as_ref()?;
        let (user, stored) = self.entries.get(&login.to_string())?;
        let given = Self::digest(key, login, password);
        // Constant time, like every other password comparison.
        let diff = stored.iter().zip(given).fold(0u8, |d, (a, b)| d | (a ^ b));
        (diff == 0).then_some(user)
    }

    pub fn insert(&self, login: &str, password: &str, user: &str) {
        if let Some(key) = &self.key {
            let digest = Self::digest(key, login, password);
            self.entries
                .insert(login.to_string(), (user.to_string(), digest));
        }
    }

    /// Forget `login` (after the directory refused its password).
    pub fn remove(&self, login: &str) {
        self.entries.remove(&login.to_string());
    }
}

fn random_key() -> Option<[u8; 32]> {
    use std::io::Read as _;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .ok()?;
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_cache_expires_and_zero_disables() {
        let c = TtlCache::new(Duration::from_millis(50));
        c.insert("a", 1);
        assert_eq!(c.get(&"a"), Some(1));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.get(&"a"), None);
        let off = TtlCache::new(Duration::ZERO);
        off.insert("a", 1);
        assert_eq!(off.get(&"a"), None);
    }

    #[test]
    fn password_cache_matches_only_the_same_password() {
        let c = PasswordCache::new(Duration::from_secs(60));
        assert_eq!(c.get("alice", "pw"), None);
        c.insert("alice", "pw", "alice");
        assert_eq!(c.get("alice", "pw").as_deref(), Some("alice"));
        assert_eq!(c.get("alice", "pw2"), None);
        assert_eq!(c.get("bob", "pw"), None);
        // The stored value is not the password, nor its plain hash.
        let stored = c.entries.get(&"alice".to_string()).unwrap().1;
        assert_ne!(stored.as_slice(), Sha256::digest(b"pw").as_slice());
        c.remove("alice");
        assert_eq!(c.get("alice", "pw"), None);
    }
}
