//! The SMTP session never panics on any sequence of command lines, whatever the directory
//! answers, and never lets an unauthenticated MX session accept a non-local recipient.
#![no_main]
use std::sync::{Arc, OnceLock};

use hamail_agent::auth::Targets;
use hamail_agent::smtp::session::{Action, AuthOutcome, Lookup};
use hamail_agent::smtp::{Kind, Session, Settings};
use hamail_storage::cluster::ClusterConfig;
use libfuzzer_sys::fuzz_target;

fn config() -> Arc<ClusterConfig> {
    static C: OnceLock<Arc<ClusterConfig>> = OnceLock::new();
    C.get_or_init(|| {
        Arc::new(ClusterConfig::builder("/s").host("h", "127.0.0.1").build().unwrap())
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let kind = if mode & 1 == 0 { Kind::Mx } else { Kind::Submission };
    let settings = Arc::new(Settings {
        kind,
        hostname: "h.example.test".into(),
        tls_available: mode & 2 != 0,
        allow_plaintext_auth: mode & 4 != 0,
        max_message_size: 1000,
        max_recipients: 5,
        config: config(),
    });
    let mut s = Session::new(settings, "192.0.2.1".parse().unwrap(), mode & 8 != 0);
    for (i, line) in rest.split(|b| *b == b'\n').enumerate() {
        let mut action = s.command(line);
        loop {
            action = match action {
                Action::Reply(_) | Action::Close(_) | Action::Deliver(_) => break,
                Action::Discard { bytes, .. } => {
                    assert!(bytes <= 1000, "a chunk above the size limit is not read");
                    break;
                }
                Action::StartTls(_) => {
                    s.tls_started();
                    break;
                }
                Action::ReadData(_) => s.data_result(Ok(line.to_vec()), line.len()),
                Action::Authenticate { .. } => s.auth_result(match i % 4 {
                    0 => AuthOutcome::Ok("u".into()),
                    1 => AuthOutcome::Failed,
                    2 => AuthOutcome::Limited,
                    _ => AuthOutcome::Unavailable,
                }),
                Action::CheckRecipient { address, .. } => s.rcpt_result(
                    address,
                    match i % 3 {
                        0 => Lookup::Found(Targets { users: vec!["u".into()], remote: vec![] }),
                        1 => Lookup::Unknown,
                        _ => Lookup::Unavailable,
                    },
                ),
            };
        }
        if let Action::Deliver(acc) = action {
            if kind == Kind::Mx {
                assert!(acc.remote.is_empty(), "open relay: {:?}", acc.remote);
            } else {
                assert!(s.user().is_some() || acc.remote.is_empty());
            }
        }
    }
});
