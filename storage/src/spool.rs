//! The spool's directory layout and the validation that keeps user and mailbox names
//! inside it:
//!
//! ```text
//! <spool>/mail/<user>                     INBOX (mbox)
//! <spool>/folders/<user>/<name>           other mailboxes (mbox), '/' separates levels
//! <spool>/index/<user>/<name>.idx         sidecar index ("INBOX.idx" for the inbox)
//! <spool>/index/<user>/<name>.intent      append-intent record while an append runs
//! <spool>/index/<user>/<name>.pending/    appends waiting for the lock holder (group commit)
//! <spool>/index/<user>/<name>.recent      highest UID handed out as \Recent
//! <spool>/index/<user>/.uidvalidity       the highest UIDVALIDITY given to the user's mailboxes
//! <spool>/index/<user>/.subscriptions     the user's subscribed mailbox names, one per line
//! <spool>/index/<user>/<level>/           sidecars of the mailboxes below a hierarchy level
//! <spool>/queue/                          queue entries
//! <spool>/health/<host>.probe             each host's spool write probe
//! ```
//!
//! Beside those, the spool's own short-lived files: `<file>.lock` dotlocks and their
//! `<file>.lock.<host>.<pid>.<n>` hitching posts, `.idx.new` and `.tmp` files written and
//! renamed into place, `.recent.lock`. [`RESERVED_SUFFIXES`] lists the suffixes; no level
//! of a mailbox name may end in one or contain one followed by a dot, so a mailbox's name
//! can never be another mailbox's sidecar.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, StorageError};
use crate::lock::LockOptions;
use crate::mbox::shared::SharedIndexes;
use crate::mbox::{Appended, Mailbox, NewMessage};
use crate::queue::Queue;

/// Suffixes of the spool's own files beside mailboxes and indexes (dotlocks, index,
/// append intent, group-commit directory, temporaries, \Recent watermark): no level of a
/// mailbox name may end in one (or contain one followed by a dot: `x.idx.new`,
/// `x.lock.host.1`), or its files could collide with another mailbox's.
pub const RESERVED_SUFFIXES: [&str; 6] =
    [".lock", ".idx", ".intent", ".pending", ".tmp", ".recent"];

/// Whether one level of a name (a file name in `folders/<user>`) is the spool's own: a
/// dot file, or a name that ends in a reserved suffix or carries one followed by a dot.
pub fn is_reserved_level(level: &str) -> bool {
    level.starts_with('.')
        || RESERVED_SUFFIXES.iter().any(|suffix| {
            level.ends_with(suffix)
                || level
                    .match_indices(suffix)
                    .any(|(at, _)| level[at + suffix.len()..].starts_with('.'))
        })
}

/// The per-host file the health check writes to prove the spool is writable.
const HEALTH_DIR: &str = "health";
/// The user's subscription list, beside the indexes.
const SUBSCRIPTIONS: &str = ".subscriptions";

/// The user's UIDVALIDITY high-water mark, beside the indexes (a dot name, which no
/// mailbox level may have).
const UIDVALIDITY_MARK: &str = ".uidvalidity";

/// A spool root plus the lock settings every operation on it uses.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    lock: LockOptions,
    /// Decoded indexes, shared by every mailbox session of this spool and its clones.
    indexes: std::sync::Arc<SharedIndexes>,
}

impl Spool {
    /// Open (and create the top-level directories of) the spool at `root`.
    pub fn open(root: impl Into<PathBuf>, lock: LockOptions) -> Result<Spool> {
        let root = root.into();
        for sub in ["mail", "folders", "index", "queue"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).at(&dir)?;
        }
        Ok(Spool {
            root,
            lock,
            indexes: Default::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn lock_options(&self) -> &LockOptions {
        &self.lock
    }

    /// The user's INBOX.
    pub fn inbox(&self, user: &str) -> Result<Mailbox> {
        validate_user(user)?;
        let index_dir = self.root.join("index").join(user);
        Ok(Mailbox::new(
            self.root.join("mail").join(user),
            index_dir.join("INBOX"),
            index_dir.join(UIDVALIDITY_MARK),
            self.lock.clone(),
            self.indexes.clone(),
        ))
    }

    /// Any mailbox of the user; `INBOX` (any case) is the inbox, other names are folders
    /// with `/` as the hierarchy separator.
    pub fn mailbox(&self, user: &str, name: &str) -> Result<Mailbox> {
        if name.eq_ignore_ascii_case("INBOX") {
            return self.inbox(user);
        }
        validate_user(user)?;
        validate_mailbox(name)?;
        let index_dir = self.root.join("index").join(user);
        Ok(Mailbox::new(
            self.root.join("folders").join(user).join(name),
            index_dir.join(name),
            index_dir.join(UIDVALIDITY_MARK),
            self.lock.clone(),
            self.indexes.clone(),
        ))
    }

    /// Deliver one message (one queue id) to several local users: each INBOX is
    /// appended independently, so one recipient's full or locked mailbox does not hold
    /// up the others. Results are per recipient, in order; the caller keeps the failed
    /// ones in the queue (temporary) or bounces them (permanent).
    pub fn deliver(&self, users: &[&str], msg: &NewMessage) -> Vec<Result<Appended>> {
        users
            .iter()
            .map(|u| self.inbox(u)?.append(std::slice::from_ref(msg)))
            .collect()
    }

    /// The shared queue.
    pub fn queue(&self) -> Queue {
        Queue::new(self.root.join("queue"), self.lock.clone())
    }

    pub(crate) fn folders_root(&self, user: &str) -> PathBuf {
        self.root.join("folders").join(user)
    }

    pub(crate) fn subscriptions_path(&self, user: &str) -> PathBuf {
        self.root.join("index").join(user).join(SUBSCRIPTIONS)
    }

    /// Where the hosts' probe files live (operators and tests look at it).
    pub fn probe_dir(&self) -> PathBuf {
        self.root.join(HEALTH_DIR)
    }

    /// Prove the spool writable from this host: rewrite `health/<host>.probe` with `now`,
    /// fsync it, and return the bytes still free on the spool's filesystem (rewriting the
    /// probe reuses the block it just freed, so on a full filesystem the write keeps
    /// succeeding: the caller judges the free space too).
    pub fn write_probe(&self, host: &str, now: &str) -> Result<u64> {
        validate_user(host)?;
        let dir = self.probe_dir();
        let path = dir.join(format!("{host}.probe"));
        std::fs::create_dir_all(&dir).at(&dir)?;
        crate::fsutil::write_synced(&path, format!("{now}\n").as_bytes())?;
        let stat = nix::sys::statvfs::statvfs(&path)
            .map_err(|e| StorageError::io(&path, std::io::Error::from(e)))?;
        Ok(stat.blocks_available().saturating_mul(stat.fragment_size()))
    }
}

fn invalid(name: &str, reason: &'static str) -> StorageError {
    StorageError::InvalidName {
        name: name.to_string(),
        reason,
    }
}

/// User names become file names: letters, digits, `.`, `_`, `-`, `+`; 1 to 64 bytes; no
/// leading dot.
pub fn validate_user(user: &str) -> Result<()> {
    if user.is_empty() || user.len() > 64 {
        return Err(invalid(user, "must be 1 to 64 bytes"));
    }
    if user.starts_with('.') {
        return Err(invalid(user, "must not start with a dot"));
    }
    if !user
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
    {
        return Err(invalid(
            user,
            "only letters, digits, '.', '_', '-', '+' allowed",
        ));
    }
    Ok(())
}

/// Mailbox names: `/`-separated levels, each non-empty, not `.`/`..`, no leading dot, no
/// control characters, not ending in one of the suffixes the spool uses for its own files.
pub fn validate_mailbox(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 {
        return Err(invalid(name, "must be 1 to 255 bytes"));
    }
    for part in name.split('/') {
        if part.is_empty() {
            return Err(invalid(name, "empty hierarchy level"));
        }
        if part.starts_with('.') {
            return Err(invalid(name, "a level must not start with a dot"));
        }
        if part.chars().any(|c| c.is_control()) {
            return Err(invalid(name, "control characters are not allowed"));
        }
        if is_reserved_level(part) {
            return Err(invalid(name, "reserved suffix"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_the_spool() {
        for bad in ["", "..", "../etc", "a/b", ".hidden", "a\0b", "a b"] {
            assert!(validate_user(bad).is_err(), "user {bad:?}");
        }
        for good in ["alice", "bob.smith", "x_y-z+tag", "A1"] {
            assert!(validate_user(good).is_ok(), "user {good:?}");
        }
        for bad in [
            "",
            "..",
            "a/../b",
            "/abs",
            "a//b",
            "a/",
            ".x",
            "x.lock",
            "a\nb",
            "y/z.idx",
            "x.recent/y",
            "x.idx.new",
            "a.lock.host.1.2",
            "a/b.recent.tmp",
        ] {
            assert!(validate_mailbox(bad).is_err(), "mailbox {bad:?}");
        }
        for good in [
            "Sent",
            "Archive/2024",
            "Entwürfe",
            "a.b",
            "my.lockers",
            "x.idxy",
        ] {
            assert!(validate_mailbox(good).is_ok(), "mailbox {good:?}");
        }
    }

    #[test]
    fn delivery_to_several_users_is_independent() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
        let mut msg = NewMessage::new("s@x.test", b"Subject: all\n\nhi\n".to_vec());
        msg.queue_id = "Q123".into();
        let results = spool.deliver(&["ann", "../evil", "ben"], &msg);
        assert!(results[0].is_ok() && results[2].is_ok());
        assert!(matches!(results[1], Err(StorageError::InvalidName { .. })));
        for u in ["ann", "ben"] {
            let s = spool.inbox(u).unwrap().read().unwrap();
            let m = s.index().by_uid(1).unwrap();
            assert_eq!(s.read_message(m).unwrap(), msg.data);
        }
    }

    #[test]
    fn inbox_and_folder_paths() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
        let inbox = spool.mailbox("alice", "inbox").unwrap();
        assert_eq!(inbox.mbox_path(), dir.path().join("mail/alice"));
        let sent = spool.mailbox("alice", "Archive/2024").unwrap();
        assert_eq!(
            sent.mbox_path(),
            dir.path().join("folders/alice/Archive/2024")
        );
        assert!(spool.mailbox("../root", "INBOX").is_err());
    }
}
