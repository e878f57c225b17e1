//! Durable queue entries on the spool (`<spool>/queue/<id>`): a message with its
//! envelope, for mail accepted but not yet delivered (relay out, or local delivery that
//! must be retried). Any host may work on any entry; a claim is the entry's dotlock plus an
//! fcntl lock on the entry file, so exactly one process works on it at a time, and a dead
//! host's claim goes stale and is taken over.
//!
//! An entry is written to `tmp/<id>` in full, fsynced, renamed into `queue/`, and the
//! directory fsynced: it is either complete or absent. Its checksummed framing
//! ([`crate::record`]) makes a truncated file fail to decode instead of half-reading.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{IoContext, Result, StorageError};
use crate::fsutil::fsync_dir;
use crate::lock::{dotlock, DotLock, FcntlGuard, LockKind, LockOptions};
use crate::record;

const MAGIC: &[u8; 8] = b"HMQUEUE1";
const T_SENDER: u8 = 1;
const T_RECIPIENT: u8 = 2;
const T_CREATED: u8 = 3;
const T_ATTEMPTS: u8 = 4;
const T_NEXT_TRY: u8 = 5;
const T_DATA: u8 = 6;
const T_LAST_ERROR: u8 = 7;

/// The queue directory.
#[derive(Debug, Clone)]
pub struct Queue {
    dir: PathBuf,
    lock: LockOptions,
}

/// One queued message and its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub id: String,
    pub sender: String,
    /// Recipients still to be delivered.
    pub recipients: Vec<String>,
    pub created: i64,
    pub attempts: u32,
    /// Unix seconds before which no retry should be made.
    pub next_try: i64,
    pub last_error: String,
    pub data: Vec<u8>,
}

impl QueueEntry {
    fn encode(&self) -> Vec<u8> {
        let mut w = record::Writer::new(MAGIC);
        w.field(T_SENDER, self.sender.as_bytes());
        for r in &self.recipients {
            w.field(T_RECIPIENT, r.as_bytes());
        }
        w.u64(T_CREATED, self.created as u64)
            .u64(T_ATTEMPTS, self.attempts as u64)
            .u64(T_NEXT_TRY, self.next_try as u64)
            .field(T_LAST_ERROR, self.last_error.as_bytes())
            .field(T_DATA, &self.data);
        w.finish()
    }

    fn decode(id: &str, data: &[u8], path: &Path) -> Result<QueueEntry> {
        let rec = record::Record::decode(data, MAGIC, "queue entry", path)?;
        let missing = |what: &str| StorageError::Corrupt {
            what: "queue entry",
            path: path.to_path_buf(),
            reason: format!("missing {what}"),
        };
        Ok(QueueEntry {
            id: id.to_string(),
            sender: rec
                .str(T_SENDER)
                .ok_or_else(|| missing("sender"))?
                .to_string(),
            recipients: rec
                .all(T_RECIPIENT)
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .collect(),
            created: rec.u64(T_CREATED).ok_or_else(|| missing("created"))? as i64,
            attempts: rec.u64(T_ATTEMPTS).unwrap_or(0) as u32,
            next_try: rec.u64(T_NEXT_TRY).unwrap_or(0) as i64,
            last_error: rec.str(T_LAST_ERROR).unwrap_or("").to_string(),
            data: rec.get(T_DATA).ok_or_else(|| missing("data"))?.to_vec(),
        })
    }
}

/// A new unique queue id: time, host-independent randomness, and a counter.
pub fn new_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{:010X}{:05X}{:04X}{:08X}",
        now.as_secs(),
        now.subsec_micros(),
        SEQ.fetch_add(1, Ordering::Relaxed) & 0xffff,
        fastrand::u32(..)
    )
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Queue {
    pub(crate) fn new(dir: PathBuf, lock: LockOptions) -> Queue {
        Queue { dir, lock }
    }

    fn entry_path(&self, id: &str) -> Result<PathBuf> {
        if !valid_id(id) {
            return Err(StorageError::InvalidName {
                name: id.to_string(),
                reason: "queue ids are 1 to 64 letters and digits",
            });
        }
        Ok(self.dir.join(id))
    }

    /// Store a new entry durably; returns its id. Once this returns, the message is safe
    /// on the spool (SMTP may answer 250).
    pub fn enqueue(&self, sender: &str, recipients: &[String], data: Vec<u8>) -> Result<String> {
        let id = new_id();
        self.enqueue_with_id(&id, sender, recipients, data)?;
        Ok(id)
    }

    /// [`enqueue`](Self::enqueue) under an id the caller chose (the SMTP transaction's id,
    /// so logs, `Received:` and the queue agree). The id must be new: 1 to 64 letters and
    /// digits, e.g. from [`new_id`].
    pub fn enqueue_with_id(
        &self,
        id: &str,
        sender: &str,
        recipients: &[String],
        data: Vec<u8>,
    ) -> Result<()> {
        self.entry_path(id)?;
        let entry = QueueEntry {
            id: id.to_string(),
            sender: sender.to_string(),
            recipients: recipients.to_vec(),
            created: crate::mbox::now(),
            attempts: 0,
            next_try: 0,
            last_error: String::new(),
            data,
        };
        self.write_entry(&entry)
    }

    fn write_entry(&self, entry: &QueueEntry) -> Result<()> {
        let tmp_dir = self.dir.join("tmp");
        fs::create_dir_all(&tmp_dir).at(&tmp_dir)?;
        let tmp = tmp_dir.join(&entry.id);
        let dest = self.entry_path(&entry.id)?;
        if let Err(e) = crate::fsutil::write_synced(&tmp, &entry.encode()) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        crate::fsutil::rename(&tmp, &dest).at(&dest)?;
        if let Err(e) = fsync_dir(&dest) {
            // Not known to be durable, so the caller answers 4xx: the entry must not stay
            // and be delivered anyway (the sender would retry: a duplicate).
            let _ = fs::remove_file(&dest);
            return Err(e);
        }
        Ok(())
    }

    /// Ids of all entries, oldest first.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = fs::read_dir(&self.dir)
            .at(&self.dir)?
            .filter_map(|e| e.ok())
            // Entries are plain files; tmp/ and corrupt/ are directories.
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_id(n))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The dotlock a claim on entry `id` holds: operators and tests look at it to see (or
    /// stage) a claim by a host that died.
    pub fn claim_lock_path(&self, id: &str) -> Result<PathBuf> {
        Ok(dotlock::lock_path(&self.entry_path(id)?))
    }

    /// Claim an entry for delivery without waiting. `Ok(None)` if another process holds
    /// it or it is gone (delivered meanwhile).
    pub fn claim(&self, id: &str) -> Result<Option<ClaimedEntry>> {
        let path = self.entry_path(id)?;
        let Some(dot) = DotLock::try_acquire(&dotlock::lock_path(&path), &self.lock)? else {
            return Ok(None);
        };
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        let Some(fcntl) = FcntlGuard::lock(file, LockKind::Write, &self.lock, Instant::now())?
        else {
            return Ok(None);
        };
        let mut data = Vec::new();
        fcntl.file().read_to_end(&mut data).at(&path)?;
        let entry = QueueEntry::decode(id, &data, &path)?;
        Ok(Some(ClaimedEntry {
            queue: self.clone(),
            entry,
            _fcntl: fcntl,
            dot,
        }))
    }

    /// Move an undecodable entry out of the way (kept for the postmaster).
    pub fn quarantine(&self, id: &str) -> Result<()> {
        let path = self.entry_path(id)?;
        let dir = self.dir.join("corrupt");
        fs::create_dir_all(&dir).at(&dir)?;
        fs::rename(&path, dir.join(id)).at(&path)
    }
}

/// An entry claimed by this process; the claim ends on drop.
#[derive(Debug)]
pub struct ClaimedEntry {
    queue: Queue,
    pub entry: QueueEntry,
    _fcntl: FcntlGuard,
    dot: DotLock,
}

impl ClaimedEntry {
    /// Delivery finished: remove the entry durably.
    pub fn complete(self) -> Result<()> {
        let path = self.queue.entry_path(&self.entry.id)?;
        fs::remove_file(&path).at(&path)?;
        fsync_dir(&path)
    }

    /// Some recipients remain: record the attempt and when to try again.
    pub fn defer(mut self, remaining: Vec<String>, next_try: i64, error: &str) -> Result<()> {
        self.entry.recipients = remaining;
        self.entry.attempts += 1;
        self.entry.next_try = next_try;
        self.entry.last_error = error.to_string();
        self.queue.write_entry(&self.entry)
    }

    /// Keep the claim alive during a long delivery.
    pub fn refresh(&self) -> Result<()> {
        self.dot.refresh()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Spool;
    use std::fs::File;

    fn exists(queue: &Queue, id: &str) -> bool {
        queue.entry_path(id).is_ok_and(|p| File::open(p).is_ok())
    }

    #[test]
    fn enqueue_claim_defer_complete() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
        let q = spool.queue();
        let rcpts = vec!["a@x.test".to_string(), "b@y.test".to_string()];
        let id = q
            .enqueue("s@z.test", &rcpts, b"Subject: q\r\n\r\nbody\r\n".to_vec())
            .unwrap();
        assert_eq!(q.list().unwrap(), vec![id.clone()]);
        let c = q.claim(&id).unwrap().unwrap();
        assert_eq!(c.entry.recipients, rcpts);
        assert!(q.claim(&id).unwrap().is_none(), "claimed twice");
        c.defer(vec!["b@y.test".into()], 123, "451 try later")
            .unwrap();
        let c = q.claim(&id).unwrap().unwrap();
        assert_eq!((c.entry.attempts, c.entry.next_try), (1, 123));
        assert_eq!(c.entry.recipients, vec!["b@y.test".to_string()]);
        c.complete().unwrap();
        assert!(q.list().unwrap().is_empty());
        assert!(!exists(&q, &id));
    }

    #[test]
    fn a_dead_hosts_claim_is_taken_over_once_stale() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LockOptions {
            stale_after: std::time::Duration::from_secs(60),
            ..LockOptions::default()
        };
        let spool = Spool::open(dir.path(), opts).unwrap();
        let q = spool.queue();
        let id = q.enqueue("", &["a@x".into()], b"x".to_vec()).unwrap();
        // host2 claimed it and died: its lock stays behind, refreshed 30 s ago.
        let lock = dir.path().join("queue").join(format!("{id}.lock"));
        fs::write(&lock, "4242\nhost2\n").unwrap();
        let ago = |s| std::time::SystemTime::now() - std::time::Duration::from_secs(s);
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(ago(30))
            .unwrap();
        assert!(q.claim(&id).unwrap().is_none(), "not stale yet");
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(ago(120))
            .unwrap();
        let c = q.claim(&id).unwrap().expect("stale claim taken over");
        assert_eq!(c.entry.recipients, vec!["a@x".to_string()]);
    }

    #[test]
    fn truncated_entry_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
        let q = spool.queue();
        let id = q.enqueue("", &["a@x".into()], vec![b'x'; 1000]).unwrap();
        let path = dir.path().join("queue").join(&id);
        let data = fs::read(&path).unwrap();
        fs::write(&path, &data[..data.len() - 10]).unwrap();
        assert!(matches!(q.claim(&id), Err(StorageError::Corrupt { .. })));
        q.quarantine(&id).unwrap();
        assert!(q.list().unwrap().is_empty());
    }

    #[test]
    fn path_tricks_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
        assert!(spool.queue().claim("../mail/alice").is_err());
    }
}
