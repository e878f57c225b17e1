//! Hand-off of appends to the current lock holder (group commit across processes and
//! hosts), through a directory on the spool beside the index:
//!
//! ```text
//! tmp.<id>                         being written by the submitter
//! p.<id>                           complete, waiting (renamed from tmp: never seen half)
//! c.<id>                           claimed by the lock holder, which is appending it
//! d.<id>                           done: fsynced in the mbox and indexed; holds where
//!                                  (UIDVALIDITY, first UID, count)
//! f.<id>                           failed (unreadable); the submitter reports an error
//! ```
//!
//! Every transition is a rename, atomic on the NFS server, so a submitter polling by name
//! always sees exactly one state. A holder that dies after claiming leaves `c.` files
//! that the next locker moves back to `p.` (or to `d.` if the append intent shows the
//! append completed). The files need no fsync: until the mbox append is fsynced nobody
//! has been told the message is delivered.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::{Appended, NewMessage};
use crate::error::{IoContext, Result, StorageError};
use crate::index::Flags;
use crate::record;

const MAGIC: &[u8; 8] = b"HMPEND01";
const T_SENDER: u8 = 1;
const T_DATE: u8 = 2;
const T_FLAGS: u8 = 3;
const T_KEYWORD: u8 = 4;
const T_QUEUE_ID: u8 = 5;
/// Ends one message's group of fields.
const T_DATA: u8 = 6;

/// The result record in `d.<id>`.
const DONE_MAGIC: &[u8; 8] = b"HMDONE01";
const T_UIDVALIDITY: u8 = 1;
const T_FIRST_UID: u8 = 2;
const T_COUNT: u8 = 3;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Where a submitted append stands.
#[derive(Debug, PartialEq, Eq)]
pub enum State {
    Pending,
    Claimed,
    Done(Appended),
    Failed,
    /// No trace of it (should not happen; treated as a temporary failure).
    Lost,
}

/// A submitted append, named by its id.
#[derive(Debug)]
pub struct Ticket {
    dir: PathBuf,
    pub id: String,
}

/// Encode messages for the pending directory (or an in-memory batch).
pub fn encode(msgs: &[NewMessage]) -> Vec<u8> {
    let mut w = record::Writer::new(MAGIC);
    for m in msgs {
        w.field(T_SENDER, m.sender.as_bytes())
            .u64(T_DATE, m.date as u64)
            .u64(T_FLAGS, m.flags.0 as u64)
            .field(T_QUEUE_ID, m.queue_id.as_bytes());
        for k in &m.keywords {
            w.field(T_KEYWORD, k.as_bytes());
        }
        w.field(T_DATA, &m.data);
    }
    w.finish()
}

pub fn decode(data: &[u8], path: &Path) -> Result<Vec<NewMessage>> {
    let rec = record::Record::decode(data, MAGIC, "pending append", path)?;
    let mut out = Vec::new();
    let mut cur = NewMessage::new("", Vec::new());
    for (tag, value) in rec.fields() {
        let num = || value.try_into().map(u64::from_le_bytes).unwrap_or(0);
        match tag {
            T_SENDER => cur.sender = String::from_utf8_lossy(value).into_owned(),
            T_DATE => cur.date = num() as i64,
            T_FLAGS => cur.flags = Flags(num() as u32),
            T_KEYWORD => cur
                .keywords
                .push(String::from_utf8_lossy(value).into_owned()),
            T_QUEUE_ID => cur.queue_id = String::from_utf8_lossy(value).into_owned(),
            T_DATA => {
                cur.data = value.to_vec();
                out.push(std::mem::replace(&mut cur, NewMessage::new("", Vec::new())));
            }
            _ => {}
        }
    }
    Ok(out)
}

impl Ticket {
    /// Write the messages as a new pending entry.
    pub fn submit(dir: &Path, msgs: &[NewMessage], host: &str) -> Result<Ticket> {
        fs::create_dir_all(dir).at(dir)?;
        let id = format!(
            "{host}.{pid}.{seq}.{rand:08x}",
            pid = std::process::id(),
            seq = SEQ.fetch_add(1, Ordering::Relaxed),
            rand = fastrand::u32(..)
        )
        .replace('/', "_");
        let tmp = dir.join(format!("tmp.{id}"));
        let f = crate::fsutil::create_new(&tmp, 0o600)?;
        // A full export refuses the data only when the client flushes it, at close: an
        // entry closed unchecked reached the holder empty, which failed it as unreadable
        // (451) where the cause was disk full (452).
        if let Err(e) = crate::fsutil::write_and_close(f, &encode(msgs)) {
            let _ = fs::remove_file(&tmp);
            return Err(StorageError::io(&tmp, e));
        }
        let pending = dir.join(format!("p.{id}"));
        crate::fsutil::rename(&tmp, &pending).at(&pending)?;
        Ok(Ticket {
            dir: dir.to_path_buf(),
            id,
        })
    }

    /// Where the entry stands, by looking up exact names, the result first. A lookup of
    /// a missing name asks the server under `lookupcache=positive`; with the default
    /// mount options a negative lookup may be served from cache, so when no name is
    /// found the directory is read (which revalidates it on NFS) before concluding.
    pub fn state(&self) -> Result<State> {
        if let Some(done) = self.take_result()? {
            return Ok(done);
        }
        let failed = self.dir.join(format!("f.{}", self.id));
        if failed.exists() {
            let _ = fs::remove_file(&failed);
            return Ok(State::Failed);
        }
        if self.dir.join(format!("p.{}", self.id)).exists() {
            return Ok(State::Pending);
        }
        if self.dir.join(format!("c.{}", self.id)).exists() {
            return Ok(State::Claimed);
        }
        // c. may have become d. since we looked for d.; or the lookups were stale. On
        // NFSv3 with the default `lookupcache=all`, neither a lookup nor a readdir asks
        // the server while the directory's cached attributes are young (up to
        // `acdirmin`, 30 s), so first make a change in the directory ourselves: the
        // reply's before/after attributes show the client that others changed it too,
        // which drops its negative entries and listing.
        let probe = self.dir.join(format!("x.probe.{}", self.id));
        if fs::File::create(&probe).is_ok() {
            let _ = fs::remove_file(&probe);
        }
        if let Some(done) = self.take_result()? {
            return Ok(done);
        }
        let mut found = State::Lost;
        for entry in fs::read_dir(&self.dir).at(&self.dir)? {
            let name = entry.at(&self.dir)?.file_name();
            let Some(id) = name.to_str().and_then(|n| n.get(2..)) else {
                continue;
            };
            if id != self.id {
                continue;
            }
            found = match name.to_str().map(|n| &n[..2]) {
                Some("d.") => return Ok(self.take_result()?.unwrap_or(State::Claimed)),
                Some("f.") => State::Failed,
                Some("p.") => State::Pending,
                Some("c.") => State::Claimed,
                _ => continue,
            };
        }
        Ok(found)
    }

    /// Read and remove `d.<id>` if it is there.
    fn take_result(&self) -> Result<Option<State>> {
        let done = self.dir.join(format!("d.{}", self.id));
        let data = match fs::read(&done) {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(&done, e)),
        };
        let _ = fs::remove_file(&done);
        let rec = record::Record::decode(&data, DONE_MAGIC, "append result", &done)?;
        let num = |t| rec.u64(t).unwrap_or(0) as u32;
        Ok(Some(State::Done(Appended {
            uidvalidity: num(T_UIDVALIDITY),
            first_uid: num(T_FIRST_UID),
            count: num(T_COUNT),
        })))
    }

    /// The submitter gave up on a claimed entry (and reported a temporary failure): if
    /// the claim goes back to pending (its holder died), the entry is dropped instead of
    /// appended, so the sender's retry does not deliver it twice.
    pub fn abandon(&self) {
        let _ = fs::write(self.dir.join(format!("a.{}", self.id)), b"");
        // If it went back to pending meanwhile, withdraw it now.
        self.cancel();
    }

    /// Withdraw the entry if nobody has claimed it. True if withdrawn.
    pub fn cancel(&self) -> bool {
        let pending = self.dir.join(format!("p.{}", self.id));
        let gone = self.dir.join(format!("x.{}", self.id));
        // A lock holder may claim `p.` meanwhile (see `fsutil::rename_to_own`).
        if crate::fsutil::rename_to_own(&pending, &gone).is_ok() {
            let _ = fs::remove_file(&gone);
            true
        } else {
            false
        }
    }
}

/// A claimed entry, held by the lock holder.
#[derive(Debug)]
pub struct Claimed {
    pub id: String,
    pub msgs: Vec<NewMessage>,
}

/// Claim every pending entry (the caller holds the mailbox write lock).
pub fn claim_all(dir: &Path) -> Result<Vec<Claimed>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StorageError::io(dir, e)),
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.at(dir)?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    let mut claimed = Vec::new();
    for name in &names {
        if let Some(id) = name.strip_prefix("p.") {
            if names.contains(&format!("a.{id}")) {
                let _ = fs::remove_file(dir.join(name));
                let _ = fs::remove_file(dir.join(format!("a.{id}")));
                continue;
            }
            let c = dir.join(format!("c.{id}"));
            // The submitter may withdraw `p.` meanwhile (see `fsutil::rename_to_own`).
            if crate::fsutil::rename_to_own(&dir.join(name), &c).is_err() {
                continue; // withdrawn meanwhile
            }
            match fs::read(&c).at(&c).and_then(|data| decode(&data, &c)) {
                Ok(msgs) => claimed.push(Claimed {
                    id: id.to_string(),
                    msgs,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable pending append");
                    let _ = fs::rename(&c, dir.join(format!("f.{id}")));
                }
            }
        } else if is_litter(name) {
            remove_if_old(&dir.join(name));
        }
    }
    Ok(claimed)
}

/// Move claimed entries back to pending (their append did not happen), or drop them if
/// their submitter has given up on them.
pub fn unclaim(dir: &Path, ids: &[String]) {
    for id in ids {
        let abandoned = dir.join(format!("a.{id}"));
        if abandoned.exists() {
            let _ = fs::remove_file(dir.join(format!("c.{id}")));
            let _ = fs::remove_file(&abandoned);
        } else {
            let _ = fs::rename(dir.join(format!("c.{id}")), dir.join(format!("p.{id}")));
        }
    }
}

/// Every `c.` entry left by a holder that died (ids).
pub fn orphaned_claims(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|n| n.strip_prefix("c.").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Mark a claimed entry done with where its messages landed: the claimed file is
/// overwritten with the result and renamed to `d.<id>`.
pub fn mark_done(dir: &Path, id: &str, a: Appended) -> Result<()> {
    let claimed = dir.join(format!("c.{id}"));
    let mut w = record::Writer::new(DONE_MAGIC);
    w.u64(T_UIDVALIDITY, a.uidvalidity as u64)
        .u64(T_FIRST_UID, a.first_uid as u64)
        .u64(T_COUNT, a.count as u64);
    // Checked at close like `submit`: an empty `d.` that the server refused to fill would
    // read as corrupt, and the submitter would report a failure for a delivered message.
    fs::File::create(&claimed)
        .and_then(|f| crate::fsutil::write_and_close(f, &w.finish()))
        .at(&claimed)?;
    let done = dir.join(format!("d.{id}"));
    crate::fsutil::rename(&claimed, &done).at(&done)
}

/// Results nobody collected and abandoned temporaries.
fn is_litter(name: &str) -> bool {
    ["a.", "d.", "f.", "tmp.", "x."]
        .iter()
        .any(|p| name.starts_with(p))
}

/// By ctime, which only the server sets: an NFSv3 exclusive create stores its verifier in
/// the new file's atime/mtime until the client's follow-up SETATTR, so a submitter's
/// `tmp.` seen in that window has an mtime decades old and was removed as litter under
/// it (its rename then failed with ENOENT).
fn remove_if_old(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let old = fs::symlink_metadata(path)
        .ok()
        .and_then(|m| {
            let changed =
                std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(m.ctime()).ok()?);
            SystemTime::now().duration_since(changed).ok()
        })
        .is_some_and(|age| age > Duration::from_secs(3600));
    if old {
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, prefix: &str, id: &str) -> std::io::Result<fs::File> {
        fs::File::open(dir.join(format!("{prefix}.{id}")))
    }

    #[test]
    fn submit_claim_done_cycle() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = NewMessage::new("a@b", b"Subject: x\n\nhi\n".to_vec());
        m.keywords = vec!["$Junk".into()];
        m.flags = Flags::SEEN;
        let t = Ticket::submit(dir.path(), &[m.clone(), m.clone()], "h1").unwrap();
        assert_eq!(t.state().unwrap(), State::Pending);
        let claimed = claim_all(dir.path()).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].msgs, vec![m.clone(), m]);
        assert_eq!(t.state().unwrap(), State::Claimed);
        assert!(!t.cancel(), "a claimed entry cannot be withdrawn");
        assert!(open(dir.path(), "c", &t.id).is_ok());
        let a = Appended {
            uidvalidity: 7,
            first_uid: 3,
            count: 2,
        };
        mark_done(dir.path(), &t.id, a).unwrap();
        assert_eq!(t.state().unwrap(), State::Done(a));
        // Collected: gone.
        assert_eq!(t.state().unwrap(), State::Lost);
    }

    #[test]
    fn unclaimed_entry_can_be_withdrawn_and_orphans_go_back() {
        let dir = tempfile::tempdir().unwrap();
        let m = NewMessage::new("", b"x".to_vec());
        let t = Ticket::submit(dir.path(), std::slice::from_ref(&m), "h").unwrap();
        assert!(t.cancel());
        assert_eq!(t.state().unwrap(), State::Lost);
        let t2 = Ticket::submit(dir.path(), &[m], "h").unwrap();
        claim_all(dir.path()).unwrap();
        assert_eq!(orphaned_claims(dir.path()), vec![t2.id.clone()]);
        unclaim(dir.path(), &orphaned_claims(dir.path()));
        assert_eq!(t2.state().unwrap(), State::Pending);
    }

    #[test]
    fn a_withdrawal_whose_rename_reply_was_lost_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        let t = Ticket::submit(dir.path(), &[NewMessage::new("", b"x".to_vec())], "h").unwrap();
        // The first RENAME p. -> x. was done, its reply lost; the retry finds no p.
        fs::rename(
            dir.path().join(format!("p.{}", t.id)),
            dir.path().join(format!("x.{}", t.id)),
        )
        .unwrap();
        assert!(t.cancel(), "withdrawn, not claimed by someone else");
        assert!(!dir.path().join(format!("x.{}", t.id)).exists());
        assert_eq!(t.state().unwrap(), State::Lost);
    }

    #[test]
    fn a_temporary_with_an_exclusive_create_verifier_for_mtime_is_not_litter() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp.h.1.2.3");
        let f = fs::File::create(&tmp).unwrap();
        // What an NFSv3 EXCLUSIVE create leaves until the client's SETATTR: a verifier.
        f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(12345))
            .unwrap();
        assert!(claim_all(dir.path()).unwrap().is_empty());
        assert!(tmp.exists(), "a file created just now is not old litter");
    }

    #[test]
    fn an_abandoned_claim_is_dropped_not_requeued() {
        let dir = tempfile::tempdir().unwrap();
        let m = NewMessage::new("", b"x".to_vec());
        let t = Ticket::submit(dir.path(), &[m], "h").unwrap();
        claim_all(dir.path()).unwrap();
        t.abandon();
        unclaim(dir.path(), &orphaned_claims(dir.path()));
        assert_eq!(t.state().unwrap(), State::Lost);
        assert!(claim_all(dir.path()).unwrap().is_empty());
    }
}
