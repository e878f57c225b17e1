//! The \Recent watermark (RFC 3501 §2.3.2.2): `<index>/<name>.recent` holds the highest UID
//! already handed to a session as \Recent. The first read-write session that sees newer
//! messages claims them under the watermark's own dotlock, so every message is \Recent in
//! exactly one session, on any host; read-only sessions and STATUS only look. Written like
//! every small spool file: one checksummed record ([`crate::record`]) to a temporary beside
//! it, fsynced, renamed into place. A lost or unreadable watermark only makes old messages
//! \Recent once more, never loses mail.

use std::path::Path;
use std::time::{Duration, Instant};

use super::Mailbox;
use crate::error::Result;
use crate::lock::{dotlock, DotLock};
use crate::record;

/// How long a claim waits for the watermark's lock: \Recent is not worth holding up a
/// SELECT for longer.
const CLAIM_WAIT: Duration = Duration::from_secs(5);

impl Mailbox {
    /// The highest UID already given out as \Recent (0 if none or unreadable).
    pub fn recent_watermark(&self) -> u32 {
        read(&self.recent_path())
    }

    /// Claim every message up to UID `max` for the calling session: the first UID that is
    /// \Recent for it, or `u32::MAX` when another session already has them all.
    pub fn claim_recent(&self, max: u32) -> Result<u32> {
        if max == 0 || read(&self.recent_path()) >= max {
            return Ok(u32::MAX);
        }
        // The index directory of a mailbox never opened yet may be missing.
        self.with_dirs(|| self.claim(max))
    }

    fn claim(&self, max: u32) -> Result<u32> {
        let path = self.recent_path();
        let _lock = DotLock::acquire(
            &dotlock::lock_path(&path),
            self.lock_options(),
            Instant::now() + self.lock_options().timeout.min(CLAIM_WAIT),
        )?;
        let seen = read(&path);
        if seen >= max {
            return Ok(u32::MAX);
        }
        let mut record = record::Writer::new(MAGIC);
        record.u64(T_MAX_UID, u64::from(max));
        record::replace_file(&path, &self.with_suffix(".recent.tmp"), record)?;
        Ok(seen.saturating_add(1))
    }
}

const MAGIC: &[u8; 8] = b"HMRECNT1";
const T_MAX_UID: u8 = 1;

fn read(path: &Path) -> u32 {
    let Some(data) = record::read_file(path) else {
        return 0;
    };
    if !data.starts_with(MAGIC) {
        // Written by an earlier version as plain text.
        return std::str::from_utf8(&data)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
    }
    record::Record::decode(&data, MAGIC, "recent watermark", path)
        .ok()
        .and_then(|r| r.u64(T_MAX_UID))
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use crate::{LockOptions, Spool};

    #[test]
    fn each_message_is_recent_for_one_claimer() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
        let inbox = spool.inbox("erin").unwrap();
        assert_eq!(inbox.recent_watermark(), 0);
        assert_eq!(inbox.claim_recent(3).unwrap(), 1);
        assert_eq!(inbox.claim_recent(3).unwrap(), u32::MAX);
        assert_eq!(inbox.claim_recent(5).unwrap(), 4);
        assert_eq!(inbox.recent_watermark(), 5);
        assert_eq!(inbox.claim_recent(0).unwrap(), u32::MAX);
        let path = inbox.recent_path();
        assert!(std::fs::read(&path).unwrap().starts_with(super::MAGIC));
        // An earlier version's plain-text watermark still counts.
        std::fs::write(&path, "7\n").unwrap();
        assert_eq!(inbox.recent_watermark(), 7);
        assert_eq!(inbox.claim_recent(9).unwrap(), 8);
    }
}
