//! Soak: 3 hosts × 4 SMTP clients send for 60 s while an IMAP client on every host reads,
//! flags and expunges, and host2 is SIGKILLed and restarted twice in the middle.
//! Afterwards every message that got a 250 is present exactly once (or was expunged by a
//! client), no message is present twice, the mailboxes read cleanly through the storage
//! library, and every host reports the same UIDs, flags and messages.
//!
//! Senders never retry a message: a connection lost mid-transaction may or may not have
//! stored it (the server fsyncs before the 250), so only 250s are promises.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hamail_lab::PORTS;
use support::lab;

const SECONDS: u64 = 60;

/// 12 sender threads: host h, client c sends `soak-h-c-n` to alice or bob, one message
/// per connection-reuse, reconnecting after errors. Prints `OK <mid>` for each 250.
const SENDERS: &str = r#"
import smtplib, sys, threading, time
hosts, port, seconds = sys.argv[1].split(","), int(sys.argv[2]), float(sys.argv[3])
deadline = time.time() + seconds
lock = threading.Lock()
def client(h, c):
    n, s = 0, None
    while time.time() < deadline:
        n += 1
        mid = "soak-%d-%d-%d" % (h, c, n)
        to = ["alice@example.test", "bob@example.test"][n % 2]
        msg = ("From: s@example.org\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@test>\r\n\r\nbody %s\r\n" % (to, mid, mid, mid)).encode()
        try:
            if s is None:
                s = smtplib.SMTP(hosts[h], port, timeout=10)
            s.sendmail("s@example.org", [to], msg)
            with lock:
                print("OK", mid, flush=True)
        except Exception:
            try:
                s.close()
            except Exception:
                pass
            s = None
            time.sleep(0.2)
    if s is not None:
        try:
            s.quit()
        except Exception:
            pass
ts = [threading.Thread(target=client, args=(h, c)) for h in range(len(hosts)) for c in range(4)]
[t.start() for t in ts]
[t.join() for t in ts]
"#;

/// One IMAP client per host: select alice's or bob's INBOX, flag some messages \Seen or
/// \Flagged, and now and then expunge one: `DELETING <mid>` before it is marked
/// \Deleted (from then on any session's EXPUNGE may remove it), `EXPUNGED <mid>` after
/// our EXPUNGE got OK. Reconnects after errors (host2 dies twice).
const READERS: &str = r#"
import imaplib, random, re, sys, threading, time
hosts, port, seconds = sys.argv[1].split(","), int(sys.argv[2]), float(sys.argv[3])
creds = dict(a.split(":", 1) for a in sys.argv[4].split(","))
deadline = time.time() + seconds
lock = threading.Lock()
def reader(h):
    rnd = random.Random(h)
    m = None
    while time.time() < deadline:
        try:
            if m is None:
                user = rnd.choice(sorted(creds))
                m = imaplib.IMAP4(hosts[h], port, timeout=10)
                m.login(user, creds[user])
                m.select("INBOX")
            typ, data = m.uid("SEARCH", None, "ALL")
            uids = data[0].split()
            if uids:
                uid = rnd.choice(uids)
                flag = rnd.choice(["\\Seen", "\\Flagged"])
                m.uid("STORE", uid, "+FLAGS", "(%s)" % flag)
                if rnd.random() < 0.2:
                    typ, data = m.uid("FETCH", uid, "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
                    hdr = b"".join(x[1] for x in data if isinstance(x, tuple))
                    found = re.search(rb"<(soak-[0-9-]+)@test>", hdr)
                    if found:
                        # Any session's EXPUNGE removes it from here on, even if ours fails.
                        with lock:
                            print("DELETING", found.group(1).decode(), flush=True)
                        m.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
                        typ, _ = m.expunge()
                        if typ == "OK":
                            with lock:
                                print("EXPUNGED", found.group(1).decode(), flush=True)
                    else:
                        m.uid("STORE", uid, "-FLAGS", "(\\Deleted)")
            if rnd.random() < 0.1:
                m.logout()
                m = None
            time.sleep(0.05)
        except Exception:
            m = None
            time.sleep(0.3)
ts = [threading.Thread(target=reader, args=(h,)) for h in range(len(hosts))]
[t.start() for t in ts]
[t.join() for t in ts]
"#;

/// Every INBOX message of `user` over IMAP on `host`: (UID, flags, Message-ID).
const LISTING: &str = r#"
import imaplib, re, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
m.login(sys.argv[3], sys.argv[4])
m.select("INBOX", readonly=True)
typ, data = m.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
for item in data:
    if isinstance(item, tuple):
        uid = re.search(rb"UID (\d+)", item[0]).group(1).decode()
        flags = " ".join(sorted(f.decode() for f in re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).split() if f != b"\\Recent"))
        mid = re.search(rb"<([^>@]+)@", item[1])
        print(uid, mid.group(1).decode() if mid else "-", flags)
m.logout()
"#;

#[test]
fn sixty_seconds_of_mail_with_a_host_dying_twice_loses_and_duplicates_nothing() {
    let lab = lab(3);
    let hosts: Vec<String> = (0..3).map(|i| lab.host_ip(i)).collect();
    let hosts = hosts.join(",");
    let creds: Vec<String> = lab
        .info
        .users
        .iter()
        .map(|u| format!("{}:{}", u.login, u.password))
        .collect();
    let spawn = |script: &str, extra: &[&str]| {
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .args([hosts.as_str()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let secs = SECONDS.to_string();
    let smtp_port = PORTS.smtp.to_string();
    let imap_port = PORTS.imap.to_string();
    let senders = spawn(SENDERS, &[&smtp_port, &secs]);
    let readers = spawn(READERS, &[&imap_port, &secs, &creds.join(",")]);

    // host2 dies and comes back twice in the middle of the run.
    let start = Instant::now();
    for (at, kill) in [(15, true), (25, false), (35, true), (45, false)] {
        while start.elapsed() < Duration::from_secs(at) {
            std::thread::sleep(Duration::from_millis(100));
        }
        if kill {
            hamail_lab::stop_host(lab.dir.path(), "host2", true).unwrap();
        } else {
            hamail_lab::start_host(lab.dir.path(), "host2").unwrap();
        }
    }
    let sent = senders.wait_with_output().unwrap();
    let read = readers.wait_with_output().unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let words = |out: &[u8], tag: &str| -> BTreeSet<String> {
        String::from_utf8_lossy(out)
            .lines()
            .filter_map(|l| l.strip_prefix(tag).map(|m| m.trim().to_string()))
            .collect()
    };
    let accepted = words(&sent.stdout, "OK ");
    let expunged = words(&read.stdout, "EXPUNGED ");
    let deleting = words(&read.stdout, "DELETING ");
    eprintln!(
        "soak: {} messages accepted, {} expunged by clients",
        accepted.len(),
        expunged.len()
    );
    assert!(
        accepted.len() > 200,
        "too little traffic to mean anything: {}",
        accepted.len()
    );
    assert!(!expunged.is_empty(), "the readers expunged nothing");

    // A delivery that waited out the lock timeout (host2 died holding a mailbox's
    // dotlock, which stays until it is stale) went to the durable queue with its 250;
    // the queue runners deliver it once the lock is broken. Wait for them.
    let spool =
        hamail_storage::Spool::open(&lab.info.spool, hamail_storage::LockOptions::default())
            .unwrap();
    let queued = spool.queue().list().unwrap().len();
    let drained = support::within(Duration::from_secs(90), || {
        spool.queue().list().unwrap().is_empty()
    });
    assert!(
        drained.is_some(),
        "the queue did not drain: {:?}",
        spool.queue().list()
    );
    eprintln!("soak: {queued} deliveries were queued at the end, drained in {drained:?}");

    let mut present_all = BTreeSet::new();
    for (u, user) in lab.info.users.iter().enumerate() {
        // The same UIDs, flags and messages on every host.
        let listings: Vec<String> = (0..3)
            .map(|h| {
                support::python(
                    LISTING,
                    &[&lab.host_ip(h), &imap_port, &user.login, &user.password],
                )
            })
            .collect();
        assert_eq!(listings[0], listings[1], "{}: host1 vs host2", user.login);
        assert_eq!(listings[0], listings[2], "{}: host1 vs host3", user.login);
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for line in listings[0].lines() {
            let mid = line.split_whitespace().nth(1).unwrap().to_string();
            *count.entry(mid).or_default() += 1;
        }
        let twice: Vec<&String> = count
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(m, _)| m)
            .collect();
        assert!(twice.is_empty(), "{}: duplicated: {twice:?}", user.login);
        let back: Vec<&String> = count.keys().filter(|m| expunged.contains(*m)).collect();
        assert!(
            back.is_empty(),
            "{}: expunged but back: {back:?}",
            user.login
        );
        present_all.extend(count.into_keys());

        // The mailbox reads cleanly through the storage library, and says the same.
        let session = spool.inbox(&user.login).unwrap().read().unwrap();
        let n = session.index().visible().count();
        for m in session.index().visible() {
            let data = session.read_message(m).unwrap();
            assert!(
                data.windows(11).any(|w| w == b"Message-ID:"),
                "uid {}",
                m.uid
            );
        }
        assert_eq!(n, listings[0].lines().count(), "{}", user.login);
        let _ = u;
    }
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|m| !present_all.contains(*m) && !deleting.contains(*m))
        .collect();
    if !lost.is_empty() {
        // Where are they? In the raw mbox (an index problem) or nowhere (lost)?
        let mut found = Vec::new();
        for m in lost.iter().take(10) {
            let needle = format!("<{m}@test>");
            for entry in walk(&lab.info.spool) {
                let data = std::fs::read(&entry).unwrap_or_default();
                if data.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(format!("{m} in {}", entry.display()));
                }
            }
        }
        let keep = lab.dir.path().to_path_buf();
        std::mem::forget(lab);
        panic!(
            "{} accepted with 250 but gone, e.g. {:?}; raw search: {found:?}; lab kept in {}",
            lost.len(),
            &lost[..lost.len().min(10)],
            keep.display()
        );
    }
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
