//! Durable, all-or-nothing append with group commit and crash repair (invariant 3).
//!
//! Under the write lock, one commit:
//!
//! 1. claims every pending append of other processes ([`super::pending`]);
//! 2. writes an **append intent** (original size, expected new size, CRC-32 of the bytes
//!    to append, mbox inode, and which tickets the messages belong to) and fsyncs it;
//! 3. writes all messages at the original end of the mbox and fsyncs the mbox once;
//! 4. extends the index, removes the intent, and marks the claimed tickets done.
//!
//! On any error in 3 the mbox is truncated back and the tickets return to pending. If the
//! process dies instead, the next locker finds the intent ([`recover`]): when the bytes
//! between the two sizes are all there with the right checksum the append is kept (it may
//! already have been acknowledged), otherwise the file is truncated back to the original
//! size, so a message is never half there, never lost once acknowledged, never doubled.

use std::fs;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::intent::{self, Intent};
use super::pending::{self, State, Ticket};
use super::{format, Appended, Mailbox, NewMessage, WriteSession};
use crate::error::{IoContext, Result, StorageError};
use crate::fault;
use crate::index::{MboxStat, MessageMeta};
use crate::lock::Backoff;

/// What a crashed append left to do once the index is in sync.
#[derive(Debug, Default)]
pub struct Repaired {
    /// Tickets whose messages made it, in mbox order from `start`.
    done: Vec<(String, u32)>,
    start: u64,
}

/// See [`Mailbox::append`].
pub fn append(mailbox: &Mailbox, msgs: &[NewMessage]) -> Result<Appended> {
    // Nothing to append is the caller's mistake, not a damaged file: as `Corrupt` (which
    // is temporary) it would be retried for ever.
    if msgs.is_empty() {
        return Err(StorageError::EmptyMessage);
    }
    // Uncontended: just do it.
    let started = Instant::now();
    let lock_name = crate::lock::dotlock::lock_path(mailbox.mbox_path());
    if !lock_name.exists() {
        if let Some(mut session) = mailbox.try_write()? {
            crate::lock::stats::record(started.elapsed());
            return session.append(msgs);
        }
    }
    // Busy: leave the messages for whoever holds the lock, and take the lock ourselves
    // whenever it is free and our messages are still waiting.
    let opts = mailbox.lock_options();
    let ticket = Ticket::submit(&mailbox.pending_dir(), msgs, &opts.hostname)?;
    let result = wait_for(mailbox, msgs, &ticket, &lock_name);
    // Time until our messages were in (or the lock was ours): the contention cost.
    crate::lock::stats::record(started.elapsed());
    if let Err(e) = &result {
        // Whatever failed, make sure the entry cannot be delivered later behind the
        // caller's back (it will report a temporary failure and the sender retries).
        let settled = matches!(
            e,
            StorageError::Corrupt { .. } | StorageError::LockTimeout { .. }
        );
        if !settled && !ticket.cancel() {
            ticket.abandon();
        }
    }
    result
}

/// Wait until `ticket` is appended by a lock holder, or append it ourselves.
fn wait_for(
    mailbox: &Mailbox,
    msgs: &[NewMessage],
    ticket: &Ticket,
    lock_name: &Path,
) -> Result<Appended> {
    let opts = mailbox.lock_options();
    let deadline = Instant::now() + opts.timeout;
    // Poll briskly: the holder may finish our append within a millisecond, and every
    // millisecond we sleep past that is latency for this delivery.
    let poll = crate::lock::LockOptions {
        min_backoff: Duration::from_micros(100),
        max_backoff: Duration::from_millis(5).max(opts.min_backoff),
        ..opts.clone()
    };
    let mut backoff = Backoff::new(&poll, deadline);
    let mut lost_checks = 0;
    let mut extended = false;
    let mut last_try = Instant::now();
    loop {
        match ticket.state()? {
            State::Done(a) => return Ok(a),
            State::Failed => {
                return Err(StorageError::Corrupt {
                    what: "pending append",
                    path: mailbox.pending_dir(),
                    reason: format!("entry {} could not be read back", ticket.id),
                })
            }
            // Still waiting, or claimed by a holder that may have died since: whenever
            // the lock is free, take it. Opening the session repairs a dead holder's
            // append (its claims go back to pending) and committing with no messages of
            // our own sweeps the pending entries, ours included.
            // Trying the lock costs a file create, link and unlink in the mailbox
            // directory, which slows the holder down; while the dotlock visibly exists,
            // only try now and then (to notice a stale one).
            State::Pending | State::Claimed => {
                let busy = lock_name.exists() && last_try.elapsed() < Duration::from_millis(50);
                if !busy {
                    last_try = Instant::now();
                    if let Some(mut session) = mailbox.try_write()? {
                        // Still waiting: take it back and write it ourselves (no
                        // directory listing involved, which NFS may serve stale).
                        if ticket.cancel() {
                            return session.append(msgs);
                        }
                        session.append(&[])?;
                        continue;
                    }
                }
            }
            // Not found anywhere: a stale NFS view, or an entry that truly vanished (never
            // seen in practice). Keep looking until the deadline rather than report a
            // failure for mail that may have been delivered.
            State::Lost => lost_checks += 1,
        }
        if !backoff.wait() {
            let unknown = |what: &str| StorageError::Io {
                path: mailbox.pending_dir(),
                source: std::io::Error::other(format!(
                    "pending append {} {what}; it may or may not be delivered",
                    ticket.id
                )),
            };
            if lost_checks > 0 && ticket.state()? == State::Lost {
                return Err(unknown("vanished"));
            }
            if ticket.cancel() {
                return Err(StorageError::LockTimeout {
                    path: mailbox.mbox_path().to_path_buf(),
                });
            }
            if extended {
                return Err(unknown("is still being written by another process"));
            }
            // Claimed: the holder is writing it right now; wait for the outcome one more
            // timeout rather than report a failure for mail that is being delivered.
            extended = true;
            backoff = Backoff::new(&poll, Instant::now() + opts.timeout);
            lost_checks = 0;
        }
    }
}

/// Append `own` plus every pending append under the held lock (one intent, one fsync).
pub fn commit(session: &mut WriteSession, own: &[NewMessage]) -> Result<Appended> {
    let pending_dir = session.mailbox.pending_dir();
    fault::pause("append:before-claim");
    let claimed = pending::claim_all(&pending_dir)?;
    let claimed_ids: Vec<String> = claimed.iter().map(|c| c.id.clone()).collect();
    let result = write_batch(session, own, &claimed);
    match result {
        Ok((first_uid, uidvalidity)) => {
            // Durable from here on: nothing below may report a failure. Tickets are marked
            // done *before* the intent is cleared; if one cannot be, the intent stays and
            // the next locker (seeing a complete append) marks it, so a claimed message is
            // never put back to pending and appended twice.
            let mut uid = first_uid + own.len() as u32;
            let mut all_marked = true;
            for c in &claimed {
                let a = Appended {
                    uidvalidity,
                    first_uid: uid,
                    count: c.msgs.len() as u32,
                };
                if let Err(e) = pending::mark_done(&pending_dir, &c.id, a) {
                    tracing::warn!(error = %e, ticket = %c.id, "could not mark a delivered append done");
                    all_marked = false;
                }
                uid += c.msgs.len() as u32;
            }
            fault::point("append:after-tickets");
            if all_marked {
                if let Err(e) = intent::clear(&session.mailbox.intent_path()) {
                    tracing::warn!(error = %e, "append intent not cleared; the next open finds the append complete");
                }
            }
            fault::point("append:after-intent-removed");
            Ok(Appended {
                uidvalidity,
                first_uid,
                count: own.len() as u32,
            })
        }
        Err(e) => {
            pending::unclaim(&pending_dir, &claimed_ids);
            Err(e)
        }
    }
}

/// Write one batch; returns the first UID assigned and the UIDVALIDITY.
fn write_batch(
    session: &mut WriteSession,
    own: &[NewMessage],
    claimed: &[pending::Claimed],
) -> Result<(u32, u32)> {
    let mailbox = session.mailbox.clone();
    let path = mailbox.mbox_path();
    let file = session.lock.file();
    let stat = MboxStat::of(file, path)?;
    let orig = stat.size;
    let first_uid = session.index.uidnext;
    let uidvalidity = session.index.uidvalidity;
    if std::env::var_os("HAMAIL_DEBUG_BATCH").is_some() {
        eprintln!("batch {} + {}", own.len(), claimed.len());
    }
    let all: Vec<&NewMessage> = own
        .iter()
        .chain(claimed.iter().flat_map(|c| c.msgs.iter()))
        .collect();
    if all.is_empty() {
        return Ok((first_uid, uidvalidity));
    }

    // A foreign writer may have left the file without a final newline: the next `From `
    // must start a line, so that newline joins the previous message.
    let mut buf = Vec::new();
    if orig > 0 {
        let mut last = [0u8; 1];
        file.read_exact_at(&mut last, orig - 1).at(path)?;
        if last[0] != b'\n' {
            buf.push(b'\n');
        }
    }
    let lead = buf.len() as u64;
    let mut metas = Vec::with_capacity(all.len());
    for m in &all {
        let start = buf.len();
        let from_len = format::encode(&mut buf, &m.sender, m.date, &m.data);
        metas.push(MessageMeta {
            uid: 0,
            flags: m.flags,
            keywords: 0,
            offset: orig + start as u64,
            from_len: from_len as u32,
            len: (buf.len() - start) as u64,
            size: m.data.len() as u64,
            date: m.date,
            fp: crc32fast::hash(&buf[start..]),
            bare_lf: crate::index::count_bare_lf(&m.data),
        });
    }
    let new_size = orig + buf.len() as u64;

    // 2. The intent, durable before any byte of the append can be.
    let mut tickets = vec![(String::new(), own.len() as u32)];
    tickets.extend(claimed.iter().map(|c| (c.id.clone(), c.msgs.len() as u32)));
    let queue_ids = all.iter().map(|m| m.queue_id.clone()).collect();
    let intent_path = mailbox.intent_path();
    intent::write(
        &intent_path,
        &Intent {
            orig,
            new: new_size,
            crc: crc32fast::hash(&buf),
            head: buf[..buf.len().min(intent::HEAD_LEN)].to_vec(),
            block_crcs: buf
                .chunks_exact(intent::BLOCK_CRC_SIZE)
                .map(crc32fast::hash)
                .collect(),
            dev: stat.dev,
            ino: stat.ino,
            tickets,
            queue_ids,
        },
    )?;
    fault::point("append:after-intent");

    // 3. The messages, then one fsync; undo on any error.
    let written = (|| -> std::io::Result<()> {
        if fault::armed("append:mid-write") {
            let half = buf.len() / 2;
            file.write_all_at(&buf[..half], orig)?;
            fault::point("append:mid-write");
        }
        file.write_all_at(&buf, orig)?;
        fault::point("append:after-write");
        fault::pause("append:after-write");
        file.sync_data()
    })();
    if let Err(e) = written {
        // Undo now, but keep the intent for the next locker to check: on NFS a failed
        // write-back (ENOSPC) can leave dirty pages that the client flushes later, at
        // close, re-extending the file past `orig` with our bytes or NULs after this
        // truncation succeeded (seen in the VM lab with a full export). The next
        // `recover` truncates whatever came back, or finds nothing and clears the intent.
        let _ = file.set_len(orig).and_then(|_| file.sync_data());
        // The mbox is as before but its mtime moved: record that, or the next open would
        // take the mailbox for edited and rebuild the index (which needs the space that
        // just ran out). The header is rewritten in place, needing no new blocks.
        if let Ok(stat) = MboxStat::of(file, path) {
            if stat.size == session.index.covered() {
                session.index.mbox = stat;
                let _ = session.index.save(&mailbox.index_path(), false);
            }
        }
        return Err(StorageError::io(path, e));
    }
    fault::point("append:after-fsync");

    // 4. Index, intent, tickets. The messages are durable now: a failure from here on
    // (say the disk filled up under the index) must not be reported as a failed
    // delivery, or the sender would retry and the message arrive twice. The next opener
    // extends the index to the same UIDs (assignment is deterministic) and treats a
    // leftover intent whose bytes are all there as a completed append.
    let index = &mut session.index;
    if lead > 0 {
        index.grow_last(&buf[..lead as usize]);
    }
    for m in metas {
        index.push(m);
    }
    for (pos, m) in all.iter().enumerate() {
        if !m.keywords.is_empty() {
            let i = index.messages.len() - all.len() + pos;
            let mut bits = 0;
            for k in &m.keywords {
                bits |= index.keyword_bit(k).unwrap_or(0);
            }
            let flags = index.messages[i].flags;
            index.set_flags(i, flags, bits);
        }
    }
    let saved = MboxStat::of(file, path).and_then(|stat| {
        index.mbox = stat;
        index.save(&mailbox.index_path(), false)
    });
    if let Err(e) = saved {
        tracing::warn!(error = %e, "index not updated after a durable append; the next open repairs it");
    }
    fault::point("append:after-index");
    Ok((first_uid, uidvalidity))
}

/// Repair what a crashed append left (called first thing under the write lock).
pub fn recover(mailbox: &Mailbox, lock: &crate::lock::WriteLock) -> Result<Repaired> {
    let pending_dir = mailbox.pending_dir();
    let intent_path = mailbox.intent_path();
    let mut repaired = Repaired::default();
    let mut done_ids: Vec<String> = Vec::new();
    if let Some(i) = intent::read(&intent_path)? {
        let mut clear_now = true;
        let file = lock.file();
        let path = mailbox.mbox_path();
        let stat = MboxStat::of(file, path)?;
        // Inode only: st_dev differs between NFS clients, and the host that recovers is
        // often not the one that crashed.
        let same_file = i.ino == stat.ino;
        if same_file && i.new > i.orig && stat.size >= i.new {
            let mut appended = vec![0u8; (i.new - i.orig) as usize];
            file.read_exact_at(&mut appended, i.orig).at(path)?;
            if crc32fast::hash(&appended) == i.crc {
                file.sync_data().at(path)?;
                tracing::warn!(mbox = %path.display(), queue_ids = ?i.queue_ids,
                    "completed append found after a crash; kept");
                repaired.start = i.orig;
                done_ids = i.tickets.iter().map(|(id, _)| id.clone()).collect();
                repaired.done = i.tickets;
                // Cleared by finish_recovery once every ticket is marked done.
                clear_now = false;
            } else if is_our_prefix(file, path, &i, i.new)?
                && is_zero(file, path, i.new, stat.size)?
            {
                tracing::warn!(queue_ids = ?i.queue_ids, "undoing an interrupted append");
                truncate_back(file, path, i.orig)?;
            } else {
                tracing::error!(mbox = %path.display(), orig = i.orig, new = i.new, size = stat.size,
                    "torn append followed by foreign mail; left for the index rebuild");
            }
        } else if same_file && stat.size > i.orig && stat.size < i.new {
            if is_our_prefix(file, path, &i, stat.size)? {
                truncate_back(file, path, i.orig)?;
            } else {
                tracing::error!(mbox = %path.display(), orig = i.orig, size = stat.size,
                    "bytes after an interrupted append are not ours; left for the index rebuild");
            }
        }
        if clear_now {
            intent::clear(&intent_path)?;
        }
    }
    // Every claim not known to be done goes back to pending.
    let orphans: Vec<String> = pending::orphaned_claims(&pending_dir)
        .into_iter()
        .filter(|id| !done_ids.contains(id))
        .collect();
    pending::unclaim(&pending_dir, &orphans);
    Ok(repaired)
}

/// Whether `[orig, size)` of the mbox is provably a prefix of what the interrupted append
/// meant to write (its first bytes, and every whole block by CRC), so truncating it
/// cannot remove mail another program appended after a crash.
///
/// Zero bytes count as ours: an NFS client whose write-back failed (ENOSPC, EIO) leaves
/// the file extended over the failed pages with NULs (seen in the VM lab with a full
/// export). No mail program writes NUL blocks, so such a range is a torn append of ours,
/// not foreign mail, and must be truncated like any other.
fn is_our_prefix(file: &fs::File, path: &Path, i: &Intent, size: u64) -> Result<bool> {
    let len = (size - i.orig) as usize;
    let mut data = vec![0u8; len];
    file.read_exact_at(&mut data, i.orig).at(path)?;
    let head = i.head.len().min(len);
    if !data[..head]
        .iter()
        .zip(&i.head[..head])
        .all(|(d, h)| d == h || *d == 0)
    {
        return Ok(false);
    }
    Ok(data
        .chunks_exact(intent::BLOCK_CRC_SIZE)
        .zip(&i.block_crcs)
        .all(|(block, crc)| crc32fast::hash(block) == *crc || block.iter().all(|b| *b == 0)))
}

/// Whether `[from, to)` of the mbox is all NUL bytes (true when empty): the page
/// rounding an NFS client leaves after a failed write-back.
fn is_zero(file: &fs::File, path: &Path, from: u64, to: u64) -> Result<bool> {
    // In chunks, stopping at the first byte of mail: what follows may be large.
    let mut buf = vec![0u8; 64 << 10];
    let mut at = from;
    while at < to {
        let n = buf.len().min((to - at) as usize);
        file.read_exact_at(&mut buf[..n], at).at(path)?;
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

fn truncate_back(file: &fs::File, path: &Path, orig: u64) -> Result<()> {
    tracing::warn!(mbox = %path.display(), orig, "removing a partial append left by a crash");
    file.set_len(orig).at(path)?;
    file.sync_data().at(path)
}

/// After the index is in sync: tell the submitters of a recovered append where it landed.
pub fn finish_recovery(session: &mut WriteSession, repaired: Repaired) -> Result<()> {
    if repaired.done.is_empty() {
        return Ok(());
    }
    let intent_path = session.mailbox.intent_path();
    let dir = session.mailbox.pending_dir();
    let index = &session.index;
    let mut pos = index
        .messages
        .iter()
        .position(|m| m.offset >= repaired.start)
        .unwrap_or(index.messages.len());
    for (id, count) in repaired.done {
        let Some(first) = index.messages.get(pos) else {
            break;
        };
        if !id.is_empty() {
            let a = Appended {
                uidvalidity: index.uidvalidity,
                first_uid: first.uid,
                count,
            };
            // A ticket marked by an earlier, interrupted recovery is no longer `c.`.
            if let Err(e) = pending::mark_done(&dir, &id, a) {
                if !e.is_not_found() {
                    return Err(e);
                }
            }
        }
        pos += count as usize;
    }
    intent::clear(&intent_path)
}
