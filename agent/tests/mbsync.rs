//! IMAP with a real synchronizer: isync's `mbsync` against a real agent, with a local
//! Maildir on the other side.
//!
//! Proves that mbsync (over IMAPS, trusting the lab's self-signed certificate)
//! - pulls delivered mail into the Maildir byte for byte (mbsync stores LF line endings
//!   and adds its `X-TUID` header, nothing else changes);
//! - pushes local flag changes (\Seen, \Flagged) to the server;
//! - pushes a local deletion (`T` + `Expunge Both`) as an expunge on the server, leaving
//!   the other messages alone;
//! - pushes a new local message with APPEND, which gets a UID and is stored unchanged;
//! - creates a locally created folder on the server (`Create Both`), pulls mail delivered
//!   between runs, and changes nothing on either side when nothing changed.
//!
//! Each check reads the spool directly, not through the IMAP server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use hamail_storage::index::Flags;
use support::*;

/// Deliver one message per tag to `user` over SMTP.
fn deliver(lab: &Lab, user: &str, tags: &[&str]) {
    for tag in tags {
        let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
        raw.cmd("EHLO t.test");
        raw.cmd("MAIL FROM:<s@remote.test>");
        assert_eq!(raw.cmd(&format!("RCPT TO:<{user}@example.test>")).0, 250);
        raw.cmd("DATA");
        raw.send(
            format!(
                "From: Sender <s@remote.test>\r\nTo: {user}@example.test\r\nSubject: {tag}\r\n\
                 Message-ID: <{tag}@remote.test>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n\
                 body of {tag}\r\n..dotted line\r\n.\r\n"
            )
            .as_bytes(),
        );
        assert_eq!(raw.reply().0, 250);
    }
}

/// A started one-host lab and an mbsync configuration for alice against it.
struct Setup {
    lab: Lab,
    /// Holds the rc file and the local Maildirs.
    local: tempfile::TempDir,
    rc: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let mut lab = Lab::new(1, "");
        lab.start(0, &[]);
        let local = tempfile::tempdir().unwrap();
        let rc = local.path().join("mbsyncrc");
        // mbsync creates missing mailboxes but not the store's root.
        std::fs::create_dir(local.path().join("folders")).unwrap();
        // The certificate is issued to "localhost" while mbsync connects to an IP. mbsync
        // accepts a server certificate that is itself listed in CertificateFile without
        // checking the host name, so IMAPS with full verification works.
        let text = format!(
            "IMAPAccount hamail
Host {ip}
Port {port}
User alice
Pass alice-pw
SSLType IMAPS
CertificateFile {cert}

IMAPStore remote
Account hamail

MaildirStore local
Path {local}/folders/
Inbox {local}/inbox
SubFolders Verbatim

Channel hamail
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
",
            ip = lab.ips[0],
            port = IMAPS,
            cert = lab.root().join("cert.pem").display(),
            local = local.path().display(),
        );
        std::fs::write(&rc, text).unwrap();
        Setup { lab, local, rc }
    }

    fn inbox(&self) -> PathBuf {
        self.local.path().join("inbox")
    }

    fn folder(&self, name: &str) -> PathBuf {
        self.local.path().join("folders").join(name)
    }

    /// Run `mbsync -a`; panics with its output (and the agent log) unless it succeeds.
    fn sync(&self) -> String {
        self.sync_with("-V")
    }

    /// Run `mbsync <flag> -a` (`-Dn` traces the IMAP protocol).
    fn sync_with(&self, flag: &str) -> String {
        let out = Command::new("mbsync")
            .arg("-c")
            .arg(&self.rc)
            .arg(flag)
            .arg("-a")
            .env("HOME", self.local.path())
            .output()
            .expect("mbsync (apt-get install isync)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "mbsync failed: {}\n{text}\nagent log:\n{}",
            out.status,
            self.lab.log(0)
        );
        text
    }

    /// `(uid, system flags, bytes)` of every visible message of alice's mailbox `name`.
    fn server(&self, name: &str) -> Vec<(u32, Flags, Vec<u8>)> {
        let mbox = self.lab.spool().mailbox("alice", name).unwrap();
        if !mbox.exists() {
            return Vec::new();
        }
        let read = mbox.read().unwrap();
        read.index()
            .visible()
            .map(|m| (m.uid, m.flags, read.read_message(m).unwrap()))
            .collect()
    }
}

/// One message file of a Maildir.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Local {
    /// "cur" or "new".
    sub: &'static str,
    name: String,
    content: Vec<u8>,
}

impl Local {
    /// The Maildir info flags (after ":2,").
    fn flags(&self) -> &str {
        self.name.split_once(":2,").map(|(_, f)| f).unwrap_or("")
    }

    fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.sub).join(&self.name)
    }

    fn subject(&self) -> String {
        subject(&self.content)
    }
}

/// Every message file in `dir`'s cur/ and new/, sorted by subject.
fn maildir(dir: &Path) -> Vec<Local> {
    let mut all = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            all.push(Local {
                sub,
                name: e.file_name().into_string().unwrap(),
                content: std::fs::read(e.path()).unwrap(),
            });
        }
    }
    all.sort_by_key(|l| l.subject());
    all
}

fn subject(msg: &[u8]) -> String {
    String::from_utf8_lossy(msg)
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or("")
        .to_string()
}

/// Rename a Maildir message to carry exactly `flags` (moving it to cur/).
fn set_local_flags(dir: &Path, msg: &Local, flags: &str) {
    let base = msg
        .name
        .split_once(":2,")
        .map(|(b, _)| b)
        .unwrap_or(&msg.name);
    std::fs::rename(
        msg.path(dir),
        dir.join("cur").join(format!("{base}:2,{flags}")),
    )
    .unwrap();
}

/// Split the `X-TUID: <12 chars>` line mbsync adds as the last header field off a message;
/// returns the message without it.
fn without_tuid(msg: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(msg).unwrap();
    let (head, body) = text.split_once("\n\n").expect("header and body");
    let (rest, last) = head.rsplit_once('\n').expect("several header lines");
    let tuid = last.strip_prefix("X-TUID: ").unwrap_or_else(|| {
        panic!("mbsync's X-TUID is not the last header field:\n{text}");
    });
    assert_eq!(tuid.len(), 12, "{last:?}");
    format!("{rest}\n\n{body}").into_bytes()
}

/// Everything a sync could change: alice's mailboxes on the spool (raw mbox bytes, UIDs,
/// flags, UIDNEXT) and the local Maildirs (file names and contents).
fn snapshot(s: &Setup, boxes: &[&str]) -> Vec<String> {
    let mut all = Vec::new();
    for name in boxes {
        let mbox = s.lab.spool().mailbox("alice", name).unwrap();
        let read = mbox.read().unwrap();
        all.push(format!(
            "server {name}: uidvalidity {} uidnext {} mbox {:?}",
            read.index().uidvalidity,
            read.index().uidnext,
            String::from_utf8(std::fs::read(mbox.mbox_path()).unwrap()).unwrap()
        ));
        for (uid, flags, _) in s.server(name) {
            all.push(format!("server {name}: uid {uid} {flags:?}"));
        }
        let dir = if name.eq_ignore_ascii_case("INBOX") {
            s.inbox()
        } else {
            s.folder(name)
        };
        for l in maildir(&dir) {
            all.push(format!("local {name}: {l:?}"));
        }
    }
    all
}

/// From an `mbsync -Dn` trace: mbsync sent only commands that change nothing on the
/// server (no STORE, APPEND, EXPUNGE, CREATE, ...).
fn assert_nothing_propagated(trace: &str) {
    const READ_ONLY: &[&str] = &[
        "CAPABILITY",
        "AUTHENTICATE",
        "NAMESPACE",
        "LIST",
        "SELECT",
        "UID FETCH",
        "CLOSE",
        "LOGOUT",
    ];
    let sent: Vec<&str> = trace
        .lines()
        .filter_map(|l| l.strip_prefix(">>> "))
        .filter_map(|l| l.split_once(' ').map(|(_tag, cmd)| cmd))
        .collect();
    assert!(sent.iter().any(|c| c.starts_with("UID FETCH")), "{trace}");
    for cmd in sent {
        assert!(
            READ_ONLY.iter().any(|r| cmd.starts_with(r)),
            "a run with nothing to do sent {cmd:?}\n{trace}"
        );
    }
}

#[test]
fn inbox_pull_flags_deletion_and_append() {
    let s = Setup::new();
    deliver(&s.lab, "alice", &["m1", "m2", "m3"]);
    let delivered = s.server("INBOX");
    assert_eq!(delivered.len(), 3);

    // 1. Pull: the three messages, as on the spool (LF) plus mbsync's X-TUID header.
    let out = s.sync();
    let local = maildir(&s.inbox());
    assert_eq!(local.len(), 3, "{local:#?}\n{out}");
    for (l, (uid, _, spooled)) in local.iter().zip(&delivered) {
        assert_eq!(
            String::from_utf8_lossy(&without_tuid(&l.content)),
            String::from_utf8_lossy(spooled),
            "UID {uid}"
        );
        assert!(l.name.contains(&format!(",U={uid}:2,")), "{}", l.name);
        assert_eq!(l.flags(), "", "nothing seen yet: {}", l.name);
    }

    // 2. Push flags: m1 seen, m2 flagged.
    set_local_flags(&s.inbox(), &local[0], "S");
    set_local_flags(&s.inbox(), &local[1], "F");
    let out = s.sync();
    let server = s.server("INBOX");
    let flags: Vec<(u32, Flags)> = server.iter().map(|(u, f, _)| (*u, *f)).collect();
    assert_eq!(
        flags,
        [(1, Flags::SEEN), (2, Flags::FLAGGED), (3, Flags::empty())],
        "{out}"
    );
    let local = maildir(&s.inbox());
    let names: Vec<&str> = local.iter().map(|l| l.flags()).collect();
    assert_eq!(names, ["S", "F", ""], "{local:#?}");

    // 3. Push a deletion: m3 trashed locally is expunged on the server.
    set_local_flags(&s.inbox(), &local[2], "T");
    let out = s.sync();
    let server = s.server("INBOX");
    let uids: Vec<u32> = server.iter().map(|(u, _, _)| *u).collect();
    assert_eq!(uids, [1, 2], "{out}");
    for ((_, _, now), (_, _, then)) in server.iter().zip(&delivered) {
        assert_eq!(now, then, "the others are untouched");
    }
    let local = maildir(&s.inbox());
    let subjects: Vec<String> = local.iter().map(|l| l.subject()).collect();
    assert_eq!(subjects, ["m1", "m2"], "expunged locally too: {local:#?}");

    // 4. Push new mail: a message dropped into new/ is appended with the next UID. Its
    // "From " body line must come back unescaped from the mbox.
    let new = b"From: Alice <alice@example.test>\nTo: bob@example.test\nSubject: m4-local\n\
                Message-ID: <m4@example.test>\nDate: Wed, 25 Nov 2026 09:00:00 +0000\n\n\
                written locally\nFrom the Maildir\n.\n";
    std::fs::write(s.inbox().join("new").join("1795600000.local.test"), new).unwrap();
    let out = s.sync();
    let server = s.server("INBOX");
    assert_eq!(server.len(), 3, "{out}");
    let (uid, flags, appended) = &server[2];
    assert_eq!(*uid, 4, "UID after the expunged 3");
    assert_eq!(*flags, Flags::empty());
    assert_eq!(
        String::from_utf8_lossy(&without_tuid(appended)),
        String::from_utf8_lossy(new),
        "stored as sent (mbsync sends CRLF and adds X-TUID; the spool keeps LF)"
    );
    let local = maildir(&s.inbox());
    assert_eq!(local.len(), 3);
    let pushed = local.iter().find(|l| l.subject() == "m4-local").unwrap();
    assert_eq!(pushed.content, new, "the local file stays as written");
    assert!(pushed.name.contains(",U=4"), "{}", pushed.name);

    // A run with nothing to do changes nothing on either side.
    let before = snapshot(&s, &["INBOX"]);
    let out = s.sync_with("-Dn");
    assert_nothing_propagated(&out);
    assert_eq!(snapshot(&s, &["INBOX"]), before, "{out}");
}

#[test]
fn local_folders_are_created_and_new_mail_arrives_later() {
    let s = Setup::new();
    deliver(&s.lab, "alice", &["m1"]);
    s.sync();
    assert_eq!(maildir(&s.inbox()).len(), 1);

    // Two folders created locally, one nested, each with a message.
    let mut written = Vec::new();
    for (name, flags) in [("Archive", "S"), ("Work/Projects", "")] {
        let dir = s.folder(name);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let msg = format!("From: alice@example.test\nSubject: in {name}\n\nfiled in {name}\n");
        std::fs::write(
            dir.join("cur")
                .join(format!("1795600000.{}.test:2,{flags}", written.len())),
            &msg,
        )
        .unwrap();
        written.push((name, msg));
    }
    // And new mail on the server since the first run.
    deliver(&s.lab, "alice", &["m2"]);
    let out = s.sync();

    for (name, msg) in &written {
        let server = s.server(name);
        assert_eq!(server.len(), 1, "{name} on the server\n{out}");
        assert_eq!(
            String::from_utf8_lossy(&without_tuid(&server[0].2)),
            msg.as_str(),
            "{name}"
        );
    }
    assert_eq!(s.server("Archive")[0].1, Flags::SEEN);
    assert_eq!(s.server("Work/Projects")[0].1, Flags::empty());
    let local = maildir(&s.inbox());
    let spooled = s.server("INBOX");
    assert_eq!(local.len(), 2, "{local:#?}\n{out}");
    assert_eq!(local[1].subject(), "m2");
    assert_eq!(without_tuid(&local[1].content), spooled[1].2);

    // Nothing changed: nothing moves.
    let boxes = ["INBOX", "Archive", "Work/Projects"];
    let before = snapshot(&s, &boxes);
    let out = s.sync_with("-Dn");
    assert_nothing_propagated(&out);
    assert_eq!(snapshot(&s, &boxes), before, "{out}");
}
