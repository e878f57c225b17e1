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
//! <spool>/queue/                          queue entries
//! ```

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, StorageError};
use crate::lock::LockOptions;
use crate::mbox::{Appended, Mailbox, NewMessage};
use crate::queue::Queue;

/// Suffixes of the spool's own files beside mailboxes and indexes (dotlocks, index,
/// append intent, group-commit directory, temporaries, \Recent watermark): no level of a
/// mailbox name may end in one, or its files could collide with another mailbox's.
pub const RESERVED_SUFFIXES: [&str; 6] =
    [".lock", ".idx", ".intent", ".pending", ".tmp", ".recent"];

/// The user's UIDVALIDITY high-water mark, beside the indexes (a dot name, which no
/// mailbox level may have).
const UIDVALIDITY_MARK: &str = ".uidvalidity";

/// A spool root plus the lock settings every operation on it uses.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    lock: LockOptions,
}

impl Spool {
    /// Open (and create the top-level directories of) the spool at `root`.
    pub fn open(root: impl Into<PathBuf>, lock: LockOptions) -> Result<Spool> {
        let root = root.into();
        for sub in ["mail", "folders", "index", "queue"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).at(&dir)?;
        }
        Ok(Spool { root, lock })
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
        for suffix in RESERVED_SUFFIXES {
            if part.ends_with(suffix) {
                return Err(invalid(name, "reserved suffix"));
            }
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
        ] {
            assert!(validate_mailbox(bad).is_err(), "mailbox {bad:?}");
        }
        for good in ["Sent", "Archive/2024", "Entwürfe", "a.b"] {
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
