//! The user's mailboxes on the spool: `<spool>/folders/<user>/<name>` (one mbox each,
//! `/` makes directories) plus INBOX at `<spool>/mail/<user>`, and the subscription list
//! (`<spool>/index/<user>/.subscriptions`). As with every mbox store, a name is either a
//! mailbox (a file: `\NoInferiors`) or a level of the hierarchy (a directory:
//! `\Noselect`); `CREATE a/` makes a level.

use std::path::{Path, PathBuf};

use hamail_storage::{Mailbox, Spool, StorageError};

/// Why a mailbox operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("mailbox already exists")]
    AlreadyExists,
    #[error("no such mailbox")]
    NonExistent,
    #[error("{0}")]
    Refused(&'static str),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// One entry of a LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// A hierarchy level without messages.
    pub noselect: bool,
    pub has_children: bool,
}

#[derive(Debug)]
pub struct Folders<'a> {
    spool: &'a Spool,
    user: &'a str,
}

impl<'a> Folders<'a> {
    pub fn new(spool: &'a Spool, user: &'a str) -> Folders<'a> {
        Folders { spool, user }
    }

    fn root(&self) -> PathBuf {
        self.spool.root().join("folders").join(self.user)
    }

    fn subscriptions_path(&self) -> PathBuf {
        self.spool
            .root()
            .join("index")
            .join(self.user)
            .join(".subscriptions")
    }

    pub fn mailbox(&self, name: &str) -> Result<Mailbox, FolderError> {
        Ok(self.spool.mailbox(self.user, name)?)
    }

    /// Whether `name` can be selected (INBOX always can).
    pub fn exists(&self, name: &str) -> Result<bool, FolderError> {
        if name == "INBOX" {
            return Ok(true);
        }
        let m = self.mailbox(name)?;
        Ok(m.mbox_path().is_file())
    }

    pub fn create(&self, name: &str) -> Result<(), FolderError> {
        if name == "INBOX" {
            return Err(FolderError::AlreadyExists);
        }
        let level = name.ends_with('/');
        let clean = name.trim_end_matches('/');
        let m = self.mailbox(clean)?;
        let path = m.mbox_path().to_path_buf();
        if path.exists() {
            return Err(FolderError::AlreadyExists);
        }
        // Every parent must be a level, not a mailbox.
        let mut parent = path.parent();
        while let Some(p) = parent {
            if p == self.root() {
                break;
            }
            if p.is_file() {
                return Err(FolderError::Refused(
                    "a parent is a mailbox and cannot have children",
                ));
            }
            parent = p.parent();
        }
        let io = |e| FolderError::Storage(StorageError::io(&path, e));
        if level {
            std::fs::create_dir_all(&path).map_err(io)?;
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    FolderError::AlreadyExists
                } else {
                    io(e)
                }
            })?;
        hamail_storage::mbox::fsync_dir(&path)?;
        Ok(())
    }

    pub fn delete(&self, name: &str) -> Result<(), FolderError> {
        if name == "INBOX" {
            return Err(FolderError::Refused("INBOX cannot be deleted"));
        }
        let m = self.mailbox(name.trim_end_matches('/'))?;
        let path = m.mbox_path().to_path_buf();
        if path.is_dir() {
            // A level: only when empty (RFC 3501 §6.3.4 lets servers refuse otherwise).
            return std::fs::remove_dir(&path)
                .map_err(|_| FolderError::Refused("the hierarchy level still has mailboxes"));
        }
        if !path.is_file() {
            return Err(FolderError::NonExistent);
        }
        // Under the mailbox lock, so no delivery or session is half-way through it.
        let session = m.write()?;
        std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
        remove_index_files(&m);
        drop(session);
        let _ = hamail_storage::mbox::fsync_dir(&path);
        Ok(())
    }

    /// RENAME (not of INBOX; the session handles that by moving its messages).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), FolderError> {
        let src = self.mailbox(from)?;
        let dst = self.mailbox(to)?;
        if !src.mbox_path().exists() {
            return Err(FolderError::NonExistent);
        }
        if dst.mbox_path().exists() || to == "INBOX" {
            return Err(FolderError::AlreadyExists);
        }
        let dst_path = dst.mbox_path().to_path_buf();
        let io = |p: &Path, e| FolderError::Storage(StorageError::io(p, e));
        if let Some(dir) = dst_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        if src.mbox_path().is_dir() {
            std::fs::rename(src.mbox_path(), &dst_path).map_err(|e| io(&dst_path, e))?;
            let (si, di) = (index_dir(&src), index_dir(&dst));
            if si.is_dir() {
                let _ = std::fs::rename(si, di);
            }
            return Ok(());
        }
        let session = src.write()?;
        if let Some(dir) = dst.index_path().parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        // Index first: a crash between the two renames leaves an mbox without index
        // (rebuilt, UIDs kept by import) rather than an index without its mbox.
        for ext in ["idx", "recent"] {
            let _ = std::fs::rename(
                src.index_path().with_extension(ext),
                dst.index_path().with_extension(ext),
            );
        }
        std::fs::rename(src.mbox_path(), &dst_path).map_err(|e| io(&dst_path, e))?;
        drop(session);
        let _ = hamail_storage::mbox::fsync_dir(&dst_path);
        Ok(())
    }

    /// Every mailbox and level below the user's folder root, plus INBOX.
    pub fn list(&self) -> Vec<Entry> {
        let mut out = vec![Entry {
            name: "INBOX".to_string(),
            noselect: false,
            has_children: false,
        }];
        walk(&self.root(), "", &mut out);
        out
    }

    pub fn subscriptions(&self) -> Vec<String> {
        std::fs::read_to_string(self.subscriptions_path())
            .map(|s| {
                s.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn set_subscribed(&self, name: &str, on: bool) -> Result<(), FolderError> {
        let mut subs = self.subscriptions();
        subs.retain(|s| s != name);
        if on {
            subs.push(name.to_string());
        }
        subs.sort();
        let path = self.subscriptions_path();
        let mut text = subs.join("\n");
        text.push('\n');
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        }
        hamail_storage::fsutil::write_synced(&path.with_extension("tmp"), text.as_bytes())?;
        std::fs::rename(path.with_extension("tmp"), &path)
            .map_err(|e| StorageError::io(&path, e))?;
        Ok(())
    }
}

fn index_dir(m: &Mailbox) -> PathBuf {
    m.index_path().with_extension("")
}

fn remove_index_files(m: &Mailbox) {
    for ext in ["idx", "recent", "intent"] {
        let _ = std::fs::remove_file(m.index_path().with_extension(ext));
    }
    let _ = std::fs::remove_dir_all(m.index_path().with_extension("pending"));
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<Entry>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<(String, bool)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            // Lock files, hitching posts and temporary files live beside mailboxes.
            if name.starts_with('.') || name.ends_with(".lock") || name.contains(".lock.") {
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
