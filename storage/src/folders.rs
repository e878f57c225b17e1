//! A user's set of mailboxes: list, create, delete and rename (each mailbox with its
//! sidecars), and the subscription list. The only code that walks `folders/<user>` or
//! moves a mailbox's sidecar files.
//!
//! As with every mbox store, a name is either a mailbox (a file: `\NoInferiors`) or a
//! level of the hierarchy (a directory: `\Noselect`); `create("a/")` makes a level. INBOX
//! (`mail/<user>`) always exists and cannot be deleted or renamed here (IMAP's RENAME of
//! INBOX moves its messages instead).
//!
//! # What a crash leaves
//!
//! The mbox file is the truth; its sidecars (`.idx`, `.recent`, `.intent`, `.pending/`)
//! can all be rebuilt from it or are only meaningful while it exists. So every operation
//! changes the sidecars on the side of keeping the mailbox, and the mbox last:
//!
//! - **delete** (under the mailbox's write lock, which first finishes any interrupted
//!   append): (1) the index and the \Recent watermark are removed — a crash here leaves
//!   the whole mailbox, whose next opener rebuilds the index (UIDs kept from `X-UID`
//!   where present, else a new UIDVALIDITY: clients resynchronise, nothing is lost);
//!   (2) the mbox is removed and its directory fsynced — from here the mailbox is gone;
//!   (3) leftover append hand-offs (`.pending/`) are removed — a crash before this leaves
//!   a directory that [`Folders::create`] clears before a mailbox of the same name is
//!   made again.
//! - **rename** (under the source's write lock): (1) the index and watermark move to the
//!   new name — a crash here leaves the mailbox under its old name without an index
//!   (rebuilt on open) and an orphan index under the new name, which `create` and
//!   `rename` clear before they use the name; (2) the mbox moves (one `rename(2)`, atomic
//!   on the NFS server) and the directories are fsynced.
//! - **create**: stale sidecars of the name are removed, then the empty mbox is created
//!   with `O_EXCL` and its directory fsynced; a crash leaves either no mailbox or an
//!   empty one.
//! - **subscriptions**: the whole list is one checksummed record written to a temporary,
//!   fsynced and renamed over the old one: a crash leaves the old list or the new one.
//!
//! Renaming a hierarchy level moves its directory and its index directory without locking
//! the mailboxes below it (like Dovecot's mbox store): a session that has one of them
//! selected sees it disappear.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, StorageError};
use crate::mbox::Mailbox;
use crate::record;
use crate::spool::{is_reserved_level, Spool};

/// The subscription list: one checksummed record, a name per field.
const SUBSCRIPTIONS_MAGIC: &[u8; 8] = b"HMSUBS01";
const T_NAME: u8 = 1;

/// Why a folder operation was refused (as opposed to failing on the spool).
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("mailbox already exists")]
    AlreadyExists,
    #[error("no such mailbox")]
    NonExistent,
    #[error("a parent is a mailbox and cannot have children")]
    ParentIsMailbox,
    #[error("the hierarchy level still has mailboxes")]
    HasChildren,
    #[error("INBOX cannot be deleted")]
    InboxIsPermanent,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// One entry of the user's mailbox list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// A hierarchy level without messages.
    pub noselect: bool,
    pub has_children: bool,
}

/// The mailboxes of one user. Cheap to create; holds no open files.
#[derive(Debug)]
pub struct Folders<'a> {
    spool: &'a Spool,
    user: &'a str,
    /// `<spool>/folders/<user>`: every mailbox but INBOX lives below it.
    root: PathBuf,
    /// `<spool>/index/<user>/.subscriptions`.
    subscriptions: PathBuf,
}

impl Spool {
    /// The mailboxes of `user` (validated like every user name).
    pub fn folders<'a>(&'a self, user: &'a str) -> Result<Folders<'a>> {
        crate::spool::validate_user(user)?;
        Ok(Folders {
            spool: self,
            user,
            root: self.folders_root(user),
            subscriptions: self.subscriptions_path(user),
        })
    }
}

impl<'a> Folders<'a> {
    pub fn user(&self) -> &str {
        self.user
    }

    /// The mailbox called `name` (which need not exist).
    pub fn mailbox(&self, name: &str) -> Result<Mailbox> {
        self.spool.mailbox(self.user, name)
    }

    /// Whether `name` can be selected (INBOX always can).
    pub fn exists(&self, name: &str) -> Result<bool> {
        if name.eq_ignore_ascii_case("INBOX") {
            return Ok(true);
        }
        Ok(self.mailbox(name)?.mbox_path().is_file())
    }

    /// CREATE: a mailbox, or with a trailing `/` a hierarchy level.
    pub fn create(&self, name: &str) -> Result<(), FolderError> {
        if name.eq_ignore_ascii_case("INBOX") {
            return Err(FolderError::AlreadyExists);
        }
        let level = name.ends_with('/');
        let m = self.mailbox(name.trim_end_matches('/'))?;
        let path = m.mbox_path().to_path_buf();
        if path.exists() {
            return Err(FolderError::AlreadyExists);
        }
        // Every parent must be a level, not a mailbox.
        let mut parent = path.parent();
        while let Some(p) = parent {
            if p == self.root {
                break;
            }
            if p.is_file() {
                return Err(FolderError::ParentIsMailbox);
            }
            parent = p.parent();
        }
        if level {
            std::fs::create_dir_all(&path).at(&path)?;
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        // A crash in an earlier delete or rename may have left sidecars under this name:
        // a new mailbox must not inherit an index, watermark or hand-offs.
        m.remove_sidecars()?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    FolderError::AlreadyExists
                } else {
                    StorageError::io(&path, e).into()
                }
            })?;
        crate::fsutil::fsync_dir(&path)?;
        Ok(())
    }

    /// DELETE a mailbox (with its sidecars) or an empty hierarchy level.
    pub fn delete(&self, name: &str) -> Result<(), FolderError> {
        if name.eq_ignore_ascii_case("INBOX") {
            return Err(FolderError::InboxIsPermanent);
        }
        let m = self.mailbox(name.trim_end_matches('/'))?;
        let path = m.mbox_path().to_path_buf();
        if path.is_dir() {
            // A level: only when empty (RFC 3501 §6.3.4 lets servers refuse otherwise).
            std::fs::remove_dir(&path).map_err(|_| FolderError::HasChildren)?;
            // Its index directory holds only sidecars of mailboxes that no longer exist.
            let _ = std::fs::remove_dir_all(m.index_dir());
            return Ok(());
        }
        if !path.is_file() {
            return Err(FolderError::NonExistent);
        }
        // Under the mailbox lock, so no delivery or session is half-way through it; taking
        // it finishes any interrupted append first.
        let session = m.write()?;
        m.remove_file_sidecars()?;
        crate::fault::point("delete:after-sidecars");
        std::fs::remove_file(&path).at(&path)?;
        crate::fsutil::fsync_dir(&path)?;
        crate::fault::point("delete:after-mbox");
        m.remove_pending()?;
        drop(session);
        Ok(())
    }

    /// RENAME a mailbox or a hierarchy level (not INBOX: see the module doc).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), FolderError> {
        let src = self.mailbox(from)?;
        if to.eq_ignore_ascii_case("INBOX") {
            return Err(FolderError::AlreadyExists);
        }
        let dst = self.mailbox(to)?;
        if !src.mbox_path().exists() {
            return Err(FolderError::NonExistent);
        }
        if dst.mbox_path().exists() {
            return Err(FolderError::AlreadyExists);
        }
        let dst_path = dst.mbox_path().to_path_buf();
        if let Some(dir) = dst_path.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        if src.mbox_path().is_dir() {
            std::fs::rename(src.mbox_path(), &dst_path).at(&dst_path)?;
            let (si, di) = (src.index_dir(), dst.index_dir());
            if si.is_dir() {
                if let Some(dir) = di.parent() {
                    std::fs::create_dir_all(dir).at(dir)?;
                }
                std::fs::rename(&si, &di).at(&di)?;
            }
            crate::fsutil::fsync_dir(&dst_path)?;
            return Ok(());
        }
        let session = src.write()?;
        // An orphan index left under the new name by an earlier crash must not be taken
        // for this mailbox's.
        dst.remove_sidecars()?;
        src.move_file_sidecars(&dst)?;
        crate::fault::point("rename:after-sidecars");
        std::fs::rename(src.mbox_path(), &dst_path).at(&dst_path)?;
        crate::fsutil::fsync_dir(&dst_path)?;
        if src.mbox_path().parent() != dst_path.parent() {
            crate::fsutil::fsync_dir(src.mbox_path())?;
        }
        src.remove_pending()?;
        drop(session);
        Ok(())
    }

    /// Every mailbox and level below the user's folder root, plus INBOX, sorted by name
    /// within each level. The spool's own files (dotlocks and their hitching posts) are
    /// not mailboxes and are left out.
    pub fn list(&self) -> Vec<Entry> {
        let mut out = vec![Entry {
            name: "INBOX".to_string(),
            noselect: false,
            has_children: false,
        }];
        walk(&self.root, "", &mut out);
        out
    }

    /// The subscribed names, in order (RFC 3501 §6.3.6: kept whether or not the mailbox
    /// exists). An unreadable list reads as empty.
    pub fn subscriptions(&self) -> Vec<String> {
        let path = &self.subscriptions;
        let Some(data) = record::read_file(path) else {
            return Vec::new();
        };
        if !data.starts_with(SUBSCRIPTIONS_MAGIC) {
            // Written by an earlier version: one name per line.
            return String::from_utf8_lossy(&data)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
        }
        match record::Record::decode(&data, SUBSCRIPTIONS_MAGIC, "subscriptions", path) {
            Ok(r) => r
                .all(T_NAME)
                .filter_map(|n| std::str::from_utf8(n).ok())
                .map(str::to_string)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable subscription list");
                Vec::new()
            }
        }
    }

    /// SUBSCRIBE (`on`) or UNSUBSCRIBE `name`.
    pub fn set_subscribed(&self, name: &str, on: bool) -> Result<()> {
        let mut subs = self.subscriptions();
        subs.retain(|s| s != name);
        if on {
            // Names are shown in LSUB as they are: no control characters.
            if name.chars().any(char::is_control) {
                return Err(StorageError::InvalidName {
                    name: name.to_string(),
                    reason: "control characters are not allowed",
                });
            }
            subs.push(name.to_string());
        }
        subs.sort();
        let mut record = record::Writer::new(SUBSCRIPTIONS_MAGIC);
        for s in &subs {
            record.field(T_NAME, s.as_bytes());
        }
        let path = &self.subscriptions;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        record::replace_file(path, &crate::index::file_beside(path), record)
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Entry>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<(String, bool)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if is_reserved_level(&name) {
                return None;
            }
            let is_dir = e.file_type().ok()?.is_dir();
            Some((name, is_dir))
        })
        .collect();
    names.sort();
    for (name, is_dir) in names {
        let full = format!("{prefix}{name}");
        if is_dir {
            let at = out.len();
            out.push(Entry {
                name: full.clone(),
                noselect: true,
                has_children: false,
            });
            walk(&dir.join(&name), &format!("{full}/"), out);
            out[at].has_children = out.len() > at + 1;
        } else {
            out.push(Entry {
                name: full,
                noselect: false,
                has_children: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mbox::NewMessage;
    use crate::LockOptions;

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
        (dir, spool)
    }

    fn names(f: &Folders<'_>) -> Vec<String> {
        f.list().into_iter().map(|e| e.name).collect()
    }

    #[test]
    fn create_list_delete() {
        let (_d, spool) = spool();
        let f = spool.folders("ann").unwrap();
        f.create("Sent").unwrap();
        f.create("Archive/").unwrap();
        f.create("Archive/2024").unwrap();
        assert!(matches!(f.create("Sent"), Err(FolderError::AlreadyExists)));
        assert!(matches!(
            f.create("Sent/x"),
            Err(FolderError::ParentIsMailbox)
        ));
        assert_eq!(names(&f), ["INBOX", "Archive", "Archive/2024", "Sent"]);
        let archive = &f.list()[1];
        assert!(archive.noselect && archive.has_children);
        assert!(matches!(f.delete("Archive"), Err(FolderError::HasChildren)));
        assert!(matches!(
            f.delete("INBOX"),
            Err(FolderError::InboxIsPermanent)
        ));
        f.delete("Archive/2024").unwrap();
        f.delete("Archive").unwrap();
        assert!(matches!(f.delete("Nope"), Err(FolderError::NonExistent)));
        assert_eq!(names(&f), ["INBOX", "Sent"]);
    }

    #[test]
    fn delete_takes_the_sidecars_and_a_new_mailbox_starts_afresh() {
        let (_d, spool) = spool();
        let f = spool.folders("ann").unwrap();
        f.create("Box").unwrap();
        let m = f.mailbox("Box").unwrap();
        m.append(&[NewMessage::new("a@x", b"Subject: 1\n\nx\n".to_vec())])
            .unwrap();
        let old_validity = m.read().unwrap().index().uidvalidity;
        m.claim_recent(1).unwrap();
        assert!(m.index_path().exists());
        f.delete("Box").unwrap();
        assert!(!m.index_path().exists() && !m.mbox_path().exists());
        assert_eq!(m.recent_watermark(), 0);
        f.create("Box").unwrap();
        let rs = m.read().unwrap();
        assert_eq!(rs.index().visible().count(), 0);
        assert!(rs.index().uidvalidity > old_validity);
    }

    #[test]
    fn rename_moves_messages_index_and_watermark() {
        let (_d, spool) = spool();
        let f = spool.folders("ann").unwrap();
        f.create("A").unwrap();
        let a = f.mailbox("A").unwrap();
        a.append(&[NewMessage::new("a@x", b"Subject: 1\n\nx\n".to_vec())])
            .unwrap();
        a.claim_recent(1).unwrap();
        let validity = a.read().unwrap().index().uidvalidity;
        f.rename("A", "B/C").unwrap();
        assert!(!a.mbox_path().exists() && !a.index_path().exists());
        let c = f.mailbox("B/C").unwrap();
        let rs = c.read().unwrap();
        assert_eq!(rs.index().uidvalidity, validity);
        assert_eq!(rs.index().visible().count(), 1);
        assert_eq!(c.recent_watermark(), 1);
        assert!(matches!(f.rename("A", "D"), Err(FolderError::NonExistent)));
        f.create("D").unwrap();
        assert!(matches!(
            f.rename("B/C", "D"),
            Err(FolderError::AlreadyExists)
        ));
        assert!(matches!(
            f.rename("B/C", "inbox"),
            Err(FolderError::AlreadyExists)
        ));
        // A level moves with everything below it.
        f.rename("B", "E").unwrap();
        assert_eq!(names(&f), ["INBOX", "D", "E", "E/C"]);
        assert_eq!(
            f.mailbox("E/C")
                .unwrap()
                .read()
                .unwrap()
                .index()
                .uidvalidity,
            validity
        );
    }

    #[test]
    fn subscriptions_survive_and_refuse_line_breaks() {
        let (_d, spool) = spool();
        let f = spool.folders("ann").unwrap();
        f.set_subscribed("b", true).unwrap();
        f.set_subscribed("a", true).unwrap();
        f.set_subscribed("gone", true).unwrap();
        f.set_subscribed("gone", false).unwrap();
        assert_eq!(f.subscriptions(), ["a", "b"]);
        assert!(f.set_subscribed("x\ny", true).is_err());
        assert_eq!(spool.folders("ann").unwrap().subscriptions(), ["a", "b"]);
        assert!(spool.folders("../x").is_err());
    }

    #[test]
    fn subscriptions_are_a_checksummed_record_and_old_lists_still_read() {
        let (dir, spool) = spool();
        let path = dir.path().join("index/ann/.subscriptions");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // An earlier version's plain list.
        std::fs::write(&path, "Old\nSent\n").unwrap();
        let f = spool.folders("ann").unwrap();
        assert_eq!(f.subscriptions(), ["Old", "Sent"]);
        f.set_subscribed("New", true).unwrap();
        let data = std::fs::read(&path).unwrap();
        assert!(data.starts_with(SUBSCRIPTIONS_MAGIC));
        assert_eq!(f.subscriptions(), ["New", "Old", "Sent"]);
        // A torn write reads as no list, never as half of one or as garbage.
        std::fs::write(&path, &data[..data.len() - 3]).unwrap();
        assert!(f.subscriptions().is_empty());
    }

    #[test]
    fn lock_files_are_not_mailboxes() {
        let (_d, spool) = spool();
        let f = spool.folders("ann").unwrap();
        f.create("Box").unwrap();
        let root = f
            .mailbox("Box")
            .unwrap()
            .mbox_path()
            .parent()
            .unwrap()
            .to_owned();
        std::fs::write(root.join("Box.lock"), b"").unwrap();
        std::fs::write(root.join("Box.lock.host.1.2"), b"").unwrap();
        std::fs::write(root.join(".hidden"), b"").unwrap();
        assert_eq!(names(&f), ["INBOX", "Box"]);
    }
}
