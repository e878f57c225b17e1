//! Real clients against the agent: Python's smtplib (plain, STARTTLS, implicit TLS, AUTH
//! PLAIN and LOGIN, SMTPUTF8, 8-bit bodies), a STARTTLS command-injection attempt, and
//! swaks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

const SMTPLIB: &str = r#"
import smtplib, ssl, sys
host = sys.argv[1]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

# MX, plaintext: 8-bit body and an SMTPUTF8 sender.
s = smtplib.SMTP(host, 2525)
s.ehlo("py.test")
assert s.has_extn("smtputf8") and s.has_extn("8bitmime")
r = s.sendmail("jörg@remote.test", ["alice@example.test"],
               "Subject: 8bit\r\n\r\nGrüße, 日本\r\n".encode(), mail_options=["SMTPUTF8", "BODY=8BITMIME"])
assert r == {}, r
s.quit()

# Submission with STARTTLS: AUTH appears only after TLS; PLAIN and LOGIN; wrong password.
s = smtplib.SMTP(host, 2587)
s.ehlo("py.test")
assert not s.has_extn("auth"), "AUTH offered before TLS"
s.starttls(context=ctx)
s.ehlo("py.test")
assert "PLAIN" in s.esmtp_features["auth"] and "LOGIN" in s.esmtp_features["auth"]
try:
    s.login("alice", "wrong")
    raise SystemExit("wrong password accepted")
except smtplib.SMTPAuthenticationError as e:
    assert e.smtp_code == 535, e
s.login("alice", "alice-pw")  # smtplib tries CRAM-MD5, PLAIN, LOGIN in order
s.sendmail("alice@example.test", ["bob@example.test"], b"Subject: plain\r\n\r\nvia starttls\r\n")
r = s.sendmail("alice@example.test", ["friend@remote.test"], b"Subject: out\r\n\r\nrelayed\r\n")
assert r == {}, r
s.quit()

s = smtplib.SMTP(host, 2587)
s.starttls(context=ctx)
s.ehlo("py.test")
s.user, s.password = "bob", "bob-pw"
code, resp = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
assert code == 235, (code, resp)
s.sendmail("bob@example.test", ["carol@example.test"], b"Subject: login\r\n\r\nvia AUTH LOGIN\r\n")
s.quit()

# Implicit TLS (465).
s = smtplib.SMTP_SSL(host, 2465, context=ctx)
s.login("carol", "carol-pw")
s.sendmail("carol@example.test", ["alice@example.test"], b"Subject: implicit\r\n\r\nvia 465\r\n")
s.quit()
print("ok")
"#;

#[test]
fn python_smtplib_plain_starttls_auth_and_implicit_tls() {
    // The relay runner finds nobody listening at the smarthost and keeps the entry.
    let mut lab = Lab::new(1, "\n[relay]\nsmarthost = \"127.0.0.1:1\"\n");
    lab.start(0, &[]);
    let out = python(SMTPLIB, &[&lab.ips[0].to_string()]);
    assert_eq!(out.trim(), "ok");
    let alice: Vec<String> = lab
        .messages("alice")
        .iter()
        .map(|m| String::from_utf8(m.clone()).unwrap())
        .collect();
    assert_eq!(alice.len(), 2, "{alice:?}");
    assert!(
        alice[0].starts_with("Return-Path: <jörg@remote.test>\n"),
        "{}",
        alice[0]
    );
    assert!(alice[0].ends_with("\n\nGrüße, 日本\n"), "{}", alice[0]);
    assert!(alice[1].contains("with ESMTPSA"), "{}", alice[1]);
    assert!(alice[1].ends_with("via 465\n"));
    let bob = lab.messages("bob");
    assert_eq!(bob.len(), 1);
    assert!(String::from_utf8_lossy(&bob[0]).contains("with ESMTPSA"));
    assert_eq!(body(&lab.messages("carol")[0]), "via AUTH LOGIN\n");
    // The relayed message waits in the shared queue (claimable once the runner's first
    // attempt is over).
    let queue = lab.spool().queue();
    let ids = queue.list().unwrap();
    assert_eq!(ids.len(), 1);
    let mut claimed = None;
    assert!(wait_for(Duration::from_secs(10), || {
        claimed = queue.claim(&ids[0]).unwrap();
        claimed.is_some()
    }));
    let entry = claimed.unwrap().entry.clone();
    assert_eq!(entry.recipients, ["friend@remote.test"]);
    assert!(String::from_utf8_lossy(&entry.data).ends_with("\n\nrelayed\n"));
}

const INJECTION: &str = r#"
import socket, ssl, sys
host = sys.argv[1]
s = socket.create_connection((host, 2587))
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        line = f.readline()
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return b"".join(lines)
assert reply().startswith(b"220")
s.sendall(b"EHLO i.test\r\n"); assert reply().startswith(b"250")
# The injected RSET/NOOP ride in the same packet as STARTTLS.
s.sendall(b"STARTTLS\r\nNOOP injected\r\nNOOP injected\r\n")
assert reply().startswith(b"220")
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s, server_hostname="localhost")
tf = t.makefile("rb")
t.sendall(b"QUIT\r\n")
first = tf.readline()
# Had the injected NOOPs been executed inside TLS, their 250s would come first.
assert first.startswith(b"221"), first
print("ok")
"#;

#[test]
fn starttls_discards_plaintext_pipelined_after_the_command() {
    let mut lab = Lab::new(1, "");
    lab.start(0, &[]);
    assert_eq!(python(INJECTION, &[&lab.ips[0].to_string()]).trim(), "ok");
    assert!(lab
        .log(0)
        .contains("discarded plaintext pipelined after STARTTLS"));
}

#[test]
fn plaintext_auth_only_when_the_config_allows_it() {
    let mut lab = Lab::new(1, "");
    lab.edit_config(
        "allow_plaintext_auth = false",
        "allow_plaintext_auth = true",
    );
    lab.start(0, &[]);
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], 2587)
s.login("alice", "alice-pw")
s.sendmail("alice@example.test", ["bob@example.test"], b"Subject: lab\r\n\r\nplaintext lab\r\n")
s.quit()
print("ok")
"#;
    assert_eq!(python(script, &[&lab.ips[0].to_string()]).trim(), "ok");
    assert_eq!(body(&lab.messages("bob")[0]), "plaintext lab\n");
}

fn swaks(args: &[&str]) -> (i32, String) {
    let out = Command::new("swaks")
        .args(args)
        .output()
        .expect("swaks (apt-get install swaks)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn swaks_submission_with_tls_and_auth_and_mx_relay_denied() {
    let mut lab = Lab::new(1, "");
    lab.start(0, &[]);
    let ip = lab.ips[0].to_string();
    let sub = format!("{ip}:{SUBMISSION}");
    let (code, text) = swaks(&[
        "--server",
        &sub,
        "--tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "alice-pw",
        "--from",
        "alice@example.test",
        "--to",
        "bob@example.test",
        "--header",
        "Subject: swaks",
        "--body",
        "from swaks",
    ]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = swaks(&[
        "--server",
        &sub,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "nope",
        "--to",
        "bob@example.test",
    ]);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("535 5.7.8"), "{text}");
    let mx = format!("{ip}:{SMTP}");
    let (code, text) = swaks(&[
        "--server",
        &mx,
        "--from",
        "a@remote.test",
        "--to",
        "x@elsewhere.test",
    ]);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("550 5.7.1"), "{text}");
    let msgs = lab.messages("bob");
    assert_eq!(msgs.len(), 1);
    assert!(String::from_utf8_lossy(&msgs[0]).contains("Subject: swaks"));
    // swaks ends its body with blank lines of its own.
    assert_eq!(body(&msgs[0]).trim_end(), "from swaks");
    assert_eq!(lab.queued(), 0);
}
