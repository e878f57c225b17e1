//! POP3 against real agents with Python's poplib: STLS and USER/PASS, AUTH PLAIN over
//! POP3S, STAT/LIST/UIDL/TOP/RETR byte for byte against what SMTP delivered, DELE/RSET/
//! QUIT, a dropped connection, two agents on one spool (stable UIDLs, an expunge by one
//! session while the other has the message in its snapshot), idle timeout, shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

/// Deliver one message to `to` over SMTP (port 25 role) on `host`; `body` uses `\n`.
fn send_mail(lab: &Lab, host: usize, to: &str, subject: &str, body: &str) {
    let (mut raw, code) = Raw::connect(lab.addr(host, SMTP));
    assert_eq!(code, 220);
    assert_eq!(raw.cmd("EHLO test.client").0, 250);
    assert_eq!(raw.cmd("MAIL FROM:<sender@remote.test>").0, 250);
    assert_eq!(raw.cmd(&format!("RCPT TO:<{to}>")).0, 250);
    assert_eq!(raw.cmd("DATA").0, 354);
    let mut data = format!("Subject: {subject}\r\nFrom: sender@remote.test\r\n\r\n");
    for line in body.lines() {
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
        data.push_str("\r\n");
    }
    data.push_str(".\r\n");
    raw.send(data.as_bytes());
    assert_eq!(raw.reply().0, 250);
    raw.cmd("QUIT");
}

/// The stored messages of `user` as POP3 must send them: bare LF turned into CRLF.
fn expected(lab: &Lab, user: &str) -> Vec<Vec<u8>> {
    lab.messages(user)
        .into_iter()
        .map(|m| {
            let mut out = Vec::new();
            for (i, b) in m.iter().enumerate() {
                if *b == b'\n' && (i == 0 || m[i - 1] != b'\r') {
                    out.push(b'\r');
                }
                out.push(*b);
            }
            out
        })
        .collect()
}

fn b64(data: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap()
}

const PRELUDE: &str = r#"
import poplib, ssl, sys, json, base64
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

def login(host, user="alice", tls="stls"):
    if tls == "ssl":
        p = poplib.POP3_SSL(host, 2995, context=ctx)
    else:
        p = poplib.POP3(host, 2110)
        p.stls(ctx)
    p.user(user)
    p.pass_(user + "-pw")
    return p

def wire(lines):
    return base64.b64encode(b"".join(l + b"\r\n" for l in lines)).decode()

def refused(f, prefix):
    try:
        f()
    except poplib.error_proto as e:
        assert e.args[0].startswith(prefix), e.args[0]
        return e.args[0].decode()
    raise SystemExit("accepted: expected " + prefix.decode())
"#;

const RETRIEVE: &str = r#"
host = sys.argv[1]
p = poplib.POP3(host, 2110)
caps = p.capa()
assert "STLS" in caps and "USER" not in caps and "SASL" not in caps, caps
assert "TOP" in caps and "UIDL" in caps and "RESP-CODES" in caps and "PIPELINING" in caps, caps
refused(lambda: p.user("alice"), b"-ERR [AUTH]")
p.stls(ctx)
caps = p.capa()
assert "USER" in caps and caps.get("SASL") == ["PLAIN"] and "STLS" not in caps, caps
p.user("alice")
refused(lambda: p.pass_("wrong"), b"-ERR [AUTH]")
p.user("alice")
p.pass_("alice-pw")
n, octets = p.stat()
out = {"stat": [n, octets]}
out["list"] = [int(l.split()[1]) for l in p.list()[1]]
out["uidl"] = [l.split()[1].decode() for l in p.uidl()[1]]
out["uidl1"] = p.uidl(1).split()[2].decode()
out["retr"] = [wire(p.retr(i)[1]) for i in range(1, n + 1)]
out["top"] = wire(p.top(2, 1)[1])
out["top0"] = wire(p.top(1, 0)[1])
assert p.quit().startswith(b"+OK")
print(json.dumps(out))
"#;

#[test]
fn poplib_stls_user_pass_retrieves_exactly_what_smtp_delivered() {
    let mut lab = Lab::new(1, "");
    lab.start(0, &[]);
    send_mail(&lab, 0, "alice@example.test", "first", "hello\nworld\n");
    send_mail(
        &lab,
        0,
        "alice@example.test",
        "dots",
        "line one\n.\n..x\n.leading dot\nlast\n",
    );
    let want = expected(&lab, "alice");
    assert_eq!(want.len(), 2);
    let out = python(&format!("{PRELUDE}{RETRIEVE}"), &[&lab.ips[0].to_string()]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let sizes: Vec<u64> = want.iter().map(|m| m.len() as u64).collect();
    assert_eq!(v["stat"], serde_json::json!([2, sizes.iter().sum::<u64>()]));
    assert_eq!(v["list"], serde_json::json!(sizes));
    let uidl: Vec<String> = serde_json::from_value(v["uidl"].clone()).unwrap();
    assert_eq!(uidl.len(), 2);
    assert_ne!(uidl[0], uidl[1]);
    assert!(uidl
        .iter()
        .all(|u| u.len() == 16 && u.bytes().all(|b| b.is_ascii_hexdigit())));
    assert_eq!(v["uidl1"], serde_json::json!(uidl[0]));
    for (i, m) in want.iter().enumerate() {
        let got = b64(v["retr"][i].as_str().unwrap());
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(m),
            "message {}",
            i + 1
        );
    }
    let dots = String::from_utf8(want[1].clone()).unwrap();
    assert!(
        dots.contains("\r\nline one\r\n.\r\n..x\r\n.leading dot\r\n"),
        "{dots}"
    );
    // TOP 2 1: the header, the blank line, one body line.
    let (head, _) = dots.split_once("\r\n\r\n").unwrap();
    let top = String::from_utf8(b64(v["top"].as_str().unwrap())).unwrap();
    assert_eq!(top, format!("{head}\r\n\r\nline one\r\n"));
    let first = String::from_utf8(want[0].clone()).unwrap();
    let (head, _) = first.split_once("\r\n\r\n").unwrap();
    let top0 = String::from_utf8(b64(v["top0"].as_str().unwrap())).unwrap();
    assert_eq!(top0, format!("{head}\r\n\r\n"));
    // Nothing was deleted.
    assert_eq!(lab.messages("alice").len(), 2);
}

const POP3S_AUTH_DELE: &str = r#"
host = sys.argv[1]
# AUTH PLAIN with an initial response (poplib has no AUTH helper).
p = poplib.POP3_SSL(host, 2995, context=ctx)
caps = p.capa()
assert "STLS" not in caps and caps.get("SASL") == ["PLAIN"], caps
bad = base64.b64encode(b"\0alice\0nope").decode()
refused(lambda: p._shortcmd("AUTH PLAIN " + bad), b"-ERR [AUTH]")
good = base64.b64encode(b"\0alice\0alice-pw").decode()
assert p._shortcmd("AUTH PLAIN " + good).startswith(b"+OK"), "AUTH PLAIN"
assert p.stat()[0] == 3
# DELE then RSET: everything back.
p.dele(1); p.dele(3)
assert p.stat()[0] == 1
refused(lambda: p.retr(1), b"-ERR")
p.rset()
assert p.stat()[0] == 3
p.dele(2)
# Dropped without QUIT: nothing is deleted.
p.sock.close()

# AUTH PLAIN with the continuation form.
p = poplib.POP3_SSL(host, 2995, context=ctx)
p._putcmd("AUTH PLAIN")
assert p._getline()[0] == b"+ ", "continuation"
p._putcmd(good)
assert p._getresp().startswith(b"+OK")
assert p.stat()[0] == 3, "a dropped session deleted something"
p.dele(2)
p.dele(3)
assert p.quit().startswith(b"+OK")
print("ok")
"#;

#[test]
fn pop3s_auth_plain_dele_rset_quit_and_dropped_connection() {
    let mut lab = Lab::new(1, "");
    lab.start(0, &[]);
    for i in 1..=3 {
        send_mail(&lab, 0, "bob@example.test", &format!("m{i}"), "x\n");
    }
    // The script logs in as alice: give her the same three.
    for i in 1..=3 {
        send_mail(
            &lab,
            0,
            "alice@example.test",
            &format!("m{i}"),
            &format!("body {i}\n"),
        );
    }
    let before = lab.messages("alice");
    let out = python(
        &format!("{PRELUDE}{POP3S_AUTH_DELE}"),
        &[&lab.ips[0].to_string()],
    );
    assert_eq!(out.trim(), "ok");
    // Exactly messages 2 and 3 are gone; bob's untouched.
    assert_eq!(lab.messages("alice"), vec![before[0].clone()]);
    assert_eq!(lab.messages("bob").len(), 3);
}

const TWO_AGENTS: &str = r#"
h1, h2 = sys.argv[1], sys.argv[2]
a = login(h1, tls="stls")
b = login(h2, tls="ssl")
ua, ub = a.uidl()[1], b.uidl()[1]
assert ua == ub and len(ua) == 3, (ua, ub)
# A fresh session on either host gives the same ids again.
c = login(h2)
assert c.uidl()[1] == ua
c.quit()
# a deletes message 1; b still has it in its snapshot.
a.dele(1)
assert a.quit().startswith(b"+OK")
msg = refused(lambda: b.retr(1), b"-ERR [SYS/PERM]")
assert "deleted by another session" in msg, msg
assert len(b.retr(2)[1]) > 0
b.dele(1)
b.dele(2)
assert b.quit().startswith(b"+OK")
# Numbers are per session: a new one sees the remaining message as 1, same UIDL.
d = login(h1)
assert d.stat()[0] == 1
assert d.uidl()[1] == [b"1 " + ua[2].split()[1]], (d.uidl()[1], ua)
d.quit()
print("ok")
"#;

#[test]
fn two_agents_share_uidls_and_survive_concurrent_expunge() {
    let mut lab = Lab::new(2, "");
    lab.start(0, &[]);
    lab.start(1, &[]);
    for i in 1..=3 {
        send_mail(
            &lab,
            i % 2,
            "alice@example.test",
            &format!("m{i}"),
            &format!("body {i}\n"),
        );
    }
    let before = lab.messages("alice");
    assert_eq!(before.len(), 3);
    let out = python(
        &format!("{PRELUDE}{TWO_AGENTS}"),
        &[&lab.ips[0].to_string(), &lab.ips[1].to_string()],
    );
    assert_eq!(out.trim(), "ok");
    assert_eq!(lab.messages("alice"), vec![before[2].clone()]);
}

/// A raw POP3 line client for the limits tests.
struct Line {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
}

impl Line {
    fn connect(lab: &Lab) -> Line {
        let stream = TcpStream::connect(lab.addr(0, POP3)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut l = Line {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        };
        assert!(l.line().starts_with("+OK"));
        l
    }

    /// One line; empty at EOF.
    fn line(&mut self) -> String {
        let mut s = String::new();
        let _ = self.reader.read_line(&mut s);
        s
    }

    fn cmd(&mut self, bytes: &[u8]) -> String {
        self.stream.write_all(bytes).unwrap();
        self.line()
    }
}

#[test]
fn idle_timeout_long_lines_bad_commands_and_shutdown() {
    let mut lab = Lab::new(1, "\n[limits]\npop3_idle_timeout_secs = 1\n");
    lab.start(0, &[]);

    let mut c = Line::connect(&lab);
    let long = format!("USER {}\r\n", "a".repeat(2000));
    assert!(c.cmd(long.as_bytes()).starts_with("-ERR line too long"));
    assert!(c.cmd(b"NOOP\r\n").starts_with("-ERR"));
    // Still in sync: CAPA answers with its list.
    assert!(c.cmd(b"CAPA\r\n").starts_with("+OK"));
    std::thread::sleep(Duration::from_millis(2500));
    let mut rest = String::new();
    loop {
        let l = c.line();
        if l.is_empty() {
            break;
        }
        rest.push_str(&l);
    }
    assert!(
        rest.ends_with(".\r\n-ERR idle timeout, closing\r\n"),
        "{rest:?}"
    );

    let mut c = Line::connect(&lab);
    for _ in 0..9 {
        assert!(c.cmd(b"BOGUS\r\n").starts_with("-ERR unknown"));
    }
    assert!(c
        .cmd(b"BOGUS\r\n")
        .starts_with("-ERR too many bad commands"));
    assert_eq!(c.line(), "");

    let mut c = Line::connect(&lab);
    lab.signal(0, libc::SIGTERM);
    assert_eq!(c.line(), "-ERR server shutting down\r\n");
    assert_eq!(c.line(), "");
    assert!(lab.wait_exit(0, Duration::from_secs(20)).success());
}

#[test]
fn sessions_per_user_and_failed_login_limit() {
    let mut lab = Lab::new(1, "\n[limits]\nmax_sessions_per_user = 1\n");
    lab.edit_config(
        "allow_plaintext_auth = false",
        "allow_plaintext_auth = true",
    );
    lab.start(0, &[]);

    let mut a = Line::connect(&lab);
    assert!(a.cmd(b"USER alice\r\n").starts_with("+OK"));
    assert!(a
        .cmd(b"PASS alice-pw\r\n")
        .starts_with("+OK maildrop has 0 messages"));
    let mut b = Line::connect(&lab);
    assert!(b.cmd(b"USER alice\r\n").starts_with("+OK"));
    assert!(b
        .cmd(b"PASS alice-pw\r\n")
        .starts_with("-ERR [SYS/TEMP] too many sessions"));
    assert!(a.cmd(b"QUIT\r\n").starts_with("+OK"));
    assert_eq!(a.line(), "");
    // The slot is free again once the other session ended.
    assert!(wait_for(Duration::from_secs(5), || {
        b.cmd(b"USER alice\r\n").starts_with("+OK")
            && b.cmd(b"PASS alice-pw\r\n").starts_with("+OK")
    }));

    // Five failures for bob, then even the right password is refused and the session ends.
    let mut c = Line::connect(&lab);
    for _ in 0..5 {
        assert!(c.cmd(b"USER bob\r\n").starts_with("+OK"));
        assert!(c
            .cmd(b"PASS nope\r\n")
            .starts_with("-ERR [AUTH] authentication failed"));
    }
    assert!(c.cmd(b"USER bob\r\n").starts_with("+OK"));
    assert!(c
        .cmd(b"PASS bob-pw\r\n")
        .starts_with("-ERR [AUTH] too many failed logins"));
    assert_eq!(c.line(), "");
}
