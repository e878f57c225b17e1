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

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

use super::pending::{self, State, Ticket};
use super::{format, Appended, Mailbox, NewMessage, WriteSession};
use crate::error::{IoContext, Result, StorageError};
use crate::fault;
use crate::index::{MboxStat, MessageMeta};
use crate::lock::Backoff;
use crate::record;

const MAGIC: &[u8; 8] = b"HMINTNT1";
const T_ORIG: u8 = 1;
const T_NEW: u8 = 2;
const T_CRC: u8 = 3;
const T_DEV: u8 = 4;
const T_INO: u8 = 5;
/// A ticket id ("" for the holder's own messages), followed by its T_COUNT.
const T_TICKET: u8 = 6;
const T_COUNT: u8 = 7;

/// What a crashed append left to do once the index is in sync.
#[derive(Debug, Default)]
pub struct Repaired {
    /// Tickets whose messages made it, in mbox order from `start`.
    done: Vec<(String, u32)>,
    start: u64,
}

/// See [`Mailbox::append`].
pub fn append(mailbox: &Mailbox, msgs: &[NewMessage]) -> Result<Appended> {
    if msgs.is_empty() {
        return Err(StorageError::Corrupt {
            what: "append",
            path: mailbox.mbox_path().to_path_buf(),
            reason: "nothing to append".into(),
        });
    }
    // Uncontended: just do it.
    if let Some(mut session) = mailbox.try_write()? {
        return session.append(msgs);
    }
    // Busy: leave the messages for whoever holds the lock, and take the lock ourselves
    // whenever it is free and our messages are still waiting.
    let opts = mailbox.lock_options();
    let ticket = Ticket::submit(&mailbox.pending_dir(), msgs, &opts.hostname)?;
    let deadline = Instant::now() + opts.timeout;
    let mut backoff = Backoff::new(opts, deadline);
    let mut lost_checks = 0;
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
            State::Pending | State::Claimed => {
                if let Some(mut session) = mailbox.try_write()? {
                    session.append(&[])?;
                    continue;
                }
            }
            State::Lost => {
                lost_checks += 1;
                if lost_checks > 3 {
                    return Err(StorageError::Io {
                        path: mailbox.pending_dir(),
                        source: std::io::Error::other(format!(
                            "pending append {} vanished; it may or may not be delivered",
                            ticket.id
                        )),
                    });
                }
            }
        }
        if !backoff.wait() {
            if ticket.cancel() {
                return Err(StorageError::LockTimeout {
                    path: mailbox.mbox_path().to_path_buf(),
                });
            }
            // Claimed: the holder is writing it right now; wait for the outcome a while
            // longer rather than report a failure for mail that is being delivered.
            backoff = Backoff::new(opts, Instant::now() + opts.timeout);
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
            // Tickets follow our own messages in the batch.
            let mut uid = first_uid + own.len() as u32;
            for c in &claimed {
                let a = Appended {
                    uidvalidity,
                    first_uid: uid,
                    count: c.msgs.len() as u32,
                };
                pending::mark_done(&pending_dir, &c.id, a)?;
                uid += c.msgs.len() as u32;
            }
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
        });
    }
    let new_size = orig + buf.len() as u64;

    // 2. The intent, durable before any byte of the append can be.
    let mut w = record::Writer::new(MAGIC);
    w.u64(T_ORIG, orig)
        .u64(T_NEW, new_size)
        .u64(T_CRC, crc32fast::hash(&buf) as u64)
        .u64(T_DEV, stat.dev)
        .u64(T_INO, stat.ino);
    w.field(T_TICKET, b"").u64(T_COUNT, own.len() as u64);
    for c in claimed {
        w.field(T_TICKET, c.id.as_bytes())
            .u64(T_COUNT, c.msgs.len() as u64);
    }
    let intent = mailbox.intent_path();
    write_durable(&intent, &w.finish())?;
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
        file.sync_data()
    })();
    if let Err(e) = written {
        let _ = file.set_len(orig).and_then(|_| file.sync_data());
        let _ = fs::remove_file(&intent);
        return Err(StorageError::io(path, e));
    }
    fault::point("append:after-fsync");

    // 4. Index, intent, tickets.
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
    index.mbox = MboxStat::of(file, path)?;
    index.save(&mailbox.index_path(), false)?;
    fault::point("append:after-index");
    remove_intent(&intent)?;
    fault::point("append:after-intent-removed");
    Ok((first_uid, uidvalidity))
}

fn write_durable(path: &Path, data: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).at(dir)?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .at(path)?;
    f.write_all(data).at(path)?;
    f.sync_data().at(path)
}

fn remove_intent(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

/// Repair what a crashed append left (called first thing under the write lock).
pub fn recover(mailbox: &Mailbox, lock: &crate::lock::WriteLock) -> Result<Repaired> {
    let pending_dir = mailbox.pending_dir();
    let intent = mailbox.intent_path();
    let mut repaired = Repaired::default();
    let data = match fs::read(&intent) {
        Ok(d) => Some(d),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(StorageError::io(&intent, e)),
    };
    let mut done_ids: Vec<String> = Vec::new();
    if let Some(data) = data {
        match record::Record::decode(&data, MAGIC, "append intent", &intent) {
            // Torn intent: it was never fsynced, so no byte of that append was written.
            Err(_) => {}
            Ok(rec) => {
                let file = lock.file();
                let path = mailbox.mbox_path();
                let stat = MboxStat::of(file, path)?;
                let get = |t| rec.u64(t).unwrap_or(0);
                let (orig, new) = (get(T_ORIG), get(T_NEW));
                let same_file = get(T_DEV) == stat.dev && get(T_INO) == stat.ino;
                let tickets: Vec<(String, u32)> = rec
                    .all(T_TICKET)
                    .zip(rec.all(T_COUNT))
                    .map(|(id, n)| {
                        let n = n.try_into().map(u64::from_le_bytes).unwrap_or(0) as u32;
                        (String::from_utf8_lossy(id).into_owned(), n)
                    })
                    .collect();
                if same_file && new > orig && stat.size >= new {
                    let mut appended = vec![0u8; (new - orig) as usize];
                    file.read_exact_at(&mut appended, orig).at(path)?;
                    if crc32fast::hash(&appended) as u64 == get(T_CRC) {
                        file.sync_data().at(path)?;
                        tracing::warn!(mbox = %path.display(), "completed append found after a crash; kept");
                        repaired.start = orig;
                        repaired.done = tickets;
                        done_ids = repaired.done.iter().map(|(id, _)| id.clone()).collect();
                    } else if stat.size == new {
                        truncate_back(file, path, orig)?;
                    } else {
                        tracing::error!(mbox = %path.display(), orig, new, size = stat.size,
                            "torn append followed by foreign mail; left for the index rebuild");
                    }
                } else if same_file && stat.size > orig {
                    truncate_back(file, path, orig)?;
                }
            }
        }
        remove_intent(&intent)?;
    }
    // Every claim not known to be done goes back to pending.
    let orphans: Vec<String> = pending::orphaned_claims(&pending_dir)
        .into_iter()
        .filter(|id| !done_ids.contains(id))
        .collect();
    pending::unclaim(&pending_dir, &orphans);
    Ok(repaired)
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
            pending::mark_done(&dir, &id, a)?;
        }
        pos += count as usize;
    }
    Ok(())
}
