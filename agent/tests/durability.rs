//! "250 means durable": the agent is SIGKILLed during DATA and in the middle of writing a
//! mailbox, two agents deliver into one spool at once, and SIGTERM lets the transaction
//! in flight finish. Every acknowledged message must be in its mailbox exactly once, and
//! no partial message may ever be visible.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::*;

/// A message whose body proves it is complete: a numbered line at each end.
fn message(tag: &str) -> String {
    let filler: String = (0..40)
        .map(|i| format!("{tag} line {i} ......................................\r\n"))
        .collect();
    format!(
        "Subject: {tag}\r\nMessage-ID: <{tag}@test>\r\n\r\nBEGIN {tag}\r\n{filler}END {tag}\r\n"
    )
}

/// Send one message on a new connection; true only if the server said 250 after DATA.
fn send(lab: &Lab, host: usize, rcpts: &[&str], tag: &str) -> bool {
    if std::net::TcpStream::connect(lab.addr(host, SMTP)).is_err() {
        return false; // the agent is down
    }
    let (mut raw, code) = Raw::connect(lab.addr(host, SMTP));
    if code != 220 {
        return false;
    }
    raw.cmd("EHLO d.test");
    if raw.cmd("MAIL FROM:<d@remote.test>").0 != 250 {
        return false;
    }
    for r in rcpts {
        if raw.cmd(&format!("RCPT TO:<{r}>")).0 != 250 {
            return false;
        }
    }
    if raw.cmd("DATA").0 != 354 {
        return false;
    }
    raw.send(format!("{}.\r\n", message(tag)).as_bytes());
    raw.reply().0 == 250
}

/// Tags found in `user`'s mailbox with their counts; panics on any partial message.
fn census(lab: &Lab, user: &str) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for msg in lab.messages(user) {
        let text = String::from_utf8(msg).unwrap();
        let tag = text
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_else(|| panic!("no subject: {text}"))
            .to_string();
        let want = message(&tag).replace("\r\n", "\n");
        let body = want.split_once("\n\n").unwrap().1;
        assert!(
            text.ends_with(body),
            "partial or altered message {tag}:\n{text}"
        );
        *seen.entry(tag).or_insert(0) += 1;
    }
    seen
}

#[test]
fn sigkill_during_data_stores_nothing_and_keeps_acknowledged_mail() {
    let mut lab = Lab::new(1, "");
    lab.start(0, &[]);
    assert!(send(&lab, 0, &["alice@example.test"], "before"));
    let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
    raw.cmd("EHLO d.test");
    raw.cmd("MAIL FROM:<d@remote.test>");
    raw.cmd("RCPT TO:<alice@example.test>");
    assert_eq!(raw.cmd("DATA").0, 354);
    let half = message("half");
    raw.send(&half.as_bytes()[..half.len() / 2]);
    std::thread::sleep(Duration::from_millis(200));
    lab.kill(0);
    lab.start(0, &[]);
    assert!(send(&lab, 0, &["alice@example.test"], "after"));
    let seen = census(&lab, "alice");
    assert_eq!(
        seen,
        HashMap::from([("before".into(), 1), ("after".into(), 1)])
    );
}

#[test]
fn sigkill_in_the_middle_of_a_mailbox_write() {
    let mut lab = Lab::new(1, "");
    // The agent dies half-way through writing the 4th append.
    lab.start(0, &[("HAMAIL_CRASH_AT", "append:mid-write@4")]);
    let mut acked = Vec::new();
    let mut crashed = false;
    for i in 0..10 {
        let tag = format!("m{i}");
        if send(&lab, 0, &["bob@example.test"], &tag) {
            acked.push(tag);
        } else {
            assert!(!crashed, "a second failure");
            crashed = true;
            lab.wait_exit(0, Duration::from_secs(10));
            lab.start(0, &[]);
        }
    }
    assert!(crashed, "the fault was not injected");
    assert_eq!(acked.len(), 9);
    let seen = census(&lab, "bob");
    for tag in &acked {
        assert_eq!(seen.get(tag), Some(&1), "{tag} (acknowledged) in {seen:?}");
    }
    assert_eq!(
        seen.len(),
        9,
        "the unacknowledged message must not appear: {seen:?}"
    );
}

#[test]
fn sigkill_after_write_before_fsync_never_shows_a_partial_message() {
    let mut lab = Lab::new(1, "");
    lab.start(0, &[("HAMAIL_PAUSE_AT", "append:after-write:3000")]);
    let addr = lab.addr(0, SMTP);
    let sender = std::thread::spawn(move || {
        let (mut raw, _) = Raw::connect(addr);
        raw.cmd("EHLO d.test");
        raw.cmd("MAIL FROM:<d@remote.test>");
        raw.cmd("RCPT TO:<carol@example.test>");
        raw.cmd("DATA");
        raw.send(format!("{}.\r\n", message("inflight")).as_bytes());
        raw.reply().0
    });
    std::thread::sleep(Duration::from_millis(1000));
    lab.kill(0);
    assert_ne!(sender.join().unwrap(), 250, "acknowledged before durable");
    lab.start(0, &[]);
    assert!(send(&lab, 0, &["carol@example.test"], "next"));
    let seen = census(&lab, "carol");
    assert_eq!(seen.get("next"), Some(&1));
    assert!(seen.get("inflight").copied().unwrap_or(0) <= 1, "{seen:?}");
}

#[test]
fn two_agents_deliver_concurrently_into_one_spool() {
    let mut lab = Lab::new(2, "");
    lab.start(0, &[]);
    lab.start(1, &[]);
    let lab = std::sync::Arc::new(lab);
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let lab = lab.clone();
            std::thread::spawn(move || {
                (0..15)
                    .map(|i| {
                        let tag = format!("t{t}-{i}");
                        assert!(
                            send(
                                &lab,
                                t % 2,
                                &["alice@example.test", "bob@example.test"],
                                &tag
                            ),
                            "{tag}"
                        );
                        tag
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let tags: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(tags.len(), 90);
    for user in ["alice", "bob"] {
        let seen = census(&lab, user);
        assert_eq!(seen.len(), 90, "{user}");
        assert!(
            seen.values().all(|n| *n == 1),
            "{user}: duplicates {seen:?}"
        );
    }
    // Both hosts really took part.
    assert!(lab.log(0).contains("message accepted") && lab.log(1).contains("message accepted"));
}

#[test]
fn sigterm_finishes_the_transaction_in_flight() {
    let mut lab = Lab::new(1, "");
    lab.start(0, &[("HAMAIL_PAUSE_AT", "append:after-write:1500")]);
    let addr = lab.addr(0, SMTP);
    let (mut idle, _) = Raw::connect(addr);
    let sender = std::thread::spawn(move || {
        let (mut raw, _) = Raw::connect(addr);
        raw.cmd("EHLO d.test");
        raw.cmd("MAIL FROM:<d@remote.test>");
        raw.cmd("RCPT TO:<alice@example.test>");
        raw.cmd("DATA");
        raw.send(format!("{}.\r\n", message("graceful")).as_bytes());
        raw.reply().0
    });
    std::thread::sleep(Duration::from_millis(500));
    lab.signal(0, libc::SIGTERM);
    // The idle session is told to go away at once.
    let (code, text) = idle.reply();
    assert_eq!(code, 421, "{text}");
    assert_eq!(sender.join().unwrap(), 250);
    assert!(lab.wait_exit(0, Duration::from_secs(20)).success());
    assert_eq!(census(&lab, "alice").get("graceful"), Some(&1));
}
