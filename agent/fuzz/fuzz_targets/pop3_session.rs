//! The POP3 session never panics on any sequence of command lines, whatever the
//! directory and the spool answer, never asks the spool for a message outside its
//! snapshot, and never commits deletions outside the TRANSACTION state.
#![no_main]
use std::sync::Arc;

use hamail_agent::pop3::session::{
    Action, AuthOutcome, CommitError, FetchError, Maildrop, MaildropError,
};
use hamail_agent::pop3::{Session, Settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let settings = Arc::new(Settings {
        hostname: "h.example.test".into(),
        tls_available: mode & 1 != 0,
        allow_plaintext_auth: mode & 2 != 0,
    });
    let snapshot = Maildrop {
        uidvalidity: 7,
        messages: vec![(3, 10), (4, 20), (9, 5)],
    };
    let mut s = Session::new(settings, mode & 4 != 0);
    for (i, line) in rest.split(|b| *b == b'\n').enumerate() {
        let mut action = if i % 17 == 16 { s.line_too_long() } else { s.command(line) };
        loop {
            action = match action {
                Action::Reply(_) | Action::Close(_) => break,
                Action::StartTls(_) => {
                    s.tls_started();
                    break;
                }
                Action::Authenticate { .. } => s.auth_result(match i % 5 {
                    0 | 4 => AuthOutcome::Ok("u".into()),
                    1 => AuthOutcome::Failed,
                    2 => AuthOutcome::Limited,
                    _ => AuthOutcome::Unavailable,
                }),
                Action::OpenMaildrop { user } => s.maildrop_result(
                    user,
                    match i % 4 {
                        0 => Err(MaildropError::Temporary),
                        1 => Ok(Maildrop::default()),
                        _ => Ok(snapshot.clone()),
                    },
                ),
                Action::Fetch(f) => {
                    assert!(s.user().is_some());
                    assert!(snapshot.messages.contains(&(f.uid, f.size)), "{f:?}");
                    s.fetch_result(match i % 3 {
                        0 => Ok(line.to_vec()),
                        1 => Err(FetchError::Gone),
                        _ => Err(FetchError::Temporary),
                    })
                }
                Action::Commit { uids, .. } => {
                    assert!(uids.iter().all(|u| snapshot.messages.iter().any(|m| m.0 == *u)));
                    s.commit_result(if i % 2 == 0 { Ok(uids.len()) } else { Err(CommitError::Temporary) })
                }
            };
        }
    }
});
