//! The sidecar index against its mbox, with other programs in play: UIDs are stable across
//! processes, mail appended by others gets new UIDs without renumbering, a mailbox edited
//! by another program gets a new UIDVALIDITY (or keeps UIDs where messages are provably
//! unchanged), and Dovecot/UW-IMAP state in headers is honoured on first import.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use hamail_storage::{LockOptions, NewMessage, Spool, StorageError};
use proptest::prelude::*;
use std::io::Write;
use std::path::Path;

fn raw_append(spool: &Path, user: &str, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(mbox_path(spool, user))
        .unwrap();
    f.write_all(bytes).unwrap();
}

fn uids(msgs: &[Listed]) -> Vec<u32> {
    msgs.iter().map(|m| m.uid).collect()
}

#[test]
fn uids_are_stable_across_processes_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path();
    let a = append(spool, "carol", &message("one"));
    let b = append(spool, "carol", &message("two"));
    assert_eq!(a.0, b.0);
    assert_eq!((a.1, b.1), (1, 2));
    let first = list(spool, "carol");
    assert_eq!(first, list(spool, "carol"));
    // Same answer from the library in this process.
    let lib = Spool::open(spool, LockOptions::default()).unwrap();
    let s = lib.inbox("carol").unwrap().read().unwrap();
    assert_eq!(s.index().uidvalidity, first.0);
    let m = s.index().by_uid(2).unwrap();
    assert_eq!(s.read_message(m).unwrap(), message("two"));
}

#[test]
fn mail_appended_by_another_program_gets_new_uids_without_renumbering() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path();
    let (uv, _) = append(spool, "carol", &message("one"));
    append(spool, "carol", &message("two"));
    // As Postfix local(8) writes: From line, body with From quoted, blank line.
    raw_append(
        spool,
        "carol",
        b"From postfix@example.test  Mon Jan  1 00:00:00 2024\nSubject: by postfix\n\n>From here\n\n",
    );
    let (uv2, next, msgs) = list(spool, "carol");
    assert_eq!(uv2, uv);
    assert_eq!(uids(&msgs), vec![1, 2, 3]);
    assert_eq!(next, 4);
    assert_eq!(
        cat(spool, "carol", 3),
        b"Subject: by postfix\n\nFrom here\n"
    );
    // A reader only extends in memory; the next writer assigns the same UID for good.
    let (_, uid) = append(spool, "carol", &message("four"));
    assert_eq!(uid, 4);
    assert_eq!(uids(&list(spool, "carol").2), vec![1, 2, 3, 4]);
    assert_eq!(
        cat(spool, "carol", 3),
        b"Subject: by postfix\n\nFrom here\n"
    );
}

#[test]
fn mailbox_edited_by_another_program_gets_a_new_uidvalidity() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path();
    let (uv, _) = append(spool, "carol", &message("one"));
    append(spool, "carol", &message("two"));
    append(spool, "carol", &message("three"));
    let path = mbox_path(spool, "carol");
    let raw = std::fs::read(&path).unwrap();
    // Change one byte of the middle message, same length (an editor saving the file).
    let text = String::from_utf8(raw)
        .unwrap()
        .replacen("Subject: two", "Subject: TWO", 1);
    std::fs::write(&path, text).unwrap();
    let (uv2, next, msgs) = list(spool, "carol");
    assert!(uv2 > uv, "new UIDVALIDITY {uv2} must exceed {uv}");
    assert_eq!(uids(&msgs), vec![1, 2, 3]);
    assert_eq!(next, 4);
    assert!(String::from_utf8(cat(spool, "carol", 2))
        .unwrap()
        .contains("Subject: TWO"));
    // And it is stable from then on.
    assert_eq!(list(spool, "carol").0, uv2);
}

#[test]
fn a_message_removed_by_another_program_keeps_the_other_uids() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path();
    let (uv, _) = append(spool, "carol", &message("one"));
    append(spool, "carol", &message("two"));
    append(spool, "carol", &message("three"));
    let path = mbox_path(spool, "carol");
    let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
    // Drop the second message, as mutt's expunge would.
    let starts: Vec<usize> = text
        .match_indices("From MAILER-DAEMON")
        .map(|(i, _)| i)
        .collect();
    let edited = format!("{}{}", &text[..starts[1]], &text[starts[2]..]);
    std::fs::write(&path, edited).unwrap();
    let (uv2, next, msgs) = list(spool, "carol");
    assert_eq!(uv2, uv);
    assert_eq!(uids(&msgs), vec![1, 3]);
    assert_eq!(next, 4);
    assert_eq!(cat(spool, "carol", 3), message("three"));
}

#[test]
fn dovecot_and_uw_headers_are_honoured_on_import() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path();
    std::fs::create_dir_all(spool.join("mail")).unwrap();
    let mbox = b"From MAILER_DAEMON Fri Jul  8 12:08:34 2011\n\
Date: Fri, 8 Jul 2011 12:08:34 +0000\n\
From: Mail System Internal Data <MAILER-DAEMON@example.test>\n\
Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n\
X-IMAP: 1300000000 0000000020 $Junk\n\
Status: RO\n\
\n\
This text is part of the internal format of your mail folder.\n\
\n\
From a@example.test Fri Jul  8 12:09:00 2011\n\
Subject: first\n\
X-UID: 5\n\
Status: RO\n\
X-Status: A\n\
X-Keywords: $Junk\n\
\n\
hello\n\
\n\
From b@example.test Fri Jul  8 12:10:00 2011\n\
Subject: second\n\
X-UID: 9\n\
Status: O\n\
X-Status: FT\n\
\n\
world\n\
\n";
    std::fs::write(mbox_path(spool, "dave"), mbox).unwrap();
    let (uv, next, msgs) = list(spool, "dave");
    assert_eq!((uv, next), (1_300_000_000, 20));
    assert_eq!(uids(&msgs), vec![5, 9], "the pseudo message is hidden");
    assert_eq!(msgs[0].flags, "\\Seen,\\Answered");
    assert_eq!(msgs[1].flags, "\\Flagged,\\Draft");
    let out = run_ok(spool_cmd(spool, HOST).args(["list", "--user", "dave"]));
    assert!(out.lines().nth(1).unwrap().ends_with(" $Junk"), "{out}");
    // New mail continues after the imported UIDNEXT.
    assert_eq!(append(spool, "dave", &message("new")), (1_300_000_000, 20));
}

#[test]
fn a_corrupt_index_is_rebuilt_without_losing_mail() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path();
    append(spool, "carol", &message("one"));
    append(spool, "carol", &message("two"));
    std::fs::write(spool.join("index/carol/INBOX.idx"), b"garbage").unwrap();
    let (_, _, msgs) = list(spool, "carol");
    assert_eq!(msgs.len(), 2);
    assert_eq!(cat(spool, "carol", msgs[1].uid), message("two"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever bytes go in through append come back out of the mailbox exactly, in
    /// order, however many messages share the file.
    #[test]
    fn mailbox_round_trip_of_arbitrary_messages(msgs in proptest::collection::vec(
        proptest::collection::vec(prop_oneof![
            Just(b"From ".to_vec()), Just(b">From x".to_vec()), Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()), Just(b"\r".to_vec()), Just(b"\0".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..6),
        ], 0..20).prop_map(|p| p.concat()), 1..6))
    {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
        let inbox = spool.inbox("pat").unwrap();
        for m in &msgs {
            inbox.append(&[NewMessage::new("s@x", m.clone())]).unwrap();
        }
        let s = inbox.read().unwrap();
        let got: Vec<Vec<u8>> = s.index().visible().map(|m| s.read_message(m).unwrap()).collect();
        prop_assert_eq!(&got, &msgs);
        // And after the index is thrown away, the boundaries are found again.
        drop(s);
        std::fs::remove_file(inbox.index_path()).unwrap();
        let s = inbox.read().unwrap();
        prop_assert_eq!(s.index().visible().count(), msgs.len());
    }
}

/// IMAP and POP3 report sizes with CRLF line ends; the index knows them without reading
/// the messages, after an append and after a rebuild from the mbox alike.
/// An append of nothing is the caller's mistake, for good (not `Corrupt`, which callers
/// retry); a message of no bytes is stored like any other.
#[test]
fn appending_nothing_is_a_permanent_error() {
    let dir = tempfile::tempdir().unwrap();
    let lib = Spool::open(dir.path(), LockOptions::default()).unwrap();
    let inbox = lib.inbox("erin").unwrap();
    let e = inbox.append(&[]).unwrap_err();
    assert!(matches!(e, StorageError::EmptyMessage), "{e}");
    assert!(!e.is_temporary());
    let a = inbox.append(&[NewMessage::new("s@x", Vec::new())]).unwrap();
    let s = inbox.read().unwrap();
    let m = s.index().by_uid(a.first_uid).unwrap();
    assert_eq!(s.read_message(m).unwrap(), b"");
}

#[test]
fn crlf_sizes_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let lib = Spool::open(dir.path(), LockOptions::default()).unwrap();
    let inbox = lib.inbox("dave").unwrap();
    let bodies: [&[u8]; 3] = [
        b"A: b\n\nline\nFrom quoted\n",
        b"C: d\r\n\r\nmixed\nend\r\n",
        b"E: f\n\n\n",
    ];
    for b in bodies {
        inbox.append(&[NewMessage::new("s@x", b.to_vec())]).unwrap();
    }
    let check = || {
        let s = inbox.read().unwrap();
        let sizes: Vec<u64> = s.index().visible().map(|m| m.crlf_size()).collect();
        let want: Vec<u64> = bodies
            .iter()
            .map(|b| (b.len() + hamail_storage::index::count_bare_lf(b) as usize) as u64)
            .collect();
        assert_eq!(sizes, want);
    };
    check();
    std::fs::remove_file(inbox.index_path()).unwrap();
    check();
}

#[test]
fn every_index_state_after_an_expunge_has_its_own_generation() {
    // Sessions (on any host) tell index states apart by generation, message count and
    // size. An expunge must leave on disk the generation its own session goes on with,
    // or the next flag change, saved from the file, comes out looking like the state
    // that session already knows, and it never hears of the change.
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
    let inbox = spool.inbox("dave").unwrap();
    for i in 0..3 {
        inbox
            .append(&[NewMessage::new("s@x.test", message(&format!("m{i}")))])
            .unwrap();
    }
    let mut ws = inbox.write().unwrap();
    ws.expunge(&[1]).unwrap();
    let after_expunge = ws.index().generation;
    drop(ws);
    let on_disk = inbox.read().unwrap().index().generation;
    assert_eq!(
        on_disk, after_expunge,
        "the file has the session's generation"
    );
    let mut ws = inbox.write().unwrap();
    ws.set_flags(&[(2, hamail_storage::Flags::ANSWERED, Vec::new())])
        .unwrap();
    assert_ne!(ws.index().generation, after_expunge);
}

/// Decoded indexes are shared between the sessions of one `Spool` (one agent); two
/// `Spool`s on one directory play two hosts. Whatever one host or program changes,
/// the other's next session sees, however warm its cache.
#[test]
fn shared_indexes_never_hide_a_change_made_elsewhere() {
    use hamail_storage::Flags;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let host1 = Spool::open(root, LockOptions::default()).unwrap();
    let host2 = Spool::open(root, LockOptions::default()).unwrap();
    let msgs: Vec<NewMessage> = ["one", "two", "three"]
        .iter()
        .map(|s| NewMessage::new("a@b", message(s)))
        .collect();
    host1.inbox("dave").unwrap().append(&msgs).unwrap();
    let flags = |spool: &Spool| -> Vec<(u32, u32)> {
        let rs = spool.inbox("dave").unwrap().read().unwrap();
        rs.index()
            .messages
            .iter()
            .map(|m| (m.uid, m.flags.0))
            .collect()
    };
    let seen = Flags::SEEN.0;
    let flagged = Flags::FLAGGED.0;
    assert_eq!(flags(&host1), vec![(1, 0), (2, 0), (3, 0)]);
    assert_eq!(flags(&host2), vec![(1, 0), (2, 0), (3, 0)]);

    // A flag change on host 2 reaches host 1's warm cache, and back.
    let store = |spool: &Spool, uid: u32, f: Flags| {
        let mut ws = spool.inbox("dave").unwrap().write().unwrap();
        ws.set_flags(&[(uid, f, vec!["$K".to_string()])]).unwrap();
    };
    store(&host2, 2, Flags::SEEN);
    assert_eq!(flags(&host1), vec![(1, 0), (2, seen), (3, 0)]);
    store(&host1, 1, Flags::FLAGGED);
    assert_eq!(flags(&host2), vec![(1, flagged), (2, seen), (3, 0)]);
    assert_eq!(flags(&host1), flags(&host2));

    // Setting flags a message already has writes nothing (no new generation).
    let idx = root.join("index/dave/INBOX.idx");
    let before = std::fs::read(&idx).unwrap();
    store(&host2, 2, Flags::SEEN);
    assert_eq!(std::fs::read(&idx).unwrap(), before);

    // Mail appended by another program, then an expunge on host 2.
    raw_append(
        root,
        "dave",
        b"From postfix@example.test  Mon Jan  1 00:00:00 2024\nSubject: four\n\nbody\n\n",
    );
    assert_eq!(flags(&host1).len(), 4);
    host2
        .inbox("dave")
        .unwrap()
        .write()
        .unwrap()
        .expunge(&[1])
        .unwrap();
    assert_eq!(flags(&host1), vec![(2, seen), (3, 0), (4, 0)]);
    store(&host1, 3, Flags::SEEN);
    assert_eq!(flags(&host2), vec![(2, seen), (3, seen), (4, 0)]);
    let rs = host2.inbox("dave").unwrap().read().unwrap();
    assert_eq!(
        rs.index()
            .keyword_names(rs.index().by_uid(3).unwrap().keywords),
        vec!["$K"]
    );
}
