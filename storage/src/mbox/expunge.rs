//! Crash-safe expunge (invariant 6): the kept messages are copied into a new file beside
//! the mailbox, which is fcntl-locked before anybody can see it, fsynced, given its index
//! (written and fsynced beside the old index), renamed over the mailbox, and the directory
//! fsynced; only then does the new index replace the old one. A crash at any point leaves
//! either the old mailbox with its index, or the new one with an index that matches it
//! (the next locker renames `.idx.new` into place, or rebuilds keeping every UID because
//! the surviving messages' bytes are unchanged).

use std::collections::HashSet;
use std::fs::{self};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::PathBuf;
use std::time::Instant;

use super::{fsync_dir, WriteSession};
use crate::error::{IoContext, Result, StorageError};
use crate::fault;
use crate::index::{file_beside, Index, MboxStat};
use crate::lock::{FcntlGuard, LockKind};

/// Remove the messages with `uids`; returns those actually removed, in UID order.
pub fn expunge(session: &mut WriteSession, uids: &[u32]) -> Result<Vec<u32>> {
    let remove: HashSet<u32> = uids.iter().copied().collect();
    let removed: Vec<u32> = session
        .index
        .visible()
        .filter(|m| remove.contains(&m.uid))
        .map(|m| m.uid)
        .collect();
    if removed.is_empty() {
        return Ok(removed);
    }
    let mbox = session.mailbox.mbox_path().to_path_buf();
    let tmp = hidden_beside(&mbox);
    let old = session.lock.file();
    let mode = old.metadata().at(&mbox)?.permissions().mode() & 0o7777;
    let _ = fs::remove_file(&tmp); // left by an earlier crash
    let new = crate::fsutil::create_new(&tmp, mode)?;
    let cleanup = |e: StorageError| {
        let _ = fs::remove_file(&tmp);
        e
    };
    let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(mode));
    // Lock the new file before it becomes visible, so readers that open it after the
    // rename wait until its index is in place.
    let guard = FcntlGuard::lock(
        new,
        LockKind::Write,
        session.mailbox.lock_options(),
        Instant::now(),
    )
    .map_err(cleanup)?
    .ok_or_else(|| cleanup(StorageError::LockTimeout { path: tmp.clone() }))?;

    // Copy runs of kept messages.
    let mut kept = Vec::with_capacity(session.index.messages.len());
    let mut out_pos = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut since_refresh = 0u64;
    for m in &session.index.messages {
        if remove.contains(&m.uid) && !m.flags.contains(crate::index::Flags::HIDDEN) {
            continue;
        }
        let mut copied = 0u64;
        while copied < m.len {
            let n = buf.len().min((m.len - copied) as usize);
            old.read_exact_at(&mut buf[..n], m.offset + copied)
                .and_then(|_| guard.file().write_all_at(&buf[..n], out_pos + copied))
                .map_err(|e| cleanup(StorageError::io(&tmp, e)))?;
            copied += n as u64;
            since_refresh += n as u64;
        }
        if since_refresh > 64 << 20 {
            session.lock.refresh().map_err(cleanup)?;
            since_refresh = 0;
        }
        let mut k = m.clone();
        k.offset = out_pos;
        out_pos += m.len;
        kept.push(k);
    }
    fault::point("expunge:after-copy");
    guard
        .file()
        .sync_all()
        .map_err(|e| cleanup(StorageError::io(&tmp, e)))?;
    fault::point("expunge:after-fsync");

    let mut index: Index = session.index.clone();
    index.messages = kept;
    index.mbox = MboxStat::of(guard.file(), &tmp).map_err(cleanup)?;
    // A new generation in the file itself, not only in memory: readers tell index states
    // apart by (generation, count, size), and a flag change saved later from this file
    // must not come out with the same generation as this in-memory index.
    index.generation += 1;
    let index_path = session.mailbox.index_path();
    // The index file is about to be replaced: it is no longer the one `index_ino` names.
    session.index_ino = None;
    let index_new = index.write_beside(&index_path).map_err(cleanup)?;
    debug_assert_eq!(index_new, file_beside(&index_path));
    fault::point("expunge:after-index-written");

    crate::fsutil::rename(&tmp, &mbox).map_err(|e| cleanup(StorageError::io(&mbox, e)))?;
    // The old file is gone: from now on the session works on the new one, whatever
    // happens below.
    session.lock.replace_file(guard);
    fault::point("expunge:after-rename");
    let finished = fsync_dir(&mbox)
        .and_then(|_| crate::fsutil::rename(&index_new, &index_path).at(&index_path));
    if let Err(e) = finished {
        // The in-memory index no longer matches what is on disk for sure: make the
        // session unusable; the next session repairs from `.idx.new` or by rebuild.
        session.poisoned = true;
        return Err(e);
    }
    fault::point("expunge:after-index-rename");
    session.index = index;
    Ok(removed)
}

/// `dir/.<name>.hamail-expunge`: hidden, and no valid user or mailbox name can clash.
fn hidden_beside(mbox: &std::path::Path) -> PathBuf {
    let name = mbox
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    mbox.with_file_name(format!(".{name}.hamail-expunge"))
}
