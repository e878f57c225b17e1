//! The storage error type. Every failure is classified as temporary (try again later:
//! SMTP 4xx, IMAP `NO [UNAVAILABLE]`) or permanent (SMTP 5xx), because the one thing a mail
//! server must never do is turn a passing disk or lock problem into a bounce.

use std::io;
use std::path::PathBuf;

/// Result alias for the storage crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Everything that can go wrong on the spool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The dotlock or fcntl lock could not be had before the deadline.
    #[error("timed out waiting for the lock on {path}")]
    LockTimeout { path: PathBuf },
    /// The filesystem is full or the user is over quota.
    #[error("no space left for {path}")]
    NoSpace { path: PathBuf },
    /// Any other I/O error (including NFS `ESTALE` and `EIO`).
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A user or mailbox name that could escape the spool or is otherwise unusable.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// The mailbox does not exist.
    #[error("no such mailbox {path}")]
    NoSuchMailbox { path: PathBuf },
    /// The message is larger than the configured limit (for callers that enforce one,
    /// such as the SMTP agent's SIZE limit).
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooBig { size: u64, limit: u64 },
    /// A file on the spool does not have the expected shape (truncated queue file, foreign
    /// index). Permanent for that file; callers usually rebuild or quarantine it.
    #[error("corrupt {what} {path}: {reason}")]
    Corrupt {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// A keyword the mailbox has no room for (the index holds at most
    /// [`crate::index::MAX_KEYWORDS`] per mailbox).
    #[error("no room for keyword {keyword:?}: a mailbox holds at most {limit} keywords")]
    TooManyKeywords { keyword: String, limit: usize },
    /// A message UID that is not (or no longer) in the mailbox.
    #[error("no message with UID {uid}")]
    NoSuchMessage { uid: u32 },
    /// Our dotlock was broken (taken for stale) and replaced by another process: whatever
    /// we were doing under it is no longer exclusive.
    #[error("lock {path} was broken by another process")]
    LockLost { path: PathBuf },
    /// Nothing to append: an append of no messages. The caller's mistake, which no retry
    /// can fix. The agent also uses it to refuse an IMAP APPEND of a zero-length literal
    /// (`NO [CANNOT]`, as Dovecot does).
    #[error("empty message: there is nothing to append")]
    EmptyMessage,
}

impl StorageError {
    /// Wrap an I/O error with the path it happened on, turning `ENOSPC`/`EDQUOT` into
    /// [`StorageError::NoSpace`].
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => StorageError::NoSpace { path },
            _ => StorageError::Io { path, source },
        }
    }

    /// True when the same operation may succeed later (answer 4xx, keep the message).
    pub fn is_temporary(&self) -> bool {
        match self {
            StorageError::LockTimeout { .. }
            | StorageError::NoSpace { .. }
            | StorageError::LockLost { .. }
            | StorageError::Io { .. } => true,
            // A corrupt file is repaired by the next locker (index rebuild), so the caller
            // should retry rather than bounce.
            StorageError::Corrupt { .. } => true,
            StorageError::InvalidName { .. }
            | StorageError::TooManyKeywords { .. }
            | StorageError::NoSuchMailbox { .. }
            | StorageError::TooBig { .. }
            | StorageError::NoSuchMessage { .. }
            | StorageError::EmptyMessage => false,
        }
    }

    /// True when a lock we held was broken by someone else (or vanished).
    pub fn is_lock_lost(&self) -> bool {
        matches!(self, StorageError::LockLost { .. }) || self.is_not_found()
    }

    /// True when a file was not there (e.g. renamed away by another process).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// True when the error means "stale NFS file handle": the file was replaced on the
    /// server (e.g. by another host's expunge) and must be reopened by path.
    pub fn is_stale_handle(&self) -> bool {
        matches!(self, StorageError::Io { source, .. } if source.raw_os_error() == Some(libc::ESTALE))
    }
}

/// Extension to attach a path to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| StorageError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_is_temporary_no_space() {
        let e = StorageError::io("/x", io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(matches!(e, StorageError::NoSpace { .. }));
        assert!(e.is_temporary());
    }

    #[test]
    fn estale_is_temporary_and_recognised() {
        let e = StorageError::io("/x", io::Error::from_raw_os_error(libc::ESTALE));
        assert!(e.is_temporary());
        assert!(e.is_stale_handle());
    }

    #[test]
    fn bad_name_and_too_big_are_permanent() {
        let e = StorageError::InvalidName {
            name: "../x".into(),
            reason: "dots",
        };
        assert!(!e.is_temporary());
        assert!(!StorageError::TooBig { size: 2, limit: 1 }.is_temporary());
        assert!(!StorageError::EmptyMessage.is_temporary());
    }
}
