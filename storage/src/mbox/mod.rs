//! One mailbox: an mboxrd file on the spool, its sidecar index, and the sessions that read
//! and change it under the locks.
//!
//! - [`Mailbox::read`] gives a [`ReadSession`]: fcntl read lock, index validated against
//!   the file (extended in memory if mail was appended meanwhile).
//! - [`Mailbox::write`] gives a [`WriteSession`]: dotlock + fcntl write lock, a crashed
//!   append repaired ([`append`]), the index brought up to date and saved.
//! - [`Mailbox::append`] delivers durably with group commit across processes and hosts.
//! - [`Mailbox::claim_recent`] hands out \Recent, once per message ([`recent`]).
//!
//! No state is kept across sessions: every session re-reads the index and re-validates it
//! against the mbox after taking its lock (invariant 2).

pub mod append;
mod expunge;
pub mod format;
pub mod intent;
mod pending;
mod recent;
pub mod shared;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{IoContext, Result, StorageError};
use crate::index::{self, Flags, Index, MboxStat, MessageMeta, Validity};
use crate::lock::{LockOptions, ReadLock, WriteLock};
use shared::SharedIndexes;

/// A message to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Envelope sender for the `From ` line ("" for the null sender).
    pub sender: String,
    /// Internal date, Unix seconds.
    pub date: i64,
    /// The message, exactly as it should be read back.
    pub data: Vec<u8>,
    pub flags: Flags,
    pub keywords: Vec<String>,
    /// The queue id this delivery belongs to (one id for all recipients).
    pub queue_id: String,
}

impl NewMessage {
    pub fn new(sender: &str, data: Vec<u8>) -> NewMessage {
        NewMessage {
            sender: sender.to_string(),
            date: now(),
            data,
            flags: Flags::empty(),
            keywords: Vec::new(),
            queue_id: String::new(),
        }
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Where a delivery landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub uidvalidity: u32,
    /// UID of the first message; the others follow consecutively.
    pub first_uid: u32,
    pub count: u32,
}

/// A mailbox on the spool (cheap to create; holds no open files).
#[derive(Debug, Clone)]
pub struct Mailbox {
    mbox: PathBuf,
    /// Index paths without suffix, e.g. `<spool>/index/alice/INBOX`.
    index_base: PathBuf,
    /// The user's UIDVALIDITY high-water mark ([`index::validity`]).
    uidvalidity_mark: PathBuf,
    lock: LockOptions,
    /// Decoded indexes of the spool's mailboxes, shared by its sessions ([`shared`]).
    shared: Arc<SharedIndexes>,
}

impl Mailbox {
    pub(crate) fn new(
        mbox: PathBuf,
        index_base: PathBuf,
        uidvalidity_mark: PathBuf,
        lock: LockOptions,
        shared: Arc<SharedIndexes>,
    ) -> Mailbox {
        Mailbox {
            mbox,
            index_base,
            uidvalidity_mark,
            lock,
            shared,
        }
    }

    pub fn mbox_path(&self) -> &Path {
        &self.mbox
    }

    pub fn index_path(&self) -> PathBuf {
        self.with_suffix(index::INDEX_SUFFIX)
    }

    pub(crate) fn intent_path(&self) -> PathBuf {
        self.with_suffix(".intent")
    }

    pub(crate) fn pending_dir(&self) -> PathBuf {
        self.with_suffix(".pending")
    }

    pub(crate) fn recent_path(&self) -> PathBuf {
        self.with_suffix(".recent")
    }

    /// The index base as a directory: where the sidecars of the mailboxes below a
    /// hierarchy level of the same name live.
    pub(crate) fn index_dir(&self) -> PathBuf {
        self.index_base.clone()
    }

    /// The per-mailbox sidecar files, the index first (see [`crate::folders`] for why
    /// that order) and each with the temporary it is written through.
    fn file_sidecars(&self) -> [PathBuf; 5] {
        let idx = self.index_path();
        [
            crate::index::file_beside(&idx),
            idx,
            self.recent_path(),
            self.with_suffix(".recent.tmp"),
            self.intent_path(),
        ]
    }

    /// Remove the sidecar files (index, watermark, intent), not the mbox or `.pending/`.
    pub(crate) fn remove_file_sidecars(&self) -> Result<()> {
        for path in self.file_sidecars() {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StorageError::io(&path, e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Remove the group-commit hand-off directory.
    pub(crate) fn remove_pending(&self) -> Result<()> {
        let dir = self.pending_dir();
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::io(&dir, e)),
            _ => Ok(()),
        }
    }

    /// Every sidecar, for a name about to be (re)used by a new mailbox.
    pub(crate) fn remove_sidecars(&self) -> Result<()> {
        self.remove_file_sidecars()?;
        self.remove_pending()
    }

    /// Move the index and the \Recent watermark to `to`'s names (under the write lock,
    /// so no intent is outstanding and no temporary is being written).
    pub(crate) fn move_file_sidecars(&self, to: &Mailbox) -> Result<()> {
        if let Some(dir) = to.index_base.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        for (from, to) in [
            (self.index_path(), to.index_path()),
            (self.recent_path(), to.recent_path()),
        ] {
            match std::fs::rename(&from, &to) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StorageError::io(&to, e))
                }
                _ => {}
            }
        }
        crate::fsutil::fsync_dir(&to.index_path())
    }

    fn with_suffix(&self, suffix: &str) -> PathBuf {
        let mut s = self.index_base.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    }

    pub fn exists(&self) -> bool {
        self.mbox.exists()
    }

    fn make_dirs(&self) -> Result<()> {
        for dir in [self.mbox.parent(), self.index_base.parent()]
            .into_iter()
            .flatten()
        {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        Ok(())
    }

    /// Lock for writing (creating the mailbox if needed), repair, sync the index.
    pub fn write(&self) -> Result<WriteSession> {
        let lock = self.with_dirs(|| WriteLock::acquire(&self.mbox, &self.lock))?;
        WriteSession::open(self.clone(), lock)
    }

    /// Like [`Mailbox::write`] but without waiting: `None` if somebody holds the mailbox.
    pub fn try_write(&self) -> Result<Option<WriteSession>> {
        match self.with_dirs(|| WriteLock::try_acquire(&self.mbox, &self.lock))? {
            Some(lock) => WriteSession::open(self.clone(), lock).map(Some),
            None => Ok(None),
        }
    }

    /// Run `f`; if it failed because a directory is missing (first mail for this user or
    /// folder), create the directories and run it again. Saves a round trip per
    /// operation on NFS compared with creating them every time.
    fn with_dirs<T>(&self, f: impl Fn() -> Result<T>) -> Result<T> {
        match f() {
            Err(StorageError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                self.make_dirs()?;
                f()
            }
            other => other,
        }
    }

    /// Lock for reading. `NoSuchMailbox` if the mbox does not exist.
    pub fn read(&self) -> Result<ReadSession> {
        self.read_cached(&mut None)
    }

    /// [`Mailbox::read`] for a session that reads the same mailbox again and again (IMAP):
    /// if the index file is unchanged since `cache` was filled (same header bytes, same
    /// file), the decoded index is reused instead of read and decoded again, which makes
    /// a command on a large mailbox cost a header read instead of the whole index.
    pub fn read_cached(&self, cache: &mut Option<IndexCache>) -> Result<ReadSession> {
        // An index just brought up to date under the write lock: reused if nothing
        // changed between releasing that lock and taking the read lock.
        let mut repaired: Option<Index> = None;
        for _ in 0..3 {
            let lock = ReadLock::acquire(&self.mbox, &self.lock)?;
            if intent::read(&self.intent_path())?.is_none() {
                let stat = MboxStat::of(lock.file(), &self.mbox)?;
                let loaded = match repaired.take() {
                    Some(idx) => Some(Arc::new(idx)),
                    None => self.load_index(cache),
                };
                if let Some(idx) = loaded {
                    match index::sync::check(&idx, lock.file(), &stat, &self.mbox)? {
                        Validity::Valid => return Ok(ReadSession::new(self, lock, idx)),
                        Validity::Extend => {
                            // Deterministic: the next writer assigns the same UIDs.
                            let mut idx = Arc::unwrap_or_clone(idx);
                            index::sync::extend(&mut idx, lock.file(), &stat, &self.mbox)?;
                            *cache = None;
                            return Ok(ReadSession::new(self, lock, Arc::new(idx)));
                        }
                        Validity::Rebuild => *cache = None,
                    }
                }
            }
            // Repair or rebuild needs the write lock; take it, then read again.
            drop(lock);
            repaired = Some(self.write()?.index);
        }
        Err(StorageError::LockTimeout {
            path: self.mbox.clone(),
        })
    }

    /// The index from `cache`, or else from the spool's [`shared`] cache, if the file
    /// still has the same inode and header (read now, under the caller's lock); else from
    /// disk (refilling both). `None` if there is no usable index file.
    fn load_index(&self, cache: &mut Option<IndexCache>) -> Option<Arc<Index>> {
        let path = self.index_path();
        let (header, ino) = Index::load_header(&path).ok().flatten()?;
        if let Some(c) = cache.as_ref() {
            if c.ino == ino && c.header == header {
                return Some(c.index.clone());
            }
        }
        if let Some(c) = self.shared.get(&path, ino, &header) {
            let index = c.index.clone();
            *cache = Some(c);
            return Some(index);
        }
        let index = Arc::new(Index::load(&path).ok().flatten()?);
        let fresh = IndexCache {
            header,
            ino,
            index: index.clone(),
        };
        self.shared.put(&path, fresh.clone());
        *cache = Some(fresh);
        Some(index)
    }

    /// Deliver `msgs` durably: when this returns Ok, they are fsynced in the mailbox and
    /// indexed. Appends that meet a busy mailbox hand their messages to the current lock
    /// holder, which writes them together with its own under one fsync (group commit).
    /// No messages at all is [`StorageError::EmptyMessage`] (a message of no bytes is
    /// stored like any other).
    pub fn append(&self, msgs: &[NewMessage]) -> Result<Appended> {
        append::append(self, msgs)
    }

    pub(crate) fn lock_options(&self) -> &LockOptions {
        &self.lock
    }
}

/// Read a message's bytes from an open mbox.
fn read_message(file: &File, path: &Path, m: &MessageMeta) -> Result<Vec<u8>> {
    let mut body = vec![0u8; (m.len - m.from_len as u64) as usize];
    file.read_exact_at(&mut body, m.offset + m.from_len as u64)
        .at(path)?;
    Ok(format::decode(&body, Some(m.size)))
}

/// A decoded index kept between read sessions (see [`Mailbox::read_cached`]).
#[derive(Debug, Clone)]
pub struct IndexCache {
    header: Vec<u8>,
    ino: u64,
    index: Arc<Index>,
}

/// A mailbox under a shared read lock with a validated index.
#[derive(Debug)]
pub struct ReadSession {
    lock: ReadLock,
    index: Arc<Index>,
    path: PathBuf,
}

impl ReadSession {
    fn new(mailbox: &Mailbox, lock: ReadLock, index: Arc<Index>) -> Self {
        ReadSession {
            lock,
            index,
            path: mailbox.mbox.clone(),
        }
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The message's exact bytes.
    pub fn read_message(&self, m: &MessageMeta) -> Result<Vec<u8>> {
        read_message(self.lock.file(), &self.path, m)
    }
}

/// A mailbox under the write locks with a repaired, saved index.
#[derive(Debug)]
pub struct WriteSession {
    mailbox: Mailbox,
    lock: WriteLock,
    index: Index,
    /// Set when an operation failed half-way in a way that leaves the in-memory state
    /// unreliable; every later change is refused (open a new session).
    poisoned: bool,
    /// The inode of the index file `index` was read from and is saved in place to;
    /// `None` when it was rebuilt or renamed into place (then it is not shared).
    index_ino: Option<u64>,
}

impl WriteSession {
    fn open(mailbox: Mailbox, lock: WriteLock) -> Result<WriteSession> {
        let repaired = append::recover(&mailbox, &lock)?;
        let (index, index_ino) = sync_index(&mailbox, lock.file())?;
        let mut session = WriteSession {
            mailbox,
            lock,
            index,
            poisoned: false,
            index_ino,
        };
        append::finish_recovery(&mut session, repaired)?;
        Ok(session)
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    pub fn read_message(&self, m: &MessageMeta) -> Result<Vec<u8>> {
        read_message(self.lock.file(), self.lock.path(), m)
    }

    fn check_usable(&self) -> Result<()> {
        if self.poisoned {
            return Err(StorageError::Io {
                path: self.mailbox.mbox_path().to_path_buf(),
                source: std::io::Error::other("session unusable after a failed expunge; reopen"),
            });
        }
        Ok(())
    }

    /// Set flags and keywords of the messages with the given UIDs (durable on return).
    pub fn set_flags(&mut self, changes: &[(u32, Flags, Vec<String>)]) -> Result<()> {
        self.check_usable()?;
        let keywords_before = self.index.keywords.len();
        for (uid, flags, keywords) in changes {
            let pos = self
                .index
                .messages
                .binary_search_by_key(uid, |m| m.uid)
                .map_err(|_| StorageError::NoSuchMessage { uid: *uid })?;
            let mut bits = 0;
            for k in keywords {
                bits |= self
                    .index
                    .keyword_bit(k)
                    .ok_or_else(|| StorageError::TooManyKeywords {
                        keyword: k.clone(),
                        limit: index::MAX_KEYWORDS,
                    })?;
            }
            let hidden = self.index.messages[pos].flags.0 & Flags::HIDDEN.0;
            self.index.set_flags(pos, Flags(flags.0 | hidden), bits);
        }
        if self.index.keywords.len() == keywords_before && !self.index.has_unsaved_changes() {
            // Every message already had these flags (a repeated \Seen, say): nothing to
            // write, and no new generation to send every session back to the file.
            return Ok(());
        }
        let path = self.mailbox.index_path();
        // Flags are not fsynced (as in Dovecot's default): a power cut may lose the last
        // flag changes, never a message, and readers on other hosts see the change
        // anyway (the file is closed after writing, which flushes it on NFS).
        let in_place = self.index.saves_in_place();
        self.index.save(&path, false)?;
        if in_place {
            self.share_index();
        } else {
            self.index_ino = None;
        }
        Ok(())
    }

    /// Offer the index just saved in place to the spool's other sessions ([`shared`]),
    /// keyed by the header this session wrote, so the next reader of the changed mailbox
    /// reuses it instead of reading and decoding the file again. A reader still takes it
    /// only if the file, read under its own lock, has that same header and inode.
    fn share_index(&self) {
        if let (Some(ino), Some(header)) = (self.index_ino, self.index.saved_header()) {
            self.mailbox.shared.put(
                &self.mailbox.index_path(),
                IndexCache {
                    header,
                    ino,
                    index: Arc::new(self.index.clone()),
                },
            );
        }
    }

    /// Append under the lock already held (also takes pending appends of others along).
    pub fn append(&mut self, msgs: &[NewMessage]) -> Result<Appended> {
        self.check_usable()?;
        append::commit(self, msgs)
    }

    /// Remove the messages with these UIDs (crash-safe rewrite). Returns the UIDs removed.
    pub fn expunge(&mut self, uids: &[u32]) -> Result<Vec<u32>> {
        self.check_usable()?;
        expunge::expunge(self, uids)
    }

    /// Remove every message flagged \Deleted.
    pub fn expunge_deleted(&mut self) -> Result<Vec<u32>> {
        let uids: Vec<u32> = self
            .index
            .visible()
            .filter(|m| m.flags.contains(Flags::DELETED))
            .map(|m| m.uid)
            .collect();
        self.expunge(&uids)
    }

    /// Keep the dotlock fresh during long work.
    pub fn refresh(&self) -> Result<()> {
        self.lock.refresh()
    }
}

/// Load the index and bring it in line with the (write-locked) mbox, saving the result;
/// also the inode of the index file when the result is saved in place in it.
fn sync_index(mailbox: &Mailbox, file: &File) -> Result<(Index, Option<u64>)> {
    let path = mailbox.mbox_path();
    let index_path = mailbox.index_path();
    let stat = MboxStat::of(file, path)?;
    let (old, ino) = match load_for_write(mailbox, &index_path) {
        Ok(loaded) => loaded,
        Err(e @ StorageError::Corrupt { .. }) => {
            tracing::warn!(error = %e, "index unreadable; rebuilding from the mbox");
            (None, None)
        }
        Err(e) => return Err(e),
    };
    if let Some(mut idx) = old.clone() {
        match index::sync::check(&idx, file, &stat, path)? {
            Validity::Valid => return Ok((idx, ino)),
            Validity::Extend => {
                index::sync::extend(&mut idx, file, &stat, path)?;
                idx.save(&index_path, false)?;
                return Ok((idx, ino));
            }
            Validity::Rebuild => {}
        }
    }
    // An expunge that crashed after renaming the new mbox into place left the matching
    // index beside the old one.
    let new_path = index::file_beside(&index_path);
    if let Ok(Some(idx)) = Index::load(&new_path) {
        // Inode only: st_dev differs between NFS clients (see `index::sync::check`).
        if idx.mbox.ino == stat.ino && idx.mbox.size == stat.size {
            crate::fsutil::rename(&new_path, &index_path).at(&index_path)?;
            return Ok((idx, None));
        }
        let _ = std::fs::remove_file(&new_path);
    }
    let mut idx = index::sync::rebuild(old.as_ref(), file, &stat, path, &mut |previous| {
        index::validity::next(&mailbox.uidvalidity_mark, previous, &mailbox.lock)
    })?;
    idx.write_new(&index_path, true)?;
    Ok((idx, None))
}

/// The index file for a write session (under the write lock): from the spool's
/// [`shared`] cache when the file has the cached inode and header, else read and
/// decoded (and shared). With the file's inode, when there is a file.
fn load_for_write(mailbox: &Mailbox, index_path: &Path) -> Result<(Option<Index>, Option<u64>)> {
    let Some((header, ino)) = Index::load_header(index_path)? else {
        return Ok((Index::load(index_path)?, None));
    };
    if let Some(c) = mailbox.shared.get(index_path, ino, &header) {
        return Ok((Some(Arc::unwrap_or_clone(c.index)), Some(ino)));
    }
    let Some(index) = Index::load(index_path)? else {
        return Ok((None, None));
    };
    mailbox.shared.put(
        index_path,
        IndexCache {
            header,
            ino,
            index: Arc::new(index.clone()),
        },
    );
    Ok((Some(index), Some(ino)))
}

pub use crate::fsutil::fsync_dir;
