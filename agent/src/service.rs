//! What every protocol server of one agent shares: the spool, the account directory, the
//! failed-login limiter (guessing over POP3 counts for SMTP too), TLS, the connection
//! limits and the per-user session limit. Built once by `run.rs`; each protocol's context
//! (`SmtpContext`, `ImapContext`, `Pop3Context`) is this plus its own timeouts and limits.

use std::sync::Arc;

use hamail_storage::Spool;
use tokio_rustls::TlsAcceptor;

use crate::auth::{Directory, LoginLimiter};
use crate::limits::{ConnLimits, UserSessions};

pub struct Services {
    pub spool: Spool,
    pub directory: Arc<Directory>,
    pub limiter: Arc<LoginLimiter>,
    /// `None`: no certificate configured (no STARTTLS, no implicit-TLS ports).
    pub tls: Option<TlsAcceptor>,
    pub limits: Arc<ConnLimits>,
    /// A user's IMAP and POP3 sessions on this host.
    pub user_sessions: Arc<UserSessions>,
    /// AUTH/LOGIN without TLS (labs only).
    pub allow_plaintext_auth: bool,
    /// This host's name in banners and trace headers.
    pub hostname: String,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("spool", &self.spool.root())
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}
