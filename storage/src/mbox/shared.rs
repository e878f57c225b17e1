//! Decoded indexes shared by all sessions of one process (one [`crate::Spool`] and its
//! clones), so that a new session's first command on a large mailbox (an IMAP SELECT
//! right after LOGIN, a POP3 STAT, a STATUS) costs an index header read instead of
//! reading and decoding the whole index.
//!
//! An entry is used only when the index file, opened and read again under the mailbox
//! lock, still has the same inode and the same header bytes (which carry the generation
//! every change bumps, the message count and the mbox's size and mtime); see
//! [`super::Mailbox::read_cached`]. So nothing is trusted across a lock boundary that
//! was not checked against the spool after taking the lock (invariant 2): the cache
//! only saves decoding bytes identical to what was decoded before.
//!
//! Bounded by the number of message records held ([`BUDGET`]); the least recently used
//! mailboxes go first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::IndexCache;

/// Records (64 bytes each in memory) the cache may hold in all: 16 MB.
pub const BUDGET: usize = 256 * 1024;
/// Mailboxes it may hold, whatever their size (each entry also keeps its 4 KB header, so
/// at most 4 MB of those; and eviction scans stay short).
const MAX_ENTRIES: usize = 1024;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct SharedIndexes {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<PathBuf, Entry>,
    records: usize,
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    cache: IndexCache,
    used: u64,
}

impl SharedIndexes {
    /// The entry for `path` if it was filled from a file with this inode and header.
    pub fn get(&self, path: &Path, ino: u64, header: &[u8]) -> Option<IndexCache> {
        let mut inner = self.inner.lock().ok()?;
        inner.clock += 1;
        let clock = inner.clock;
        let entry = inner.entries.get_mut(path)?;
        if entry.cache.ino != ino || entry.cache.header != header {
            return None;
        }
        entry.used = clock;
        Some(entry.cache.clone())
    }

    /// Remember `cache` for `path` (replacing what was there), evicting the least
    /// recently used entries beyond the budget.
    pub fn put(&self, path: &Path, cache: IndexCache) {
        let size = cache.index.messages.len();
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Some(old) = inner.entries.remove(path) {
            inner.records -= old.cache.index.messages.len();
        }
        if size > BUDGET {
            return;
        }
        while inner.records + size > BUDGET || inner.entries.len() >= MAX_ENTRIES {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.records -= e.cache.index.messages.len();
            }
        }
        inner.clock += 1;
        let used = inner.clock;
        inner.records += size;
        inner
            .entries
            .insert(path.to_path_buf(), Entry { cache, used });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|i| i.entries.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Index, MboxStat, MessageMeta};
    use crate::Flags;
    use std::sync::Arc;

    fn cache(messages: usize, generation: u8) -> IndexCache {
        let mut index = Index::new(1, MboxStat::default());
        for i in 0..messages {
            index.push(MessageMeta {
                uid: 0,
                flags: Flags::empty(),
                keywords: 0,
                offset: i as u64 * 10,
                from_len: 5,
                len: 10,
                size: 4,
                date: 0,
                fp: 0,
                bare_lf: 0,
            });
        }
        IndexCache {
            header: vec![generation; 16],
            ino: 7,
            index: Arc::new(index),
        }
    }

    #[test]
    fn hit_only_on_same_inode_and_header() {
        let shared = SharedIndexes::default();
        let p = Path::new("/spool/index/u/INBOX.idx");
        shared.put(p, cache(3, 1));
        assert!(shared.get(p, 7, &[1; 16]).is_some());
        assert!(shared.get(p, 8, &[1; 16]).is_none(), "other inode");
        assert!(shared.get(p, 7, &[2; 16]).is_none(), "other header");
        assert!(shared.get(Path::new("/other"), 7, &[1; 16]).is_none());
    }

    #[test]
    fn least_recently_used_go_first_beyond_the_budget() {
        let shared = SharedIndexes::default();
        let (a, b, c) = (Path::new("/a"), Path::new("/b"), Path::new("/c"));
        let third = BUDGET / 3;
        shared.put(a, cache(third, 1));
        shared.put(b, cache(third, 1));
        assert!(shared.get(a, 7, &[1; 16]).is_some());
        shared.put(c, cache(third + 10, 1));
        assert!(
            shared.get(b, 7, &[1; 16]).is_none(),
            "b was least recently used"
        );
        assert!(shared.get(a, 7, &[1; 16]).is_some());
        assert!(shared.get(c, 7, &[1; 16]).is_some());
        shared.put(a, cache(BUDGET + 1, 2));
        assert_eq!(shared.len(), 1, "too big to keep, and the old a is gone");
    }
}
