//! The few ways this crate opens and writes files, in one place. (std opens every file
//! with `O_CLOEXEC`, so descriptors never leak into the programs an agent runs.)

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Open read-write, creating it (mode 0600) if absent, never truncating.
pub(crate) fn open_or_create(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .at(path)
}

/// Create a file that must not exist yet (`O_EXCL`), read-write.
pub(crate) fn create_new(path: &Path, mode: u32) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .at(path)
}

/// Replace the contents of `path` (mode 0600 if new) with `data` and fsync it.
pub fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .at(path)?;
    f.write_all(data).at(path)?;
    f.sync_all().at(path)
}

/// rename(2) for a `from` that only this caller renames or removes (its own temporary,
/// or a file under its lock). NFSv3 RENAME is not idempotent: when the server's reply is
/// lost and the client retransmits, a server whose duplicate-request cache has forgotten
/// the first call answers the retry with ENOENT although the rename was done (and by
/// then `to` may have moved on too: a lock holder claims a group-commit ticket at once).
/// So ENOENT with `from` gone is the success it stands for.
pub fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !exists(from) => {
            tracing::info!(from = %from.display(), to = %to.display(),
                "rename answered ENOENT but is done (a retransmitted NFS RENAME)");
            Ok(())
        }
        r => r,
    }
}

/// rename(2) of a name that someone else may rename away first (a group-commit `p.`,
/// which the submitter withdraws and the lock holder claims): `from` being gone proves
/// nothing, so after ENOENT only our own `to` being there shows that a retransmitted
/// NFS RENAME (see [`rename`]) did the work.
pub fn rename_to_own(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && exists(to) => Ok(()),
        r => r,
    }
}

/// Write `data` to a new file and close it without fsync, reporting what `drop` would
/// swallow: on NFS the server's refusal of cached data (ENOSPC, EDQUOT, EIO) comes back
/// at close (close-to-open), not from `write`.
pub fn write_and_close(mut file: std::fs::File, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    file.write_all(data)?;
    nix::unistd::close(file.into_raw_fd()).map_err(std::io::Error::from)
}

/// Whether the name is there (a dangling symlink counts).
pub fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// fsync the directory containing `path`, making a rename or create in it durable.
pub fn fsync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retransmitted_rename_that_finds_its_work_done_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("tmp.1"), dir.path().join("p.1"));
        std::fs::write(&from, b"x").unwrap();
        rename(&from, &to).unwrap();
        // The retry of the same RENAME: the server says ENOENT, the work is done.
        assert!(std::fs::rename(&from, &to).is_err());
        rename(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"x");
        // The target already moved on (claimed by a lock holder): still done.
        std::fs::rename(&to, dir.path().join("c.1")).unwrap();
        rename(&from, &to).unwrap();
        // A source that is still there but a target directory that is not: a real error.
        let other = dir.path().join("tmp.2");
        std::fs::write(&other, b"y").unwrap();
        let err = rename(&other, &dir.path().join("gone/p.2")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
