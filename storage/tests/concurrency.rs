//! Many hosts, one mailbox: 3 "hosts" × 8 writer processes × 50 messages appended into one
//! INBOX while a reader process keeps reading every message and an expunger process keeps
//! adding and expunging junk. Afterwards every message is there exactly once, byte-exact,
//! with the UID its writer was told, and the mbox parses cleanly. During the run every read
//! sees only whole messages and UIDs never change meaning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

const HOSTS: usize = 3;
const WRITERS: usize = 8;
const MESSAGES: u32 = 50;

#[test]
fn three_hosts_eight_writers_fifty_messages_with_reader_and_expunger() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().to_path_buf();
    let user = "alice";
    // Seed: a message that must survive everything untouched.
    let keep = message("keep me");
    let (uv0, keep_uid) = append(&spool, user, &keep);

    let stop = Arc::new(AtomicBool::new(false));
    // Reader and expunger each count the rounds they have finished; the writers start only
    // once both have finished one, so each later round overlaps the writers.
    let done_rounds = Arc::new(AtomicUsize::new(0));

    // Reader: every pass must verify, and a UID must always name the same message.
    let reader = {
        let (spool, stop, done_rounds) = (spool.clone(), stop.clone(), done_rounds.clone());
        thread::spawn(move || {
            let mut passes = 0;
            let mut seen: HashMap<u32, u64> = HashMap::new();
            while !stop.load(Ordering::Relaxed) || passes == 0 {
                if let Err(problems) = verify(&spool, user) {
                    panic!("reader saw a broken mailbox: {problems}");
                }
                let (uv, _, msgs) = list(&spool, user);
                assert_eq!(uv, uv0, "UIDVALIDITY changed during the run");
                for m in msgs {
                    if let Some(size) = seen.insert(m.uid, m.size) {
                        assert_eq!(size, m.size, "UID {} changed size", m.uid);
                    }
                }
                passes += 1;
                if passes == 1 {
                    done_rounds.fetch_add(1, Ordering::SeqCst);
                }
            }
            passes
        })
    };

    // Expunger: junk in, flagged, expunged, again and again.
    let expunger = {
        let (spool, stop, done_rounds) = (spool.clone(), stop.clone(), done_rounds.clone());
        thread::spawn(move || {
            let mut rounds = 0;
            while !stop.load(Ordering::Relaxed) || rounds == 0 {
                let (_, uid) = append(&spool, user, &message("junk"));
                run_ok(spool_cmd(&spool, "host-x").args([
                    "store",
                    "--user",
                    user,
                    "--uid",
                    &uid.to_string(),
                    "--flags",
                    "\\Deleted",
                ]));
                let out = run_ok(spool_cmd(&spool, "host-x").args(["expunge", "--user", user]));
                assert!(out.starts_with("expunged "), "{out}");
                rounds += 1;
                if rounds == 1 {
                    done_rounds.fetch_add(1, Ordering::SeqCst);
                }
            }
            rounds
        })
    };

    while done_rounds.load(Ordering::SeqCst) < 2 {
        thread::sleep(std::time::Duration::from_millis(5));
    }
    // Writers: real processes, each its own "host".
    let mut children = Vec::new();
    for h in 0..HOSTS {
        for w in 0..WRITERS {
            let tag = format!("h{h}w{w}");
            let child = spool_cmd(&spool, &format!("host{h}"))
                .args(["append-gen", "--user", user, "--writer", &tag])
                .args([
                    "--count",
                    &MESSAGES.to_string(),
                    "--size",
                    "1500",
                    "--pause-ms",
                    "20",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            children.push((tag, child));
        }
    }
    let mut told: HashMap<u32, String> = HashMap::new();
    for (tag, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "writer {tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text.lines().count(),
            MESSAGES as usize,
            "writer {tag} output"
        );
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(w[2].parse::<u32>().unwrap(), uv0);
            let uid: u32 = w[3].parse().unwrap();
            let prev = told.insert(uid, format!("{} {}", w[0], w[1]));
            assert!(prev.is_none(), "UID {uid} given to two messages");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let passes = reader.join().expect("reader");
    let rounds = expunger.join().expect("expunger");
    eprintln!("reader passes: {passes}, expunge rounds: {rounds}");
    assert!(
        passes >= 2 && rounds >= 2,
        "reader and expunger must overlap the writers"
    );

    // Everything there exactly once and intact.
    let total = HOSTS * WRITERS * MESSAGES as usize;
    assert_eq!(verify(&spool, user), Ok(total));
    let (uv, _, msgs) = list(&spool, user);
    assert_eq!(uv, uv0);
    assert_eq!(
        msgs.len(),
        total + 1,
        "only the seed and the generated messages remain"
    );
    assert!(
        msgs.windows(2).all(|w| w[0].uid < w[1].uid),
        "UIDs ascending"
    );
    assert_eq!(cat(&spool, user, keep_uid), keep);
    // Every writer's UID names the message it was told about.
    for (uid, tag) in told.iter().step_by(7) {
        let data = cat(&spool, user, *uid);
        let want = format!("Subject: gen {tag}\r\n");
        assert!(
            data.windows(want.len()).any(|w| w == want.as_bytes()),
            "UID {uid} is not {tag}"
        );
    }
    // The mbox itself: exactly one From line per message, and no leftovers beside it.
    let raw = std::fs::read(mbox_path(&spool, user)).unwrap();
    let from_lines = raw
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"From "))
        .count();
    assert_eq!(from_lines, total + 1);
    assert!(
        !spool.join("mail/alice.lock").exists(),
        "dotlock left behind"
    );
    let pending: Vec<_> = std::fs::read_dir(spool.join("index/alice/INBOX.pending"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(pending.is_empty(), "pending entries left: {pending:?}");
}
