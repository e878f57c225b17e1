//! Crash safety: a child process is killed with SIGKILL at each step inside append and
//! expunge (fault injection through `HAMAIL_CRASH_AT`). The next process to lock the
//! mailbox must find it consistent: every message whose append returned Ok is there
//! exactly once, the interrupted message is either wholly there or wholly absent (as the
//! step dictates), no partial bytes, UIDs and UIDVALIDITY unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn killed(cmd: &mut Command, step: &str) -> String {
    let out = cmd
        .env("HAMAIL_CRASH_AT", step)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "child should die by SIGKILL at {step} (hamail-spool built without the fault-injection feature?): {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn gen(spool: &Path, writer: &str, count: u32) -> Command {
    let mut c = spool_cmd(spool, HOST);
    c.args([
        "append-gen",
        "--user",
        "bob",
        "--writer",
        writer,
        "--count",
        &count.to_string(),
    ]);
    c
}

#[test]
fn killed_inside_append_at_every_step() {
    // (step, is the interrupted message kept?)
    let steps = [
        ("append:after-intent", false),
        ("append:mid-write", false),
        ("append:after-write", true), // complete in the page cache: checksum matches
        ("append:after-fsync", true),
        ("append:after-index", true),
        ("append:after-tickets", true),
        ("append:after-intent-removed", true),
    ];
    for (step, kept) in steps {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path();
        run_ok(&mut gen(spool, "before", 3));
        let (uv, next_before, _) = list(spool, "bob");
        // The third append of this child dies at `step`.
        let acked = killed(&mut gen(spool, "crash", 5), &format!("{step}@3"));
        assert_eq!(acked.lines().count(), 2, "{step}: two appends acknowledged");

        // The next locker (another process) repairs and sees a clean mailbox.
        let want = 3 + 2 + usize::from(kept);
        assert_eq!(verify(spool, "bob"), Ok(want), "{step}");
        let (uv2, _, msgs) = list(spool, "bob");
        assert_eq!(uv2, uv, "{step}: UIDVALIDITY kept");
        assert_eq!(msgs.len(), want, "{step}");
        // Acknowledged UIDs hold the acknowledged messages.
        for line in acked.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let data = cat(spool, "bob", w[3].parse().unwrap());
            let subject = format!("Subject: gen crash {}\r\n", w[1]);
            assert!(
                data.windows(subject.len()).any(|x| x == subject.as_bytes()),
                "{step}"
            );
        }
        assert!(msgs[0].uid < next_before || msgs.is_empty());
        let intent = std::fs::read(spool.join("index/bob/INBOX.intent")).unwrap_or_default();
        assert!(
            intent.len() < 4 || intent[..4] == [0; 4],
            "{step}: intent left active"
        );
        // Life goes on: a new append gets a fresh UID after everything else.
        let (uv3, uid) = append(spool, "bob", &message("after"));
        assert_eq!(uv3, uv);
        assert!(msgs.iter().all(|m| m.uid < uid), "{step}");
        assert_eq!(verify(spool, "bob"), Ok(want));
        // And the raw mbox has no stray bytes: one From line per message.
        let raw = std::fs::read(mbox_path(spool, "bob")).unwrap();
        let froms = raw
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"From "))
            .count();
        assert_eq!(froms, want + 1, "{step}");
    }
}

/// A torn append whose failed pages came back as NULs (what an NFS client leaves when
/// write-back fails, e.g. the export ran full): the next locker still recognises the
/// bytes as its own torn append and truncates them, instead of leaving them to the index
/// rebuild, which would glue them onto the last acknowledged message.
#[test]
fn a_torn_append_with_zero_filled_pages_is_undone() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path();
    run_ok(&mut gen(spool, "before", 3));
    let (uv, _, before) = list(spool, "bob");
    let path = mbox_path(spool, "bob");
    let orig = std::fs::metadata(&path).unwrap().len();
    // The child's second append dies half-way through its write...
    let acked = killed(&mut gen(spool, "crash", 3), "append:mid-write@2");
    assert_eq!(acked.lines().count(), 1);
    // ...and the written half is replaced by what NFS leaves: a page-rounded run of NULs.
    let torn = std::fs::metadata(&path).unwrap().len();
    assert!(torn > orig);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let start = orig + 4096 - 1;
    let zeros = vec![0u8; (torn.div_ceil(4096) * 4096 - start) as usize];
    std::os::unix::fs::FileExt::write_all_at(&f, &zeros, start).unwrap();
    drop(f);

    assert_eq!(
        verify(spool, "bob"),
        Ok(4),
        "3 before + 1 acknowledged, nothing glued on"
    );
    let (uv2, _, after) = list(spool, "bob");
    assert_eq!(uv2, uv);
    assert_eq!(after[..3], before[..], "earlier messages keep their UIDs");
    let raw = std::fs::read(&path).unwrap();
    assert!(!raw.contains(&0), "no NULs left in the mbox");
}

#[test]
fn killed_inside_expunge_at_every_step() {
    // (step, has the expunge taken effect?)
    let steps = [
        ("expunge:after-copy", false),
        ("expunge:after-fsync", false),
        ("expunge:after-index-written", false),
        ("expunge:after-rename", true),
        ("expunge:after-index-rename", true),
    ];
    for (step, done) in steps {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path();
        run_ok(&mut gen(spool, "x", 10));
        let (uv, _, before) = list(spool, "bob");
        for m in before.iter().filter(|m| m.uid % 2 == 0) {
            run_ok(spool_cmd(spool, "h").args([
                "store",
                "--user",
                "bob",
                "--uid",
                &m.uid.to_string(),
                "--flags",
                "\\Deleted,\\Seen",
            ]));
        }
        run_ok(spool_cmd(spool, "h").args([
            "store",
            "--user",
            "bob",
            "--uid",
            "1",
            "--flags",
            "\\Flagged",
        ]));
        let (_, _, flagged) = list(spool, "bob");
        killed(
            spool_cmd(spool, "h").args(["expunge", "--user", "bob"]),
            step,
        );

        assert_eq!(
            verify(spool, "bob"),
            Ok(if done { 5 } else { 10 }),
            "{step}"
        );
        let (uv2, _, after) = list(spool, "bob");
        assert_eq!(uv2, uv, "{step}: UIDVALIDITY kept");
        let expected: Vec<_> = flagged
            .iter()
            .filter(|m| !done || m.uid % 2 == 1)
            .cloned()
            .collect();
        assert_eq!(after, expected, "{step}: same UIDs, flags and sizes");
        // The repaired mailbox keeps working: finish the expunge.
        let out = run_ok(spool_cmd(spool, "h").args(["expunge", "--user", "bob"]));
        assert_eq!(
            out.trim(),
            if done { "expunged 0" } else { "expunged 5" },
            "{step}"
        );
        assert_eq!(verify(spool, "bob"), Ok(5));
        let names: Vec<String> = std::fs::read_dir(spool.join("mail"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["bob".to_string()],
            "{step}: nothing left beside the mbox"
        );
    }
}

#[test]
fn a_group_commit_leader_killed_mid_append_loses_no_follower() {
    // (where the leader dies, on which host, is the append complete?)
    let cases = [
        ("append:mid-write", HOST, false),
        ("append:mid-write", "otherhost", false),
        // Durable, but the followers were not yet told: recovery must tell them, and
        // must not put their messages back to pending (which would append them twice).
        ("append:after-index", HOST, true),
        ("append:after-tickets", HOST, true),
        ("append:after-intent-removed", HOST, true),
    ];
    for (step, crasher_host, complete) in cases {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path();
        run_ok(&mut gen(spool, "seed", 1));
        // The leader takes the lock, waits until the followers have queued their messages
        // as pending appends, claims them all, writes its intent and dies mid-write. On
        // "otherhost" its dotlock is broken by age, on our host at once (dead pid).
        let leader = gen(spool, "leader", 1)
            .env("HAMAIL_HOSTNAME", crasher_host)
            .env("HAMAIL_PAUSE_AT", "append:before-claim:1500")
            .env("HAMAIL_CRASH_AT", step)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut followers = Vec::new();
        for f in 0..4 {
            followers.push(
                gen(spool, &format!("f{f}"), 1)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
        }
        let out = leader.wait_with_output().unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "the leader must have died at {step}"
        );
        for (f, child) in followers.into_iter().enumerate() {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{crasher_host}: follower {f} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The followers' messages are all there exactly once (verify fails on a
        // duplicate); the leader's own only if its append had completed.
        let want = 5 + usize::from(complete);
        assert_eq!(verify(spool, "bob"), Ok(want), "{step} on {crasher_host}");
        let (_, _, msgs) = list(spool, "bob");
        assert_eq!(msgs.len(), want);
        let leaders = msgs
            .iter()
            .filter(|m| {
                cat(spool, "bob", m.uid)
                    .windows(17)
                    .any(|w| w == b"Subject: gen lead")
            })
            .count();
        assert_eq!(leaders, usize::from(complete), "{step}: leader's message");
    }
}

#[test]
fn recovery_never_truncates_mail_appended_by_another_program_after_the_crash() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path();
    run_ok(&mut gen(spool, "before", 2));
    // hamail dies with its intent written but nothing appended ...
    killed(&mut gen(spool, "crash", 1), "append:after-intent");
    // ... and Postfix, having broken the stale dotlock, delivers a short message.
    let foreign =
        b"From postfix@example.test  Mon Jan  1 00:00:00 2024\nSubject: by postfix\n\nhi\n\n";
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(mbox_path(spool, "bob"))
        .unwrap();
    std::io::Write::write_all(&mut f, foreign).unwrap();
    std::fs::remove_file(spool.join("mail/bob.lock")).unwrap();
    let (_, _, msgs) = list(spool, "bob");
    assert_eq!(msgs.len(), 3, "the foreign message survives recovery");
    assert_eq!(
        cat(spool, "bob", msgs[2].uid),
        b"Subject: by postfix\n\nhi\n"
    );
}

/// `verify` on one of bob's folders: Ok(count) or Err(problems).
fn verify_folder(spool: &Path, name: &str) -> Result<usize, String> {
    let out = run(spool_cmd(spool, HOST).args(["verify", "--user", "bob", "--mailbox", name]));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match text.trim().strip_prefix("ok ") {
        Some(n) if out.status.success() => n.parse().map_err(|_| text.clone()),
        _ => Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr))),
    }
}

fn folder(spool: &Path, args: &[&str]) -> Command {
    let mut c = spool_cmd(spool, HOST);
    c.args(["folder", "--user", "bob"]).args(args);
    c
}

fn folder_names(spool: &Path) -> Vec<String> {
    run_ok(&mut folder(spool, &["list"]))
        .lines()
        .map(str::to_string)
        .collect()
}

/// The files in bob's index directory (sidecars), dot files aside.
fn sidecars(spool: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(spool.join("index/bob"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn seeded_folder(spool: &Path) {
    run_ok(&mut folder(spool, &["create", "Box"]));
    let mut g = gen(spool, "box", 3);
    g.args(["--mailbox", "Box"]);
    run_ok(&mut g);
    assert_eq!(verify_folder(spool, "Box"), Ok(3));
}

#[test]
fn killed_inside_folder_delete_at_every_step() {
    // Before the mbox goes, the whole mailbox survives (its index rebuilt); after, the
    // mailbox is gone and a new one of the same name starts empty, with nothing inherited.
    for (step, gone) in [
        ("delete:after-sidecars", false),
        ("delete:after-mbox", true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path();
        seeded_folder(spool);
        let (uv, _, _) = list_folder(spool, "Box");
        killed(&mut folder(spool, &["delete", "Box"]), step);
        if gone {
            assert_eq!(folder_names(spool), ["INBOX"], "{step}");
            run_ok(&mut folder(spool, &["create", "Box"]));
            let (uv2, next, msgs) = list_folder(spool, "Box");
            assert!(msgs.is_empty(), "{step}: a new Box starts empty");
            assert!(uv2 > uv, "{step}: and with a new UIDVALIDITY");
            assert_eq!(next, 1, "{step}");
        } else {
            assert_eq!(folder_names(spool), ["INBOX", "Box"], "{step}");
            assert_eq!(verify_folder(spool, "Box"), Ok(3), "{step}: all kept");
            // The delete can be repeated and then leaves nothing behind.
            run_ok(&mut folder(spool, &["delete", "Box"]));
            assert_eq!(folder_names(spool), ["INBOX"], "{step}");
            assert_eq!(sidecars(spool), Vec::<String>::new(), "{step}");
        }
    }
}

#[test]
fn killed_inside_folder_rename_keeps_the_mailbox_under_one_name() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path();
    seeded_folder(spool);
    killed(
        &mut folder(spool, &["rename", "Box", "Archive/Box"]),
        "rename:after-sidecars",
    );
    // The mailbox is still where it was, all of it; the new name is not a mailbox (its
    // parent level, made first, may be there).
    assert_eq!(folder_names(spool), ["INBOX", "Archive/", "Box"]);
    assert_eq!(verify_folder(spool, "Box"), Ok(3));
    // Retrying the rename works, and the orphan index under the new name is not reused.
    run_ok(&mut folder(spool, &["rename", "Box", "Archive/Box"]));
    assert_eq!(folder_names(spool), ["INBOX", "Archive/", "Archive/Box"]);
    assert_eq!(verify_folder(spool, "Archive/Box"), Ok(3));
    let (_, _, msgs) = list_folder(spool, "Archive/Box");
    assert_eq!(msgs.len(), 3);
    assert!(!spool.join("index/bob/Box.idx").exists());
}

fn list_folder(spool: &Path, name: &str) -> (u32, u32, Vec<Listed>) {
    let text = run_ok(spool_cmd(spool, HOST).args(["list", "--user", "bob", "--mailbox", name]));
    let head: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    let msgs = text
        .lines()
        .skip(1)
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Listed {
                uid: w[0].parse().unwrap(),
                flags: w[1].to_string(),
                size: w[2].parse().unwrap(),
            }
        })
        .collect();
    (head[1].parse().unwrap(), head[3].parse().unwrap(), msgs)
}
