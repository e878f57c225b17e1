//! The NFS-safe dotlock `<file>.lock`, compatible with liblockfile, Postfix and mutt.
//!
//! `O_EXCL` is not reliable over NFSv2/3 and `link()` may report failure when it
//! succeeded (a retransmitted request whose reply was lost), so we do what liblockfile
//! does: create a unique "hitching post" file beside the lock, `link()` it to the lock name,
//! ignore link's return value, and judge success by the hitching post's link count being 2
//! and the lock name resolving to the same inode.
//!
//! The lock file holds `<pid>\n<host>\n` (liblockfile reads the pid with `atoi`). A lock
//! is stale when its mtime is older than `stale_after` compared with the *server's* clock
//! (we touch our own hitching post and read its mtime back, so client clock skew does not
//! matter), or immediately when it names this host and a pid that no longer exists.
//! Holders refresh the mtime. Breaking a stale lock renames it aside first and checks that
//! what was renamed is still the stale file, so two hosts breaking the same stale lock
//! cannot remove a fresh one.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Backoff, LockOptions};
use crate::error::{IoContext, Result, StorageError};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// The dotlock name for a mailbox.
pub fn lock_path(mbox: &Path) -> PathBuf {
    let mut s = mbox.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// A held dotlock; removed on drop (only if it is still ours).
#[derive(Debug)]
pub struct DotLock {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl DotLock {
    /// Take the dotlock at `path` (the full `.lock` name), retrying with jittered backoff
    /// until `deadline`.
    pub fn acquire(path: &Path, opts: &LockOptions, deadline: Instant) -> Result<DotLock> {
        let post = HitchingPost::create(path, opts)?;
        let mut backoff = Backoff::new(opts, deadline);
        loop {
            if let Some(lock) = post.try_link()? {
                return Ok(lock);
            }
            if post.break_if_stale(opts)? && Instant::now() < deadline {
                continue;
            }
            if !backoff.wait() {
                return Err(StorageError::LockTimeout {
                    path: path.to_path_buf(),
                });
            }
        }
    }

    /// One attempt, no waiting (still breaks a stale lock). `None` if somebody holds it.
    pub fn try_acquire(path: &Path, opts: &LockOptions) -> Result<Option<DotLock>> {
        let post = HitchingPost::create(path, opts)?;
        if let Some(lock) = post.try_link()? {
            return Ok(Some(lock));
        }
        if post.break_if_stale(opts)? {
            return post.try_link();
        }
        Ok(None)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Touch the lock (server time) and check it is still ours.
    pub fn refresh(&self) -> Result<()> {
        self.check_ours()?;
        nix::sys::stat::utimensat(
            None,
            &self.path,
            &nix::sys::time::TimeSpec::UTIME_NOW,
            &nix::sys::time::TimeSpec::UTIME_NOW,
            nix::sys::stat::UtimensatFlags::FollowSymlink,
        )
        .map_err(|e| StorageError::io(&self.path, e.into()))
    }

    fn check_ours(&self) -> Result<()> {
        let md = fs::metadata(&self.path).at(&self.path)?;
        if md.dev() != self.dev || md.ino() != self.ino {
            return Err(StorageError::LockLost {
                path: self.path.clone(),
            });
        }
        Ok(())
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        // Never remove somebody else's lock (ours may have been broken as stale).
        if self.check_ours().is_ok() {
            if let Err(e) = fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove dotlock");
            }
        }
    }
}

/// What a lock file says about its holder.
#[derive(Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<i32>,
    pub host: Option<String>,
}

impl Holder {
    pub fn parse(content: &[u8]) -> Holder {
        let text = String::from_utf8_lossy(content);
        let mut lines = text.lines();
        let pid = lines
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
            .filter(|p| *p > 0);
        let host = lines
            .next()
            .map(|l| l.trim().to_string())
            .filter(|h| !h.is_empty());
        Holder { pid, host }
    }
}

/// The unique file we link to the lock name; removed on drop.
struct HitchingPost {
    post: PathBuf,
    lock: PathBuf,
    file: File,
}

impl HitchingPost {
    fn create(lock: &Path, opts: &LockOptions) -> Result<HitchingPost> {
        let dir = lock.parent().unwrap_or(Path::new("."));
        let base = lock
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pid = std::process::id();
        let post = dir.join(format!(
            ".{base}.{host}.{pid}.{seq}.{rand:08x}",
            host = opts.hostname,
            seq = SEQ.fetch_add(1, Ordering::Relaxed),
            rand = fastrand::u32(..),
        ));
        let mut file = crate::fsutil::create_new(&post, 0o644)?;
        let post_guard = HitchingPost {
            post,
            lock: lock.to_path_buf(),
            file: file.try_clone().at(lock)?,
        };
        file.write_all(format!("{pid}\n{}\n", opts.hostname).as_bytes())
            .at(&post_guard.post)?;
        Ok(post_guard)
    }

    /// Link the post to the lock name and decide by link count and inode.
    fn try_link(&self) -> Result<Option<DotLock>> {
        // The return value of link() is deliberately ignored: over NFS it can report
        // EEXIST for a link that was made by a retransmission.
        let linked = fs::hard_link(&self.post, &self.lock);
        let mine = self.file.metadata().at(&self.post)?;
        if mine.nlink() != 2 {
            return match linked {
                // Not a contention failure (permissions, read-only spool...): say so
                // instead of retrying until the deadline.
                Err(e) if e.kind() != ErrorKind::AlreadyExists => {
                    Err(StorageError::io(&self.lock, e))
                }
                _ => Ok(None),
            };
        }
        match fs::metadata(&self.lock) {
            Ok(md) if md.ino() == mine.ino() && md.dev() == mine.dev() => Ok(Some(DotLock {
                path: self.lock.clone(),
                dev: md.dev(),
                ino: md.ino(),
            })),
            // Link count 2 but the name is not ours: our link went to a name that was
            // renamed away (lock breaking). Drop that name and retry.
            _ => Ok(None),
        }
    }

    /// Break the lock if it is stale. True if something was broken (retry at once).
    fn break_if_stale(&self, opts: &LockOptions) -> Result<bool> {
        let md = match fs::metadata(&self.lock) {
            Ok(md) => md,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(StorageError::io(&self.lock, e)),
        };
        if !self.is_stale(&md, opts)? {
            return Ok(false);
        }
        // Rename aside, then make sure we moved the stale file and not a fresh lock that
        // replaced it in between.
        let aside = PathBuf::from(format!("{}.broken", self.post.display()));
        match fs::rename(&self.lock, &aside) {
            Ok(()) => {}
            // Somebody else broke or released it: try again at once.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(true),
            // Cannot break it (permissions...): wait like for a live lock.
            Err(_) => return Ok(false),
        }
        let moved = fs::metadata(&aside).at(&aside)?;
        // Same inode *and* the same mtime to the nanosecond (rename keeps mtime): an inode
        // number reused by a fresh lock created since we looked would differ in mtime.
        let same = moved.ino() == md.ino()
            && moved.mtime() == md.mtime()
            && moved.mtime_nsec() == md.mtime_nsec();
        if !same {
            // We took a live lock: put it back (link fails harmlessly if a new one exists).
            let _ = fs::hard_link(&aside, &self.lock);
        } else {
            tracing::warn!(lock = %self.lock.display(), "broke stale dotlock");
        }
        let _ = fs::remove_file(&aside);
        Ok(true)
    }

    fn is_stale(&self, md: &fs::Metadata, opts: &LockOptions) -> Result<bool> {
        if opts.break_dead_local {
            if let Ok(content) = fs::read(&self.lock) {
                let holder = Holder::parse(&content);
                if let (Some(pid), Some(host)) = (holder.pid, holder.host) {
                    if host == opts.hostname && !process_alive(pid) {
                        return Ok(true);
                    }
                }
            }
        }
        // Compare with the server's clock: touch our post and read its mtime back.
        nix::sys::stat::futimens(
            std::os::fd::AsRawFd::as_raw_fd(&self.file),
            &nix::sys::time::TimeSpec::UTIME_NOW,
            &nix::sys::time::TimeSpec::UTIME_NOW,
        )
        .map_err(|e| StorageError::io(&self.post, e.into()))?;
        let now = fs::metadata(&self.post).at(&self.post)?.mtime();
        let age = now.saturating_sub(md.mtime());
        Ok(age >= 0 && Duration::from_secs(age as u64) > opts.stale_after)
    }
}

impl Drop for HitchingPost {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.post);
    }
}

fn process_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        Err(_) => true, // EPERM: it exists, owned by someone else
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> LockOptions {
        LockOptions {
            timeout: Duration::from_millis(300),
            ..LockOptions::default()
        }
    }

    #[test]
    fn second_acquire_waits_then_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("mbox.lock");
        let deadline = Instant::now() + Duration::from_millis(200);
        let held = DotLock::acquire(&lock, &opts(), deadline).unwrap();
        let again = DotLock::acquire(&lock, &opts(), Instant::now() + Duration::from_millis(100));
        assert!(matches!(again, Err(StorageError::LockTimeout { .. })));
        drop(held);
        assert!(!lock.exists());
        DotLock::acquire(&lock, &opts(), Instant::now() + Duration::from_millis(100)).unwrap();
    }

    #[test]
    fn lock_file_names_pid_and_host_and_posts_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("mbox.lock");
        let o = opts();
        let held = DotLock::try_acquire(&lock, &o).unwrap().unwrap();
        let holder = Holder::parse(&fs::read(&lock).unwrap());
        assert_eq!(holder.pid, Some(std::process::id() as i32));
        assert_eq!(holder.host.as_deref(), Some(o.hostname.as_str()));
        // Only the lock itself is left in the directory: no hitching posts.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("mbox.lock")]);
        drop(held);
    }

    #[test]
    fn dead_local_holder_is_broken_at_once_but_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("mbox.lock");
        let o = opts();
        // A pid that cannot exist (beyond pid_max).
        fs::write(&lock, format!("99999999\n{}\n", o.hostname)).unwrap();
        assert!(DotLock::try_acquire(&lock, &o).unwrap().is_some());
        // Our own pid on our host is alive: must wait.
        fs::write(&lock, format!("{}\n{}\n", std::process::id(), o.hostname)).unwrap();
        assert!(DotLock::try_acquire(&lock, &o).unwrap().is_none());
        // A dead pid on another host is not ours to judge: wait for the age rule.
        fs::write(&lock, "99999999\nother-host\n").unwrap();
        assert!(DotLock::try_acquire(&lock, &o).unwrap().is_none());
    }

    #[test]
    fn old_lock_is_stale_only_after_the_configured_age() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("mbox.lock");
        fs::write(&lock, "1\nother-host\n").unwrap();
        let mut o = opts();
        o.stale_after = Duration::from_secs(60);
        let old = std::time::SystemTime::now() - Duration::from_secs(30);
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(DotLock::try_acquire(&lock, &o).unwrap().is_none());
        let older = std::time::SystemTime::now() - Duration::from_secs(120);
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(older)
            .unwrap();
        let got = DotLock::try_acquire(&lock, &o).unwrap();
        assert!(got.is_some());
    }

    #[test]
    fn refresh_detects_a_broken_lock() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("mbox.lock");
        let held = DotLock::try_acquire(&lock, &opts()).unwrap().unwrap();
        held.refresh().unwrap();
        // Another process broke it and took it (keep the old inode alive so the new lock
        // cannot reuse its number).
        fs::rename(&lock, dir.path().join("aside")).unwrap();
        fs::write(&lock, "1\nother\n").unwrap();
        assert!(held.refresh().is_err());
        drop(held);
        // Drop must not remove the other holder's lock.
        assert!(lock.exists());
    }
}
