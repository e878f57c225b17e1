//! The `ldap` account backend against a real OpenLDAP slapd: logins through SMTP AUTH,
//! IMAP LOGIN and POP3 USER/PASS (Python's client libraries over STARTTLS), recipient
//! lookups by `mail` attributes, filter injection, failover to the second server, and a
//! directory outage answered with temporary failures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::accounts::{accepted, logins, rcpt, rejected, unavailable};
use support::slapd::{Slapd, BASE, SERVICE_DN, SERVICE_PW};
use support::{http_get, python, wait_for, Lab, HEALTH, SMTP};

/// `[auth]` for a lab using `urls`; the service password comes from a file.
fn auth_config(lab_dir: &std::path::Path, urls: &[String], tls: &str, cache_secs: u64) -> String {
    let secret = lab_dir.join("ldap.secret");
    std::fs::write(&secret, format!("{SERVICE_PW}\n")).unwrap();
    let urls: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[auth]\nbackend = \"ldap\"\n\n[auth.ldap]\nurls = [{}]\n{tls}\n\
         bind_dn = {SERVICE_DN:?}\nbind_password_file = {:?}\nbase_dn = {BASE:?}\n\
         mail_attrs = [\"mail\", \"mailLocalAddress\"]\ncache_secs = {cache_secs}\n\
         connect_timeout_secs = 2\ntimeout_secs = 3\n\n\
         [limits]\nlogin_failures_per_ip = 1000\nlogin_failures_per_user = 1000\n",
        urls.join(", "),
        secret.display().to_string(),
    )
}

/// A lab of `hosts` agents on a scratch dir for the secret, then the config.
fn lab(hosts: usize, urls: &[String], tls: &str, cache_secs: u64) -> (tempfile::TempDir, Lab) {
    let scratch = tempfile::tempdir().unwrap();
    let auth = auth_config(scratch.path(), urls, tls, cache_secs);
    let mut lab = Lab::new(hosts, &auth);
    for h in 0..hosts {
        lab.start(h, &[]);
    }
    (scratch, lab)
}

fn send(lab: &Lab, to: &str, subject: &str) {
    let script = r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30)
s.sendmail("sender@remote.test", [sys.argv[3]], ("Subject: %s\r\n\r\nhello\r\n" % sys.argv[4]).encode())
s.quit()
print("sent")
"#;
    let addr = lab.addr(0, SMTP);
    let out = python(
        script,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            to,
            subject,
        ],
    );
    assert_eq!(out.trim(), "sent");
}

#[test]
fn logins_recipients_and_injection_over_starttls_on_two_hosts() {
    let slapd = Slapd::start();
    let tls = format!(
        "starttls = true\nca_file = {:?}",
        slapd.ca_file.display().to_string()
    );
    let (_scratch, lab) = lab(2, &[slapd.ldap_url()], &tls, 0);

    // The same accounts and passwords on both hosts ({SSHA} and {CRYPT}$6$).
    for host in 0..2 {
        let r = logins(&lab, host, "alice", "alice-ldap-pw");
        assert!(accepted(&r), "alice on host{}: {r:?}", host + 1);
        let r = logins(&lab, host, "bob", "bob-ldap-pw");
        assert!(accepted(&r), "bob on host{}: {r:?}", host + 1);
    }
    // Login by mail address too (the default filter matches uid or mail).
    let r = logins(&lab, 0, "bob@example.test", "bob-ldap-pw");
    assert!(accepted(&r), "{r:?}");

    let long = "a".repeat(2000);
    for (login, password, why) in [
        ("alice", "wrong", "wrong password"),
        ("bob", "alice-ldap-pw", "another user's password"),
        ("nobody", "alice-ldap-pw", "unknown user"),
        // Unescaped, these would match exactly alice or bob and log in.
        ("ali*", "alice-ldap-pw", "wildcard"),
        ("*ob", "bob-ldap-pw", "wildcard"),
        ("*", "alice-ldap-pw", "wildcard"),
        ("alice)(uid=*", "alice-ldap-pw", "filter injection"),
        ("*)(|(uid=*", "alice-ldap-pw", "filter injection"),
        ("alice\0", "alice-ldap-pw", "NUL"),
        ("al\0ice", "alice-ldap-pw", "NUL"),
        (long.as_str(), "alice-ldap-pw", "2000-character name"),
        ("shared@example.test", "dup-pw", "ambiguous: two entries"),
    ] {
        let r = logins(&lab, 0, login, password);
        assert!(rejected(&r), "{why} ({login:.40?}): {r:?}");
    }

    // Recipients: by uid, by mail, by mailLocalAddress; unknown and ambiguous refused.
    for (address, want) in [
        ("alice@example.test", "250"),
        ("a.smith@example.test", "250"),
        ("bob@example.test", "250"),
        ("nobody@example.test", "550"),
        ("shared@example.test", "550"),
        ("*@example.test", "550"),
    ] {
        let r = rcpt(&lab, 0, address);
        assert!(r.starts_with(want), "RCPT {address}: {r}");
    }
    send(&lab, "a.smith@example.test", "to-the-alternate-address");
    let got = lab.messages("alice");
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0]).contains("to-the-alternate-address"));

    let (code, body) = http_get(lab.addr(1, HEALTH), "/healthz").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"backend\":\"ldap\""), "{body}");
}

#[test]
fn second_server_takes_over_and_an_outage_is_a_temporary_failure() {
    let first = Slapd::start();
    let second = Slapd::start();
    // Both CAs in one file; the second server is reached over ldaps://.
    let cas = format!(
        "{}{}",
        std::fs::read_to_string(&first.ca_file).unwrap(),
        std::fs::read_to_string(&second.ca_file).unwrap()
    );
    let ca_file = first.root().join("both-cas.pem");
    std::fs::write(&ca_file, cas).unwrap();
    let tls = format!("ca_file = {:?}", ca_file.display().to_string());
    let (_scratch, lab) = lab(1, &[first.ldap_url(), second.ldaps_url()], &tls, 0);

    assert!(accepted(&logins(&lab, 0, "alice", "alice-ldap-pw")));
    first.stop();
    let r = logins(&lab, 0, "alice", "alice-ldap-pw");
    assert!(accepted(&r), "second server: {r:?}");
    assert!(rejected(&logins(&lab, 0, "alice", "wrong")));
    assert!(rcpt(&lab, 0, "bob@example.test").starts_with("250"));

    // Both down: never "wrong password", never "no such user".
    second.stop();
    let r = logins(&lab, 0, "alice", "alice-ldap-pw");
    assert!(unavailable(&r), "{r:?}");
    let r = logins(&lab, 0, "nobody", "x");
    assert!(unavailable(&r), "{r:?}");
    let r = rcpt(&lab, 0, "alice@example.test");
    assert!(r.starts_with("451") && r.contains("4.3.0"), "{r}");
    let (code, body) = http_get(lab.addr(0, HEALTH), "/healthz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"auth\":{\"backend\":\"ldap\"") || body.contains("ldap"));

    // The first comes back: found again at once, although it was marked down.
    first.resume();
    let r = logins(&lab, 0, "bob", "bob-ldap-pw");
    assert!(accepted(&r), "after recovery: {r:?}");
    assert!(wait_for(Duration::from_secs(10), || {
        http_get(lab.addr(0, HEALTH), "/healthz").is_some_and(|(c, _)| c == 200)
    }));
}

#[test]
fn positive_results_are_cached_for_the_ttl_only() {
    let slapd = Slapd::start();
    let (_scratch, lab) = lab(1, &[slapd.ldap_url()], "", 60);
    assert!(accepted(&logins(&lab, 0, "alice", "alice-ldap-pw")));
    assert!(rcpt(&lab, 0, "a.smith@example.test").starts_with("250"));
    slapd.stop();
    // Cached: the same login and the user it found still work...
    assert!(accepted(&logins(&lab, 0, "alice", "alice-ldap-pw")));
    assert!(rcpt(&lab, 0, "alice@example.test").starts_with("250"));
    // ...but nothing negative or unseen is answered from the cache: a wrong password,
    // an unseen user, and `a.smith`, which is first looked up as a user name (a
    // negative answer, not kept) before its address was found.
    let r = logins(&lab, 0, "alice", "wrong");
    assert!(unavailable(&r), "{r:?}");
    assert!(rcpt(&lab, 0, "bob@example.test").starts_with("451"));
    assert!(rcpt(&lab, 0, "a.smith@example.test").starts_with("451"));
}
