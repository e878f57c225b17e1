//! A session's protocol state (RFC 3501 §3): who is logged in, which mailbox is selected
//! (its [`View`]), and what every command needs from it (the user's mailboxes, a mailbox by
//! name). The commands themselves live in `cmd/`, one file per group, and are dispatched
//! from `cmd/mod.rs`.
//!
//! Each selected-state command opens the mailbox anew (read or write lock, index
//! re-validated), works with the message numbers the client knows ([`View`]), and ends
//! with [`View::sync`]: what other sessions and hosts changed reaches the client now.

use std::sync::Arc;
use std::time::Duration;

use hamail_storage::Folders;
use imap_types::core::{Tag, Vec1};
use imap_types::mailbox::Mailbox;
use imap_types::response::{Capability, Code};

use super::names;
use super::reply::{code, folder_no, status, storage_no, Kind, Reply};
use super::view::View;
use crate::limits::UserPermit;
use crate::service::Services;

/// Everything the IMAP sessions of one agent share.
pub struct ImapContext {
    pub services: Arc<Services>,
    /// RFC 3501 §5.4 autologout timer.
    pub idle_timeout: Duration,
    /// Largest literal accepted (APPEND); the message size limit.
    pub max_literal: u32,
    /// How often IDLE looks at the spool for changes.
    pub idle_poll: Duration,
}

impl std::fmt::Debug for ImapContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapContext")
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub enum State {
    NotAuthenticated,
    Authenticated,
    Selected(Box<View>),
    Logout,
}

#[derive(Debug)]
pub struct Session {
    pub ctx: Arc<ImapContext>,
    pub state: State,
    pub user: Option<String>,
    _permit: Option<UserPermit>,
    pub tls: bool,
}

impl Session {
    pub fn new(ctx: Arc<ImapContext>, tls: bool) -> Session {
        Session {
            ctx,
            state: State::NotAuthenticated,
            user: None,
            _permit: None,
            tls,
        }
    }

    /// LOGIN and AUTHENTICATE are allowed (RFC 3501 §6.2.3 LOGINDISABLED otherwise).
    pub fn login_allowed(&self) -> bool {
        self.tls || self.ctx.services.allow_plaintext_auth
    }

    pub fn capabilities(&self) -> Vec1<Capability<'static>> {
        let mut caps = vec![
            Capability::Imap4Rev1,
            Capability::LiteralPlus,
            Capability::Idle,
        ];
        caps.extend([
            Capability::UidPlus,
            Capability::Namespace,
            Capability::Id,
            Capability::Unselect,
            Capability::Move,
        ]);
        if matches!(self.state, State::NotAuthenticated) {
            if !self.tls && self.ctx.services.tls.is_some() {
                caps.push(Capability::StartTls);
            }
            if self.login_allowed() {
                caps.push(Capability::Auth(imap_types::auth::AuthMechanism::Plain));
            } else {
                caps.push(Capability::LoginDisabled);
            }
        }
        Vec1::try_from(caps).unwrap_or_else(|_| Vec1::from(Capability::Imap4Rev1))
    }

    /// A successful login (the loop checked the password and the session limit).
    pub fn logged_in(&mut self, user: String, permit: UserPermit) {
        self.user = Some(user);
        self._permit = Some(permit);
        self.state = State::Authenticated;
    }

    /// Logged in (authenticated or selected state).
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated | State::Selected(_))
    }

    pub fn is_selected(&self) -> bool {
        matches!(self.state, State::Selected(_))
    }

    pub(super) fn user(&self) -> &str {
        self.user.as_deref().unwrap_or("")
    }

    pub(super) fn mailbox_name(&self, tag: &Tag<'_>, m: &Mailbox<'_>) -> Result<String, Reply> {
        names::decode_mailbox(m).map_err(|_| {
            Reply::one(status(
                Some(tag),
                Kind::No,
                Some(code("CANNOT")),
                "Invalid mailbox name",
            ))
        })
    }

    /// The logged-in user's mailboxes.
    pub(super) fn folders(&self, tag: &Tag<'_>) -> Result<Folders<'_>, Reply> {
        self.ctx
            .services
            .spool
            .folders(self.user())
            .map_err(|e| Reply::one(storage_no(tag, &e)))
    }

    /// The named mailbox if it exists; otherwise the NO the command must answer
    /// (`missing`: NONEXISTENT for SELECT/STATUS, TRYCREATE for APPEND/COPY/MOVE).
    pub(super) fn existing(
        &self,
        tag: &Tag<'_>,
        mailbox: &Mailbox<'_>,
        missing: Code<'static>,
    ) -> Result<(String, hamail_storage::Mailbox), Reply> {
        let name = self.mailbox_name(tag, mailbox)?;
        let folders = self.folders(tag)?;
        match folders.exists(&name) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Reply::one(status(
                    Some(tag),
                    Kind::No,
                    Some(missing),
                    "No such mailbox",
                )))
            }
            Err(e) => return Err(Reply::one(folder_no(tag, &e.into()))),
        }
        let mbox = folders
            .mailbox(&name)
            .map_err(|e| Reply::one(folder_no(tag, &e.into())))?;
        // INBOX exists before its first message: create the empty file, so that SELECT
        // and STATUS report the UIDVALIDITY it will keep.
        if name == "INBOX" && !mbox.exists() {
            mbox.write().map_err(|e| Reply::one(storage_no(tag, &e)))?;
        }
        Ok((name, mbox))
    }
}
