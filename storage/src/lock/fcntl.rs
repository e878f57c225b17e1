//! fcntl byte-range locks on the whole mailbox file: open-file-description locks
//! (`F_OFD_SETLK`) where the kernel and filesystem support them, classic POSIX locks
//! (`F_SETLK`) otherwise. Both kinds conflict with each other and with Postfix/procmail's
//! classic locks, and (unlike flock(2)) both are forwarded to the NFS server.
//!
//! OFD locks are preferred because classic locks belong to the process: closing *any*
//! descriptor of the file in the process drops them, and they never conflict between
//! threads of one process. We poll with non-blocking `SETLK` instead of blocking in
//! `SETLKW` so that a wait always ends at the caller's deadline.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};

use super::{Backoff, LockOptions};
use crate::error::{Result, StorageError};

/// Shared (reader) or exclusive (writer) lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Read,
    Write,
}

/// Set once a filesystem rejected OFD locks; from then on classic locks are used.
static OFD_UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// An open file with an fcntl lock over all of it; closing the file releases the lock.
#[derive(Debug)]
pub struct FcntlGuard {
    file: File,
    ofd: bool,
}

impl FcntlGuard {
    /// Lock `file`, polling until `deadline`. `Ok(None)` on timeout (the file is closed).
    pub fn lock(
        file: File,
        kind: LockKind,
        opts: &LockOptions,
        deadline: Instant,
    ) -> Result<Option<FcntlGuard>> {
        let mut backoff = Backoff::new(opts, deadline);
        loop {
            match try_lock(&file, kind) {
                Ok(Some(ofd)) => return Ok(Some(FcntlGuard { file, ofd })),
                Ok(None) => {}
                Err(e) => return Err(StorageError::io("<fcntl lock>", e.into())),
            }
            if !backoff.wait() {
                return Ok(None);
            }
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Whether this lock is an OFD lock (false: classic POSIX lock).
    pub fn is_ofd(&self) -> bool {
        self.ofd
    }
}

impl Drop for FcntlGuard {
    fn drop(&mut self) {
        // Explicit unlock before close, so the lock is gone even if a duplicate of the
        // descriptor lives on somewhere.
        let fl = whole_file(libc::F_UNLCK as i16);
        let fd = self.file.as_raw_fd();
        let _ = if self.ofd {
            fcntl(fd, FcntlArg::F_OFD_SETLK(&fl))
        } else {
            fcntl(fd, FcntlArg::F_SETLK(&fl))
        };
    }
}

fn whole_file(l_type: i16) -> libc::flock {
    // SAFETY: flock is a plain C struct for which all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = l_type;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = 0;
    fl.l_len = 0; // to end of file, however it grows
    fl.l_pid = 0; // must be 0 for OFD locks
    fl
}

/// One non-blocking attempt. `Ok(Some(is_ofd))` when locked, `Ok(None)` when held by
/// somebody else.
fn try_lock(file: &File, kind: LockKind) -> std::result::Result<Option<bool>, Errno> {
    let l_type = match kind {
        LockKind::Read => libc::F_RDLCK,
        LockKind::Write => libc::F_WRLCK,
    } as i16;
    let fl = whole_file(l_type);
    let fd = file.as_raw_fd();
    if !OFD_UNSUPPORTED.load(Ordering::Relaxed) {
        match fcntl(fd, FcntlArg::F_OFD_SETLK(&fl)) {
            Ok(_) => return Ok(Some(true)),
            Err(Errno::EAGAIN) | Err(Errno::EACCES) => return Ok(None),
            Err(Errno::EINVAL) | Err(Errno::ENOSYS) | Err(Errno::EOPNOTSUPP) => {
                tracing::info!("OFD locks not supported here; using classic fcntl locks");
                OFD_UNSUPPORTED.store(true, Ordering::Relaxed);
            }
            Err(e) => return Err(e),
        }
    }
    match fcntl(fd, FcntlArg::F_SETLK(&fl)) {
        Ok(_) => Ok(Some(false)),
        Err(Errno::EAGAIN) | Err(Errno::EACCES) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn open(p: &std::path::Path) -> File {
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(p)
            .unwrap()
    }

    #[test]
    fn readers_share_writers_exclude_even_within_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mbox");
        let o = LockOptions::default();
        let soon = || Instant::now() + Duration::from_millis(50);
        let r1 = FcntlGuard::lock(open(&p), LockKind::Read, &o, soon())
            .unwrap()
            .unwrap();
        assert!(r1.is_ofd(), "ext4/tmpfs support OFD locks");
        let r2 = FcntlGuard::lock(open(&p), LockKind::Read, &o, soon()).unwrap();
        assert!(r2.is_some());
        assert!(FcntlGuard::lock(open(&p), LockKind::Write, &o, soon())
            .unwrap()
            .is_none());
        drop(r1);
        drop(r2);
        let w = FcntlGuard::lock(open(&p), LockKind::Write, &o, soon())
            .unwrap()
            .unwrap();
        assert!(FcntlGuard::lock(open(&p), LockKind::Read, &o, soon())
            .unwrap()
            .is_none());
        drop(w);
        assert!(FcntlGuard::lock(open(&p), LockKind::Read, &o, soon())
            .unwrap()
            .is_some());
    }
}
