//! Disk full (invariant 4): on a small tmpfs, appends succeed until the space runs out, then
//! fail with a temporary `NoSpace` error; the mailbox holds exactly the acknowledged
//! messages, byte-exact, with no partial bytes at the end; once space is freed, delivery
//! resumes. Needs root (it mounts a tmpfs); fails, never skips, without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use hamail_storage::{LockOptions, NewMessage, Spool, StorageError};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and must run as root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_a_temporary_failure_and_leaves_no_partial_message() {
    let dir = tempfile::tempdir().unwrap();
    let _fs = Tmpfs::mount(dir.path(), "512k");
    let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
    // A big spare file to free later.
    std::fs::write(dir.path().join("ballast"), vec![0u8; 128 * 1024]).unwrap();
    let inbox = spool.inbox("erin").unwrap();
    let mut acked = Vec::new();
    let err = loop {
        let n = acked.len();
        let body = format!("Subject: {n}\n\n{}\n", "x".repeat(7000 + n * 13)).into_bytes();
        match inbox.append(&[NewMessage::new("s@x.test", body.clone())]) {
            Ok(a) => acked.push((a.first_uid, body)),
            Err(e) => break e,
        }
        assert!(acked.len() < 1000, "the disk never filled up");
    };
    assert!(matches!(err, StorageError::NoSpace { .. }), "got {err:?}");
    assert!(err.is_temporary());
    assert!(acked.len() > 10, "only {} messages fit", acked.len());

    let check = |acked: &[(u32, Vec<u8>)]| {
        let s = inbox.read().unwrap();
        let visible: Vec<_> = s.index().visible().cloned().collect();
        assert_eq!(visible.len(), acked.len());
        for (m, (uid, body)) in visible.iter().zip(acked) {
            assert_eq!(m.uid, *uid);
            assert_eq!(&s.read_message(m).unwrap(), body);
        }
        let size = std::fs::metadata(inbox.mbox_path()).unwrap().len();
        assert_eq!(
            s.index().covered(),
            size,
            "no stray bytes after the last message"
        );
    };
    check(&acked);

    // Space comes back: delivery resumes where it left off.
    std::fs::remove_file(dir.path().join("ballast")).unwrap();
    let body = b"Subject: after\n\nback\n".to_vec();
    let a = inbox
        .append(&[NewMessage::new("s@x.test", body.clone())])
        .unwrap();
    assert_eq!(a.first_uid, acked.last().unwrap().0 + 1);
    acked.push((a.first_uid, body));
    check(&acked);
}
