//! RFC transcript tests for the POP3 state machine: `C:` lines go in, the `S:` status
//! line (prefix) must come out. The world is scripted: `alice`/`pw` logs in, `down` makes
//! the directory unavailable, `busy` has too many sessions; alice's maildrop holds three
//! messages (UIDs 5, 6, 7, UIDVALIDITY 0x1234) and UID 6 can be made to vanish.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const M1: &[u8] = b"Subject: one\n\nbody one\n";
const M2: &[u8] = b"Subject: two\nX: y\n\nline 1\n.\n..x\nline 4\n";
const M3: &[u8] = b"Subject: three\r\n\r\ncrlf body\r\n";

fn crlf_size(m: &[u8]) -> u64 {
    m.len() as u64 + u64::from(hamail_storage::index::count_bare_lf(m))
}

struct World {
    s: Session,
    /// UID 6 was expunged by another session.
    gone: bool,
    /// The QUIT expunge fails.
    commit_fails: bool,
    /// What the last Commit asked for.
    committed: Option<Vec<u32>>,
    /// Full wire bytes of the last reply.
    last: Vec<u8>,
    closed: bool,
}

fn world(tls: bool, plaintext_auth: bool) -> World {
    let settings = Arc::new(Settings {
        hostname: "h1.example.test".into(),
        tls_available: true,
        allow_plaintext_auth: plaintext_auth,
    });
    World {
        s: Session::new(settings, tls),
        gone: false,
        commit_fails: false,
        committed: None,
        last: Vec::new(),
        closed: false,
    }
}

impl World {
    /// Run the action chain to the reply the client would see; its status line.
    fn resolve(&mut self, mut action: Action) -> String {
        loop {
            action = match action {
                Action::Reply(r) => return self.seen(r, false),
                Action::Close(r) => return self.seen(r, true),
                Action::StartTls(r) => {
                    let line = self.seen(r, false);
                    self.s.tls_started();
                    return line;
                }
                Action::Authenticate { login, password } => {
                    self.s
                        .auth_result(match (login.as_str(), password.as_str()) {
                            ("down", _) => AuthOutcome::Unavailable,
                            ("busy", _) => AuthOutcome::TooManySessions,
                            ("limited", _) => AuthOutcome::Limited,
                            ("alice", "pw") | ("empty", "pw") | ("nfs", "pw") => {
                                AuthOutcome::Ok(login)
                            }
                            _ => AuthOutcome::Failed,
                        })
                }
                Action::OpenMaildrop { user } => {
                    let result = match user.as_str() {
                        "alice" => Ok(Maildrop {
                            uidvalidity: 0x1234,
                            messages: vec![
                                (5, crlf_size(M1)),
                                (6, crlf_size(M2)),
                                (7, crlf_size(M3)),
                            ],
                        }),
                        "nfs" => Err(MaildropError::Temporary),
                        _ => Ok(Maildrop::default()),
                    };
                    self.s.maildrop_result(user, result)
                }
                Action::Fetch(f) => {
                    assert_eq!(f.uidvalidity, 0x1234);
                    let result = match f.uid {
                        5 => Ok(M1.to_vec()),
                        6 if self.gone => Err(FetchError::Gone),
                        6 => Ok(M2.to_vec()),
                        7 => Ok(M3.to_vec()),
                        _ => Err(FetchError::Gone),
                    };
                    self.s.fetch_result(result)
                }
                Action::Commit { user, uids, .. } => {
                    assert_eq!(user, "alice");
                    self.committed = Some(uids.clone());
                    self.s.commit_result(if self.commit_fails {
                        Err(CommitError::Temporary)
                    } else {
                        Ok(uids.len())
                    })
                }
            };
        }
    }

    fn seen(&mut self, r: Reply, close: bool) -> String {
        self.last = r.wire().to_vec();
        self.closed = close;
        format!("{r}")
    }

    fn cmd(&mut self, line: &str) -> String {
        let action = self.s.command(line.as_bytes());
        self.resolve(action)
    }

    /// `C: line` / `S: prefix` pairs.
    fn transcript(&mut self, script: &str) {
        let lines: Vec<&str> = script
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        for pair in lines.chunks(2) {
            let c = pair[0].strip_prefix("C: ").expect("C: line");
            let want = pair[1].strip_prefix("S: ").expect("S: line");
            let got = self.cmd(c);
            assert!(
                got.starts_with(want),
                "C: {c}\n  want S: {want}\n  got  S: {got}"
            );
        }
    }

    fn body(&self) -> String {
        String::from_utf8(self.last.clone()).unwrap()
    }
}

fn logged_in() -> World {
    let mut w = world(true, false);
    w.transcript(
        "C: USER alice
         S: +OK
         C: PASS pw
         S: +OK maildrop has 3 messages",
    );
    w
}

#[test]
fn greeting_and_capa_before_tls() {
    let w = world(false, false);
    assert_eq!(
        format!("{}", w.s.greeting()),
        "+OK h1.example.test hamail POP3 ready"
    );
    let mut w = w;
    w.cmd("CAPA");
    assert_eq!(
        w.body(),
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n\
         PIPELINING\r\nSTLS\r\nIMPLEMENTATION hamail\r\n.\r\n"
    );
}

#[test]
fn capa_after_stls_offers_logins_not_stls() {
    let mut w = world(false, false);
    w.transcript(
        "C: STLS
         S: +OK begin TLS
         C: CAPA
         S: +OK",
    );
    let capa = w.body();
    assert!(
        capa.contains("\r\nUSER\r\n") && capa.contains("\r\nSASL PLAIN\r\n"),
        "{capa}"
    );
    assert!(!capa.contains("STLS"), "{capa}");
    w.transcript(
        "C: STLS
         S: -ERR TLS already active",
    );
}

#[test]
fn plaintext_login_refused_without_tls() {
    let mut w = world(false, false);
    w.transcript(
        "C: USER alice
         S: -ERR [AUTH] TLS required
         C: PASS pw
         S: -ERR [AUTH] TLS required
         C: AUTH PLAIN AGFsaWNlAHB3
         S: -ERR [AUTH] TLS required
         C: STAT
         S: -ERR not logged in",
    );
    // Allowed in labs.
    let mut w = world(false, true);
    w.transcript(
        "C: USER alice
         S: +OK
         C: PASS pw
         S: +OK maildrop has 3 messages (",
    );
}

#[test]
fn user_pass_failures() {
    let mut w = world(true, false);
    w.transcript(
        "C: PASS pw
         S: -ERR send USER first
         C: USER alice
         S: +OK
         C: PASS wrong
         S: -ERR [AUTH] authentication failed
         C: PASS pw
         S: -ERR send USER first
         C: USER down
         S: +OK
         C: PASS x
         S: -ERR [SYS/TEMP]
         C: USER busy
         S: +OK
         C: PASS x
         S: -ERR [SYS/TEMP] too many sessions
         C: USER nfs
         S: +OK
         C: PASS pw
         S: -ERR [SYS/TEMP] maildrop unavailable
         C: USER alice
         S: +OK
         C: PASS pw
         S: +OK maildrop has 3 messages
         C: USER alice
         S: -ERR already logged in",
    );
    let mut w = world(true, false);
    w.transcript(
        "C: USER limited
         S: +OK
         C: PASS x
         S: -ERR [AUTH] too many failed logins",
    );
    assert!(w.closed);
}

#[test]
fn auth_plain_initial_response_and_continuation() {
    // "\0alice\0pw"
    let mut w = world(true, false);
    w.transcript(
        "C: AUTH PLAIN AGFsaWNlAHB3
         S: +OK maildrop has 3 messages",
    );
    let mut w = world(true, false);
    w.transcript(
        "C: AUTH PLAIN
         S: +
         C: AGFsaWNlAHB3
         S: +OK maildrop has 3 messages",
    );
    let mut w = world(true, false);
    w.transcript(
        "C: auth plain
         S: +
         C: *
         S: -ERR [AUTH] authentication cancelled
         C: AUTH PLAIN !!!
         S: -ERR invalid base64
         C: AUTH PLAIN =
         S: -ERR malformed
         C: AUTH CRAM-MD5
         S: -ERR unsupported
         C: AUTH PLAIN Ym9iAGFsaWNlAHB3
         S: -ERR [AUTH] authentication failed
         C: AUTH PLAIN AGFsaWNlAHdyb25n
         S: -ERR [AUTH] authentication failed
         C: AUTH
         S: +OK SASL mechanisms",
    );
    assert!(w.body().contains("\r\nPLAIN\r\n.\r\n"));
}

#[test]
fn stat_list_uidl() {
    let mut w = logged_in();
    let (s1, s2, s3) = (crlf_size(M1), crlf_size(M2), crlf_size(M3));
    w.transcript(&format!(
        "C: STAT
         S: +OK 3 {}
         C: LIST 2
         S: +OK 2 {s2}
         C: LIST 4
         S: -ERR no such message
         C: LIST 0
         S: -ERR no such message
         C: LIST -1
         S: -ERR invalid message number
         C: LIST 99999999999999999999
         S: -ERR invalid message number
         C: UIDL 3
         S: +OK 3 0000123400000007",
        s1 + s2 + s3
    ));
    w.cmd("LIST");
    assert_eq!(
        w.body(),
        format!(
            "+OK 3 messages ({} octets)\r\n1 {s1}\r\n2 {s2}\r\n3 {s3}\r\n.\r\n",
            s1 + s2 + s3
        )
    );
    w.cmd("UIDL");
    assert_eq!(
        w.body(),
        "+OK unique-id listing follows\r\n1 0000123400000005\r\n2 0000123400000006\r\n\
         3 0000123400000007\r\n.\r\n"
    );
}

#[test]
fn retr_is_crlf_and_byte_stuffed() {
    let mut w = logged_in();
    w.transcript("C: RETR 2\nS: +OK");
    assert_eq!(
        w.body(),
        format!(
            "+OK {} octets\r\nSubject: two\r\nX: y\r\n\r\nline 1\r\n..\r\n...x\r\nline 4\r\n.\r\n",
            crlf_size(M2)
        )
    );
    // The CRLF size promised by LIST is what is sent (before stuffing).
    let unstuffed = "Subject: two\r\nX: y\r\n\r\nline 1\r\n.\r\n..x\r\nline 4\r\n";
    assert_eq!(unstuffed.len() as u64, crlf_size(M2));
    w.transcript("C: RETR 3\nS: +OK");
    assert!(
        w.body().ends_with("\r\n\r\ncrlf body\r\n.\r\n"),
        "{}",
        w.body()
    );
    assert!(!w.body().contains("\r\r"), "CRLF doubled");
}

#[test]
fn top_sends_headers_and_k_lines() {
    let mut w = logged_in();
    w.transcript("C: TOP 2 0\nS: +OK");
    assert_eq!(
        w.body(),
        "+OK top of message follows\r\nSubject: two\r\nX: y\r\n\r\n.\r\n"
    );
    w.transcript("C: TOP 2 2\nS: +OK");
    assert_eq!(
        w.body(),
        "+OK top of message follows\r\nSubject: two\r\nX: y\r\n\r\nline 1\r\n..\r\n.\r\n"
    );
    w.transcript("C: TOP 1 100\nS: +OK");
    assert!(w.body().ends_with("\r\n\r\nbody one\r\n.\r\n"));
    w.transcript(
        "C: TOP 1
         S: -ERR syntax
         C: TOP 1 x
         S: -ERR invalid line count",
    );
}

#[test]
fn dele_rset_and_quit_commit_exactly_the_marked() {
    let mut w = logged_in();
    w.transcript(&format!(
        "C: DELE 1
         S: +OK message 1 deleted
         C: DELE 1
         S: -ERR message already deleted
         C: RETR 1
         S: -ERR message already deleted
         C: STAT
         S: +OK 2 {}
         C: RSET
         S: +OK maildrop has 3 messages
         C: DELE 3
         S: +OK
         C: DELE 1
         S: +OK
         C: QUIT
         S: +OK hamail POP3 signing off (2 messages deleted)",
        crlf_size(M2) + crlf_size(M3)
    ));
    assert!(w.closed);
    assert_eq!(w.committed, Some(vec![5, 7]));
}

#[test]
fn quit_without_marks_and_failed_commit() {
    let mut w = logged_in();
    w.transcript("C: QUIT\nS: +OK hamail POP3 signing off");
    assert!(w.closed && w.committed.is_none());

    let mut w = logged_in();
    w.commit_fails = true;
    w.transcript(
        "C: DELE 2
         S: +OK
         C: QUIT
         S: -ERR [SYS/TEMP]",
    );
    assert!(w.closed);
    // Unauthenticated QUIT never commits.
    let mut w = world(false, false);
    w.transcript("C: QUIT\nS: +OK");
    assert!(w.closed && w.committed.is_none());
}

#[test]
fn message_expunged_elsewhere_is_refused() {
    let mut w = logged_in();
    w.gone = true;
    w.transcript(
        "C: RETR 2
         S: -ERR [SYS/PERM] message was deleted by another session
         C: TOP 2 1
         S: -ERR [SYS/PERM] message was deleted by another session
         C: RETR 1
         S: +OK",
    );
}

#[test]
fn empty_maildrop() {
    let mut w = world(true, false);
    w.transcript(
        "C: USER empty
         S: +OK
         C: PASS pw
         S: +OK maildrop has 0 messages (0 octets)
         C: STAT
         S: +OK 0 0
         C: RETR 1
         S: -ERR no such message
         C: LIST
         S: +OK 0 messages",
    );
    assert!(w.body().ends_with("\r\n.\r\n"));
}

#[test]
fn wrong_state_and_unknown_commands_close_after_ten() {
    let mut w = world(true, false);
    w.transcript(
        "C: STAT
         S: -ERR not logged in
         C: NOOP
         S: -ERR not logged in
         C: APOP alice 0123
         S: -ERR APOP is not supported",
    );
    for _ in 0..6 {
        w.transcript("C: FOO\nS: -ERR unknown command");
    }
    assert!(!w.closed);
    w.transcript("C: XYZZY\nS: -ERR too many bad commands");
    assert!(w.closed);
    w.transcript("C: CAPA\nS: -ERR session is over");
}

#[test]
fn transaction_commands_are_case_insensitive_and_noop_works() {
    let mut w = logged_in();
    w.transcript(
        "C: noop
         S: +OK
         C: stat
         S: +OK 3
         C: StLs
         S: -ERR STLS only before login
         C: list 1 2
         S: -ERR syntax",
    );
}

#[test]
fn command_labels_are_bounded() {
    assert_eq!(command_label(b"retr 1"), "RETR");
    assert_eq!(command_label(b"QUIT"), "QUIT");
    assert_eq!(command_label(b"\xff\xfe garbage"), "unknown");
    assert_eq!(unique_id(1, 0xabc), "0000000100000abc");
}

#[test]
fn a_too_long_sasl_response_ends_the_exchange() {
    let mut w = world(true, false);
    w.transcript("C: AUTH PLAIN\nS: +");
    assert!(w.s.in_auth());
    let action = w.s.line_too_long();
    assert_eq!(w.resolve(action), "-ERR line too long");
    assert!(!w.s.in_auth());
    w.transcript("C: CAPA\nS: +OK Capability list follows");
}
