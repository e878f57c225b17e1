//! The IMAP command path never panics: arbitrary bytes go through imap-codec's
//! fragmentizer and command parser, and every command that parses runs in a logged-in
//! session on a scratch spool (two small mailboxes), whatever state it is in.
#![no_main]
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hamail_agent::auth::{Directory, LoginLimiter};
use hamail_agent::imap::session::{ImapContext, Session};
use hamail_agent::limits::{ConnLimits, UserSessions};
use hamail_agent::service::Services;
use hamail_storage::{LockOptions, NewMessage, Spool};
use imap_codec::fragmentizer::Fragmentizer;
use imap_codec::CommandCodec;
use imap_types::command::CommandBody;
use imap_types::IntoStatic;
use libfuzzer_sys::fuzz_target;

#[derive(Debug)]
struct Nobody;

#[async_trait::async_trait]
impl hamail_agent::auth::Authenticator for Nobody {
    async fn verify(&self, _: &str, _: &str) -> Result<Option<String>, hamail_agent::auth::AuthError> {
        Ok(None)
    }
    async fn user_exists(&self, _: &str) -> Result<bool, hamail_agent::auth::AuthError> {
        Ok(false)
    }
    async fn check(&self) -> Result<(), hamail_agent::auth::AuthError> {
        Ok(())
    }
    fn name(&self) -> &'static str {
        "none"
    }
}

fn ctx() -> Arc<ImapContext> {
    static C: OnceLock<Arc<ImapContext>> = OnceLock::new();
    C.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("hamail-fuzz-imap-{}", std::process::id()));
        let opts = LockOptions { timeout: Duration::from_millis(200), ..LockOptions::default() };
        let spool = Spool::open(&dir, opts).unwrap();
        let inbox = spool.inbox("u").unwrap();
        for i in 0..3 {
            let body = format!("Subject: s{i}\nFrom: a@b\n\nbody {i}\n");
            inbox.append(&[NewMessage::new("a@b", body.into_bytes())]).unwrap();
        }
        Arc::new(ImapContext {
            services: Arc::new(Services {
                spool,
                directory: Arc::new(Directory::new(Arc::new(Nobody), None, vec!["example.test".into()])),
                limiter: Arc::new(LoginLimiter::new()),
                tls: None,
                limits: ConnLimits::new(10, 10),
                user_sessions: UserSessions::new(1000),
                allow_plaintext_auth: true,
                hostname: "h".into(),
            }),
            idle_timeout: Duration::from_secs(60),
            max_literal: 4096,
            idle_poll: Duration::from_secs(1),
        })
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let ctx = ctx();
    let users = ctx.services.user_sessions.clone();
    let mut session = Session::new(ctx, true);
    if let Some(permit) = users.admit("u") {
        session.logged_in("u".into(), permit);
    }
    let mut frag = Fragmentizer::new(8192);
    frag.enqueue_bytes(data);
    let mut budget = 20;
    while frag.progress().is_some() && budget > 0 {
        if !frag.is_message_complete() {
            continue;
        }
        budget -= 1;
        let Ok(cmd) = frag.decode_message(&CommandCodec::default()) else { continue };
        let cmd = cmd.into_static();
        if matches!(
            cmd.body,
            CommandBody::Login { .. } | CommandBody::Authenticate { .. } | CommandBody::StartTLS | CommandBody::Idle
        ) {
            continue;
        }
        // Keep the scratch spool small: no writes that grow it without bound.
        if matches!(cmd.body, CommandBody::Append { .. } | CommandBody::Copy { .. } | CommandBody::Create { .. }) {
            continue;
        }
        let _ = session.handle(cmd);
    }
});
