//! Fresh UIDVALIDITY values that a mailbox name never had before.
//!
//! RFC 3501 §2.3.1.1: a mailbox deleted and created again under the same name (or renamed
//! away and created again) must get a UIDVALIDITY that name never had, or a client's cache
//! takes the new mailbox for the old one. The time alone repeats when that happens within
//! a second, on one host or on two. So each user has a high-water mark on the spool
//! (`index/<user>/.uidvalidity`, a dot name no mailbox can have), read and raised under
//! its own dotlock: a new value is above every value given to any of the user's mailboxes
//! since the mark exists, and never below the current time, so values stay unique across
//! mailboxes made before the mark existed or after it was lost.

use std::path::Path;
use std::time::Instant;

use crate::error::{IoContext, Result};
use crate::lock::{dotlock, DotLock, LockOptions};
use crate::record;

/// A UIDVALIDITY above `previous` (the mailbox's last one, if known) and above every value
/// recorded in the user's mark at `mark`, which is raised to it.
pub fn next(mark: &Path, previous: Option<u32>, lock: &LockOptions) -> Result<u32> {
    // The first mailbox of a new user: its index directory is not there yet.
    if let Some(dir) = mark.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    let _held = DotLock::acquire(
        &dotlock::lock_path(mark),
        lock,
        Instant::now() + lock.timeout,
    )?;
    let recorded = read(mark);
    let floor = match (previous, recorded) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let value = super::sync::new_uidvalidity(floor);
    let mut record = record::Writer::new(MAGIC);
    record.u64(T_VALUE, u64::from(value));
    record::replace_file(mark, &crate::index::file_beside(mark), record)?;
    Ok(value)
}

const MAGIC: &[u8; 8] = b"HMUIDV01";
const T_VALUE: u8 = 1;

/// The recorded mark: a checksummed record, or plain text from an earlier version.
fn read(mark: &Path) -> Option<u32> {
    let data = record::read_file(mark)?;
    if !data.starts_with(MAGIC) {
        // Written by an earlier version as plain text.
        return std::str::from_utf8(&data).ok()?.trim().parse().ok();
    }
    let r = record::Record::decode(&data, MAGIC, "UIDVALIDITY mark", mark).ok()?;
    r.u64(T_VALUE).and_then(|v| u32::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_only_go_up_within_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let mark = dir.path().join(".uidvalidity");
        let lock = LockOptions::default();
        let a = next(&mark, None, &lock).unwrap();
        let b = next(&mark, None, &lock).unwrap();
        let c = next(&mark, Some(b + 10), &lock).unwrap();
        assert!(a < b && b + 10 < c, "{a} {b} {c}");
        // An earlier version's plain-text mark still counts.
        assert!(std::fs::read(&mark).unwrap().starts_with(MAGIC));
        std::fs::write(&mark, format!("{}\n", c + 1000)).unwrap();
        assert!(next(&mark, None, &lock).unwrap() > c + 1000);
        // Lost mark: never below the time.
        std::fs::remove_file(&mark).unwrap();
        let now = super::super::sync::new_uidvalidity(None);
        assert!(next(&mark, None, &lock).unwrap() >= now);
    }
}
