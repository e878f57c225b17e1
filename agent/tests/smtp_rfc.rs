//! RFC 5321 behaviour over raw sockets: what the server answers to each thing a client
//! (or an attacker) can send, and what ends up in the mailboxes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::*;

fn lab() -> Lab {
    let mut lab = Lab::new(1, "");
    lab.start(0, &[]);
    lab
}

fn ehlo(raw: &mut Raw) -> String {
    let (code, text) = raw.cmd("EHLO client.test");
    assert_eq!(code, 250, "{text}");
    text
}

#[test]
fn ehlo_advertises_extensions_and_mx_has_no_auth() {
    let lab = lab();
    let (mut raw, code) = Raw::connect(lab.addr(0, SMTP));
    assert_eq!(code, 220);
    let text = ehlo(&mut raw);
    for ext in [
        "PIPELINING",
        "SIZE ",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "STARTTLS",
        "SMTPUTF8",
    ] {
        assert!(text.contains(ext), "{ext} missing in {text}");
    }
    assert!(!text.contains("AUTH"), "MX must not offer AUTH: {text}");
    assert_eq!(raw.cmd("AUTH PLAIN AGFsaWNlAGFsaWNlLXB3").0, 503);
    assert_eq!(raw.cmd("VRFY alice").0, 252);
    assert_eq!(raw.cmd("EXPN sales").0, 502);
    assert_eq!(raw.cmd("NOOP").0, 250);
    assert_eq!(raw.cmd("QUIT").0, 221);
}

#[test]
fn mx_accepts_local_users_aliases_and_postmaster_and_refuses_relay() {
    let lab = lab();
    let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
    ehlo(&mut raw);
    assert_eq!(raw.cmd("MAIL FROM:<x@remote.test>").0, 250);
    let (code, text) = raw.cmd("RCPT TO:<victim@elsewhere.test>");
    assert_eq!(code, 550, "{text}");
    assert!(text.contains("5.7.1"), "{text}");
    let (code, text) = raw.cmd("RCPT TO:<nobody@example.test>");
    assert_eq!(code, 550);
    assert!(text.contains("5.1.1"), "{text}");
    assert_eq!(raw.cmd("RCPT TO:<Alice@EXAMPLE.test>").0, 250);
    assert_eq!(raw.cmd("RCPT TO:<sales@example.org>").0, 250);
    assert_eq!(raw.cmd("RCPT TO:<Postmaster>").0, 250);
    assert_eq!(raw.cmd("DATA").0, 354);
    raw.send(b"Subject: to many\r\n\r\nhello all\r\n.\r\n");
    let (code, text) = raw.reply();
    assert_eq!(code, 250, "{text}");
    // alice once (direct and via sales), bob via sales, postmaster's own mailbox.
    for user in ["alice", "bob", "postmaster"] {
        let msgs = lab.messages(user);
        assert_eq!(msgs.len(), 1, "{user}");
        assert_eq!(body(&msgs[0]), "hello all\n");
        assert!(String::from_utf8_lossy(&msgs[0])
            .starts_with("Return-Path: <x@remote.test>\nReceived: from client.test"));
    }
    assert!(lab.messages("carol").is_empty());
    assert!(lab.messages("victim").is_empty());
}

#[test]
fn submission_requires_auth_and_tls_before_auth() {
    let lab = lab();
    let (mut raw, _) = Raw::connect(lab.addr(0, SUBMISSION));
    let text = ehlo(&mut raw);
    assert!(!text.contains("AUTH"), "AUTH offered in plaintext: {text}");
    assert!(text.contains("STARTTLS"));
    let (code, text) = raw.cmd("MAIL FROM:<alice@example.test>");
    assert_eq!(code, 530, "{text}");
    let (code, text) = raw.cmd("AUTH PLAIN AGFsaWNlAGFsaWNlLXB3");
    assert_eq!(code, 538, "{text}");
    // Unauthenticated relay through submission is impossible too.
    assert_eq!(raw.cmd("RCPT TO:<victim@elsewhere.test>").0, 503);
}

/// RFC 5321 §4.5.2 / SMTP smuggling: only CRLF.CRLF ends the data; every other variant
/// stays inside the message and the "smuggled" transaction never happens.
#[test]
fn smtp_smuggling_variants_do_not_split_messages() {
    let lab = lab();
    for (i, variant) in ["\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r.\r\n"]
        .iter()
        .enumerate()
    {
        let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
        ehlo(&mut raw);
        assert_eq!(raw.cmd("MAIL FROM:<a@remote.test>").0, 250);
        assert_eq!(raw.cmd("RCPT TO:<alice@example.test>").0, 250);
        assert_eq!(raw.cmd("DATA").0, 354);
        let smuggle = format!(
            "Subject: case {i}\r\n\r\nfirst{variant}MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n"
        );
        raw.send(smuggle.as_bytes());
        let (code, text) = raw.reply();
        assert_eq!(code, 250, "case {i}: {text}");
        // Nothing else was answered: the smuggled commands were data.
        assert_eq!(raw.cmd("NOOP").0, 250, "case {i}");
        assert_eq!(raw.cmd("QUIT").0, 221);
    }
    assert!(
        lab.messages("bob").is_empty(),
        "a smuggled message reached bob"
    );
    let alice = lab.messages("alice");
    assert_eq!(alice.len(), 5);
    for msg in &alice {
        let text = String::from_utf8_lossy(msg);
        assert!(text.contains("MAIL FROM:<admin@example.test>\n"), "{text}");
        assert!(text.ends_with("evil\n"), "{text}");
        assert!(
            !text.contains('\r'),
            "bare CR/LF were not normalised: {text:?}"
        );
    }
}

#[test]
fn pipelined_transaction_is_answered_in_order() {
    let lab = lab();
    let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
    raw.send(b"EHLO p.test\r\nMAIL FROM:<p@remote.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n");
    assert_eq!(raw.reply().0, 250);
    assert_eq!(raw.reply().0, 250);
    assert_eq!(raw.reply().0, 250);
    assert_eq!(raw.reply().0, 550);
    assert_eq!(raw.reply().0, 354);
    raw.send(b"Subject: p\r\n\r\n..dot\r\n.\r\nQUIT\r\n");
    assert_eq!(raw.reply().0, 250);
    assert_eq!(raw.reply().0, 221);
    let msgs = lab.messages("bob");
    assert_eq!(msgs.len(), 1);
    assert_eq!(body(&msgs[0]), ".dot\n");
}

#[test]
fn limits_long_lines_size_and_recipients() {
    let mut lab = Lab::new(
        1,
        "\n[limits]\nmax_message_size = 2000\nmax_recipients = 3\n",
    );
    lab.start(0, &[]);
    let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
    ehlo(&mut raw);
    let (code, text) = raw.cmd(&format!("NOOP {}", "x".repeat(10_000)));
    assert_eq!(code, 500, "{text}");
    assert!(text.contains("5.5.2"));
    // The session is still in sync afterwards.
    assert_eq!(raw.cmd("NOOP").0, 250);
    let (code, text) = raw.cmd("MAIL FROM:<a@remote.test> SIZE=5000");
    assert_eq!(code, 552, "{text}");
    assert_eq!(raw.cmd("MAIL FROM:<a@remote.test> SIZE=100").0, 250);
    for _ in 0..3 {
        assert_eq!(raw.cmd("RCPT TO:<alice@example.test>").0, 250);
    }
    let (code, text) = raw.cmd("RCPT TO:<bob@example.test>");
    assert_eq!(code, 452, "{text}");
    assert_eq!(raw.cmd("DATA").0, 354);
    let big = format!("Subject: big\r\n\r\n{}\r\n.\r\n", "y".repeat(3000));
    raw.send(big.as_bytes());
    let (code, text) = raw.reply();
    assert_eq!(code, 552, "{text}");
    // A fresh small transaction on the same connection works.
    assert_eq!(raw.cmd("MAIL FROM:<a@remote.test>").0, 250);
    assert_eq!(raw.cmd("RCPT TO:<alice@example.test>").0, 250);
    assert_eq!(raw.cmd("DATA").0, 354);
    raw.send(b"Subject: small\r\n\r\nok\r\n.\r\n");
    assert_eq!(raw.reply().0, 250);
    let msgs = lab.messages("alice");
    assert_eq!(msgs.len(), 1, "only the small message is stored");
    assert_eq!(body(&msgs[0]), "ok\n");
}

#[test]
fn slow_clients_time_out_and_partial_data_is_not_stored() {
    let mut lab = Lab::new(
        1,
        "\n[limits]\ncommand_timeout_secs = 1\ndata_timeout_secs = 2\n",
    );
    lab.start(0, &[]);
    let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
    ehlo(&mut raw);
    std::thread::sleep(Duration::from_millis(1500));
    let (code, text) = raw.reply();
    assert_eq!(code, 421, "{text}");
    assert!(text.contains("4.4.2"));
    assert!(raw.closed());
    let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
    ehlo(&mut raw);
    assert_eq!(raw.cmd("MAIL FROM:<a@remote.test>").0, 250);
    assert_eq!(raw.cmd("RCPT TO:<alice@example.test>").0, 250);
    assert_eq!(raw.cmd("DATA").0, 354);
    raw.send(b"Subject: half\r\n\r\nthe first half of a mess");
    assert!(
        raw.closed(),
        "the server keeps waiting past the data timeout"
    );
    assert!(
        lab.messages("alice").is_empty(),
        "a partial message was stored"
    );
}

#[test]
fn per_ip_connection_limit() {
    let mut lab = Lab::new(1, "\n[limits]\nmax_connections_per_ip = 2\n");
    lab.start(0, &[]);
    let (_a, code_a) = Raw::connect(lab.addr(0, SMTP));
    let (_b, code_b) = Raw::connect(lab.addr(0, SUBMISSION));
    let (mut c, code_c) = Raw::connect(lab.addr(0, SMTP));
    assert_eq!((code_a, code_b, code_c), (220, 220, 421));
    assert!(c.closed());
    drop(_a);
    assert!(wait_for(Duration::from_secs(5), || Raw::connect(
        lab.addr(0, SMTP)
    )
    .1 == 220));
}

#[test]
fn bad_sequences_get_503_and_too_many_errors_disconnect() {
    let lab = lab();
    let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
    assert_eq!(
        raw.cmd("MAIL FROM:<a@remote.test>").0,
        503,
        "MAIL before EHLO"
    );
    ehlo(&mut raw);
    assert_eq!(raw.cmd("RCPT TO:<alice@example.test>").0, 503);
    assert_eq!(raw.cmd("DATA").0, 503);
    assert_eq!(raw.cmd("MAIL FROM:<a@remote.test>").0, 250);
    assert_eq!(raw.cmd("MAIL FROM:<a@remote.test>").0, 503, "nested MAIL");
    assert_eq!(raw.cmd("DATA").0, 554, "no recipients");
    assert_eq!(raw.cmd("RSET").0, 250);
    // BDAT is not offered; its chunk is read (by length) before the refusal.
    raw.send(b"BDAT 10 LAST\r\n");
    assert_eq!(raw.cmd("01234567").0, 502);
    let mut last = 0;
    for _ in 0..30 {
        last = raw.cmd("FOO").0;
        if last != 500 {
            break;
        }
    }
    assert_eq!(last, 421);
    assert!(raw.closed());
}

#[test]
fn spoofed_mailbox_state_headers_are_removed() {
    let lab = lab();
    let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
    ehlo(&mut raw);
    raw.cmd("MAIL FROM:<a@remote.test>");
    raw.cmd("RCPT TO:<alice@example.test>");
    raw.cmd("DATA");
    raw.send(b"X-UID: 1\r\nStatus: RO\r\nX-IMAPbase: 1 99\r\nReturn-Path: <forged@x>\r\nSubject: s\r\n\r\nStatus: stays in body\r\n.\r\n");
    assert_eq!(raw.reply().0, 250);
    let msg = String::from_utf8(lab.messages("alice").remove(0)).unwrap();
    for h in ["X-UID", "Status: RO", "X-IMAPbase", "forged"] {
        assert!(!msg.contains(h), "{h} survived:\n{msg}");
    }
    assert!(msg.ends_with("\n\nStatus: stays in body\n"), "{msg}");
}

#[test]
fn failed_logins_are_rate_limited_per_user() {
    let mut lab = Lab::new(1, "");
    lab.edit_config(
        "allow_plaintext_auth = false",
        "allow_plaintext_auth = true",
    );
    lab.start(0, &[]);
    let (mut raw, _) = Raw::connect(lab.addr(0, SUBMISSION));
    ehlo(&mut raw);
    // "\0alice\0wrong"
    for _ in 0..5 {
        let (code, text) = raw.cmd("AUTH PLAIN AGFsaWNlAHdyb25n");
        assert_eq!(code, 535, "{text}");
    }
    // Even the right password is refused now, and the client is cut off.
    let (code, text) = raw.cmd("AUTH PLAIN AGFsaWNlAGFsaWNlLXB3");
    assert_eq!(code, 421, "{text}");
    assert!(raw.closed());
    // Another user from the same address is still fine.
    let (mut raw, _) = Raw::connect(lab.addr(0, SUBMISSION));
    ehlo(&mut raw);
    assert_eq!(raw.cmd("AUTH PLAIN AGJvYgBib2ItcHc=").0, 235);
}

#[test]
fn bdat_chunks_are_discarded_never_parsed() {
    // CHUNKING is not offered; a client that sends BDAT anyway has its chunk read and
    // thrown away by its length, so a transaction hidden in the chunk never runs.
    let lab = lab();
    let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
    assert!(!ehlo(&mut raw).contains("CHUNKING"));
    let chunk = "MAIL FROM:<e@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n\
                 Subject: injected\r\n\r\nx\r\n.\r\n";
    raw.send(format!("BDAT {} LAST\r\n{chunk}NOOP\r\n", chunk.len()).as_bytes());
    let (code, text) = raw.reply();
    assert_eq!(code, 502, "{text}");
    assert_eq!(raw.reply().0, 250, "the NOOP after the chunk");
    // A chunk bigger than the size limit, or a size that cannot be read: closed unread.
    raw.send(b"BDAT 999999999999 LAST\r\nMAIL FROM:<e@remote.test>\r\n");
    assert_eq!(raw.reply().0, 554);
    assert!(raw.closed());
    let (mut raw, _) = Raw::connect(lab.addr(0, SMTP));
    ehlo(&mut raw);
    raw.send(b"BDAT many\r\nMAIL FROM:<e@remote.test>\r\n");
    assert_eq!(raw.reply().0, 554);
    assert!(raw.closed());
    assert!(lab.messages("alice").is_empty());
}
