//! RFC transcript tests for the session state machine: `C:` lines go in, the `S:` code
//! (and enhanced code) must come out. Directory answers are scripted: `alice` exists,
//! `down` makes the directory unavailable, the password is `pw`.

use std::sync::Arc;

use hamail_storage::cluster::ClusterConfig;

use super::*;

fn settings(kind: Kind, plaintext_auth: bool) -> Arc<Settings> {
    let config = ClusterConfig::builder("/srv/mail")
        .host("h1", "127.0.0.1")
        .build()
        .unwrap();
    Arc::new(Settings {
        kind,
        hostname: "h1.example.test".into(),
        tls_available: true,
        allow_plaintext_auth: plaintext_auth,
        max_message_size: 1000,
        max_recipients: 2,
        config: Arc::new(config),
    })
}

/// Run the session's action chain to the reply the client would see.
fn resolve(s: &mut Session, mut action: Action) -> String {
    loop {
        action = match action {
            Action::Reply(r)
            | Action::Close(r)
            | Action::StartTls(r)
            | Action::ReadData(r)
            | Action::Discard { reply: r, .. } => {
                return format!("{r}");
            }
            Action::Authenticate { login, password } => s.auth_result(if login == "down" {
                AuthOutcome::Unavailable
            } else if login == "alice" && password == "pw" {
                AuthOutcome::Ok("alice".into())
            } else {
                AuthOutcome::Failed
            }),
            Action::CheckRecipient {
                address,
                local_part,
            } => {
                let lookup = match local_part.as_str() {
                    "alice" | "postmaster" | "Postmaster" => Lookup::Found(Targets {
                        users: vec![local_part.to_lowercase()],
                        remote: vec![],
                    }),
                    "down" => Lookup::Unavailable,
                    "spoolfull" => Lookup::StoreFull,
                    "spooldown" => Lookup::StoreUnavailable,
                    _ => Lookup::Unknown,
                };
                s.rcpt_result(address, lookup)
            }
            Action::Deliver(_) => return "DELIVER".into(),
        };
    }
}

/// `C: line` / `S: prefix` pairs.
fn transcript(s: &mut Session, script: &str) {
    let lines: Vec<&str> = script
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    for pair in lines.chunks(2) {
        let c = pair[0].strip_prefix("C: ").expect("C: line");
        let want = pair[1].strip_prefix("S: ").expect("S: line");
        let action = s.command(c.as_bytes());
        let got = resolve(s, action);
        let last = got.lines().last().unwrap_or("");
        assert!(
            last.starts_with(want),
            "C: {c}\n  want S: {want}\n  got  S: {got}"
        );
    }
}

fn peer() -> IpAddr {
    "192.0.2.7".parse().unwrap()
}

#[test]
fn mx_transaction_and_relay_denial() {
    let mut s = Session::new(settings(Kind::Mx, false), peer(), false);
    transcript(
        &mut s,
        "C: EHLO client.test
         S: 250 SMTPUTF8
         C: MAIL FROM:<a@remote.test> SIZE=500
         S: 250 2.1.0
         C: RCPT TO:<b@other.test>
         S: 550 5.7.1
         C: RCPT TO:<nobody@example.test>
         S: 550 5.1.1
         C: RCPT TO:<down@example.test>
         S: 451 4.3.0
         C: RCPT TO:<spooldown@example.test>
         S: 451 4.3.0 Mail store
         C: RCPT TO:<spoolfull@example.test>
         S: 452 4.3.1 Insufficient system storage
         C: RCPT TO:<Postmaster>
         S: 250 2.1.5
         C: RCPT TO:<alice@EXAMPLE.TEST>
         S: 250 2.1.5
         C: RCPT TO:<alice@example.test>
         S: 452 4.5.3
         C: DATA
         S: 354",
    );
    let Action::Deliver(acc) = s.data_result(Ok(b"Subject: x\n\nhi\n".to_vec()), 17) else {
        panic!("no delivery");
    };
    assert_eq!(acc.users, ["postmaster", "alice"]);
    assert!(acc.remote.is_empty());
    let text = String::from_utf8(acc.data).unwrap();
    assert!(text.starts_with("Received: from client.test ([192.0.2.7])\n\tby h1.example.test (hamail) with ESMTP id "), "{text}");
    assert!(text.ends_with("\nSubject: x\n\nhi\n"));
    assert_eq!(
        format!("{}", s.delivered(Err(DeliveryFailure::NoSpace)).reply()),
        "452 4.3.1 Insufficient system storage, try again later"
    );
}

#[test]
fn submission_auth_rules() {
    // Plaintext, not allowed: no AUTH until TLS.
    let mut s = Session::new(settings(Kind::Submission, false), peer(), false);
    transcript(
        &mut s,
        "C: EHLO c
         S: 250 SMTPUTF8
         C: AUTH PLAIN AGFsaWNlAHB3
         S: 538 5.7.11
         C: MAIL FROM:<alice@example.test>
         S: 530 5.7.0
         C: STARTTLS
         S: 220 2.0.0",
    );
    s.tls_started();
    transcript(
        &mut s,
        "C: MAIL FROM:<alice@example.test>
         S: 503 5.5.1
         C: EHLO c
         S: 250 SMTPUTF8
         C: AUTH PLAIN AGFsaWNlAHdyb25n
         S: 535 5.7.8
         C: AUTH PLAIN AGRvd24AcHc=
         S: 454 4.7.0
         C: AUTH PLAIN
         S: 334
         C: *
         S: 501 5.7.0
         C: AUTH LOGIN
         S: 334 VXNlcm5hbWU6
         C: YWxpY2U=
         S: 334 UGFzc3dvcmQ6
         C: cHc=
         S: 235 2.7.0
         C: AUTH PLAIN AGFsaWNlAHB3
         S: 503 5.5.1
         C: MAIL FROM:<alice@example.test>
         S: 250 2.1.0
         C: RCPT TO:<friend@remote.test>
         S: 250 2.1.5
         C: DATA
         S: 354",
    );
    let Action::Deliver(acc) = s.data_result(Ok(b"\n".to_vec()), 2) else {
        panic!()
    };
    assert_eq!(acc.remote, ["friend@remote.test"]);
    assert!(String::from_utf8(acc.data)
        .unwrap()
        .contains("with ESMTPSA id"));
}

#[test]
fn plain_authzid_must_match_and_starttls_resets_state() {
    let mut s = Session::new(settings(Kind::Submission, true), peer(), false);
    transcript(
        &mut s,
        "C: EHLO c
         S: 250 SMTPUTF8
         C: AUTH PLAIN Ym9iAGFsaWNlAHB3
         S: 535 5.7.8
         C: AUTH PLAIN AGFsaWNlAHB3
         S: 235 2.7.0",
    );
    assert_eq!(s.user(), Some("alice"));
    s.tls_started();
    assert_eq!(s.user(), None, "RFC 3207: forget plaintext state");
    transcript(&mut s, "C: STARTTLS\nS: 503 5.5.1");
}

#[test]
fn data_errors_map_to_codes() {
    let mut s = Session::new(settings(Kind::Mx, false), peer(), false);
    transcript(&mut s, "C: HELO c\nS: 250 h1\nC: MAIL FROM:<>\nS: 250\nC: RCPT TO:<alice@example.test>\nS: 250\nC: DATA\nS: 354");
    let r = s.data_result(Err(DotError::TooBig), 5000);
    assert!(format!("{}", r.reply()).starts_with("552 5.3.4"));
    // The transaction is over: a new MAIL is allowed.
    transcript(&mut s, "C: MAIL FROM:<>\nS: 250");
}

impl Action {
    fn reply(self) -> Reply {
        match self {
            Action::Reply(r) | Action::Close(r) => r,
            other => panic!("not a reply: {other:?}"),
        }
    }
}
