//! The IMAP protocol states (RFC 3501 §3) and the commands that work on mail. A
//! [`Session`] is driven by the connection loop (`server.rs`), which handles the parts
//! that need the network or the async directory (LOGIN, AUTHENTICATE, STARTTLS, IDLE) and
//! runs everything else through [`Session::handle`] on the blocking pool, because every
//! mailbox command takes spool locks and reads files (NFS).
//!
//! Each selected-state command opens the mailbox anew (read or write lock, index
//! re-validated), works with the message numbers the client knows ([`View`]), and ends
//! with [`View::sync`]: what other sessions and hosts changed reaches the client now.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use hamail_storage::index::Index;
use hamail_storage::mbox::NewMessage;
use hamail_storage::{Flags, Spool, StorageError};
use imap_types::command::{Command, CommandBody};
use imap_types::core::{Charset, IString, NString, Tag, Vec1};
use imap_types::extensions::binary::LiteralOrLiteral8;
use imap_types::extensions::namespace::Namespace;
use imap_types::extensions::uidplus::{UidElement, UidSet};
use imap_types::fetch::MacroOrMessageDataItemNames;
use imap_types::flag::{Flag, FlagNameAttribute, StoreResponse, StoreType};
use imap_types::mailbox::{ListMailbox, Mailbox};
use imap_types::response::{Capability, Code, CodeOther, Data, Response, Status};
use imap_types::search::SearchKey;
use imap_types::sequence::{Sequence, SequenceSet};
use imap_types::status::{StatusDataItem, StatusDataItemName};
use imap_types::IntoStatic;

use super::fetch::{self, Plan, Subject};
use super::names;
use super::search;
use super::view::{flags_response, Expunges, View};
use crate::auth::{Directory, LoginLimiter};
use crate::limits::{ConnLimits, UserPermit, UserSessions};
use hamail_storage::{FolderError, Folders};

/// Everything the IMAP sessions of one agent share.
pub struct ImapContext {
    pub spool: Spool,
    pub directory: Arc<Directory>,
    pub limiter: Arc<LoginLimiter>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub limits: Arc<ConnLimits>,
    pub user_sessions: Arc<UserSessions>,
    pub allow_plaintext_auth: bool,
    pub hostname: String,
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
            .field("spool", &self.spool.root())
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

/// What a command produced.
#[derive(Debug, Default)]
pub struct Reply {
    /// Already-encoded responses sent before `responses` (the FETCH fast path).
    pub raw: Vec<u8>,
    pub responses: Vec<Response<'static>>,
    /// Close the connection after sending (LOGOUT, UIDVALIDITY change).
    pub close: bool,
}

impl Reply {
    fn one(r: Response<'static>) -> Reply {
        Reply {
            raw: Vec::new(),
            responses: vec![r],
            close: false,
        }
    }
}

#[derive(Debug)]
pub struct Session {
    pub ctx: Arc<ImapContext>,
    pub state: State,
    pub user: Option<String>,
    _permit: Option<UserPermit>,
    pub tls: bool,
}

/// A response as bytes on the wire.
pub fn encode(r: &Response<'_>) -> Vec<u8> {
    use imap_codec::encode::Encoder;
    imap_codec::ResponseCodec::default().encode(r).dump()
}

/// Tagged and untagged status responses; texts are ours, so they always validate.
pub fn status(
    tag: Option<&Tag<'_>>,
    kind: Kind,
    code: Option<Code<'static>>,
    text: &str,
) -> Response<'static> {
    let tag = tag.map(|t| t.clone().into_static());
    let text = if text.is_empty() { "." } else { text };
    let s = match kind {
        Kind::Ok => Status::ok(tag, code, text.to_string()),
        Kind::No => Status::no(tag, code, text.to_string()),
        Kind::Bad => Status::bad(tag, code, text.to_string()),
    };
    Response::Status(s.unwrap_or_else(|_| {
        Status::Untagged(imap_types::response::StatusBody {
            kind: imap_types::response::StatusKind::Bad,
            code: None,
            text: imap_types::core::Text::unvalidated("internal error".to_string()),
        })
    }))
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Ok,
    No,
    Bad,
}

/// A response code that imap-types has no variant for (RFC 5530 codes and friends).
pub fn code(name: &'static str) -> Code<'static> {
    Code::Other(CodeOther::unvalidated(name.as_bytes()))
}

fn storage_no(tag: &Tag<'_>, e: &StorageError) -> Response<'static> {
    if let StorageError::InvalidName { reason, .. } = e {
        // The client's request, not the store, is the problem (permanent): a keyword the
        // mailbox has no room for, or a name the spool cannot hold.
        let kind = if reason.contains("keyword") {
            "LIMIT"
        } else {
            "CANNOT"
        };
        return status(Some(tag), Kind::No, Some(code(kind)), reason);
    }
    tracing::warn!(error = %e, "IMAP command failed on the spool");
    if matches!(e, StorageError::NoSpace { .. }) {
        return status(
            Some(tag),
            Kind::No,
            Some(code("OVERQUOTA")),
            "No space left on the mail store, try again later",
        );
    }
    status(
        Some(tag),
        Kind::No,
        Some(code("UNAVAILABLE")),
        "Mail store temporarily unavailable, try again",
    )
}

fn folder_no(tag: &Tag<'_>, e: &FolderError) -> Response<'static> {
    match e {
        FolderError::AlreadyExists => status(
            Some(tag),
            Kind::No,
            Some(code("ALREADYEXISTS")),
            "Mailbox already exists",
        ),
        FolderError::NonExistent => status(
            Some(tag),
            Kind::No,
            Some(code("NONEXISTENT")),
            "No such mailbox",
        ),
        FolderError::ParentIsMailbox | FolderError::HasChildren | FolderError::InboxIsPermanent => {
            status(Some(tag), Kind::No, Some(code("CANNOT")), &e.to_string())
        }
        FolderError::Storage(StorageError::InvalidName { .. }) => status(
            Some(tag),
            Kind::No,
            Some(code("CANNOT")),
            "Invalid mailbox name",
        ),
        FolderError::Storage(e) => storage_no(tag, e),
    }
}

/// Does `set` (with `*` = `largest`) contain `v`?
pub fn set_contains(set: &SequenceSet, v: u32, largest: NonZeroU32) -> bool {
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(x) => x.expand(largest).get() == v,
        Sequence::Range(a, b) => {
            let (a, b) = (a.expand(largest).get(), b.expand(largest).get());
            a.min(b) <= v && v <= a.max(b)
        }
    })
}

/// `(seq, uid)` of the messages `set` names in `view`, in order, each once.
fn resolve(view: &View, set: &SequenceSet, uid: bool) -> Vec<(u32, u32)> {
    view.resolve(set, uid)
}

/// A set listing ascending `uids`, runs folded into ranges (for UIDPLUS responses, where
/// source and destination sets correspond in order).
fn uid_set(uids: &[u32]) -> Option<UidSet> {
    let mut elems = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        let a = NonZeroU32::new(start)?;
        elems.push(match NonZeroU32::new(end) {
            Some(b) if b != a => UidElement::Range(a, b),
            _ => UidElement::Single(a),
        });
        i += 1;
    }
    Some(UidSet(Vec1::try_from(elems).ok()?))
}

fn flags_and_keywords(flags: &[Flag<'_>]) -> (Flags, Vec<String>) {
    let mut f = Flags::empty();
    let mut k = Vec::new();
    for flag in flags {
        match flag {
            Flag::Seen => f.insert(Flags::SEEN),
            Flag::Answered => f.insert(Flags::ANSWERED),
            Flag::Flagged => f.insert(Flags::FLAGGED),
            Flag::Deleted => f.insert(Flags::DELETED),
            Flag::Draft => f.insert(Flags::DRAFT),
            Flag::Keyword(atom) => {
                let name = atom.as_ref().to_string();
                if !k.contains(&name) {
                    k.push(name);
                }
            }
            // \Recent and unknown system flags cannot be set.
            _ => {}
        }
    }
    (f, k)
}

/// `NIL` lexes as an atom, but in a flag list it is the nil of the grammar, and a client
/// shown `FLAGS (NIL)` cannot tell a keyword from nothing: refused (as Dovecot does).
fn nil_keyword(tag: &Tag<'_>, flags: &[Flag<'_>]) -> Option<Reply> {
    flags
        .iter()
        .any(|f| matches!(f, Flag::Keyword(k) if k.as_ref().eq_ignore_ascii_case("NIL")))
        .then(|| {
            Reply::one(status(
                Some(tag),
                Kind::Bad,
                None,
                "NIL is not a valid keyword",
            ))
        })
}

fn keyword_names(index: &Index, bits: u64) -> Vec<String> {
    index
        .keyword_names(bits)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// The sender for the `From ` line of a copied or appended message: its Return-Path.
fn envelope_sender(data: &[u8]) -> String {
    let head_end = memchr::memmem::find(data, b"\n\n").unwrap_or(data.len());
    for line in data[..head_end].split(|b| *b == b'\n') {
        if line.len() > 12 && line[..12].eq_ignore_ascii_case(b"return-path:") {
            let v = String::from_utf8_lossy(&line[12..]);
            return v
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .trim()
                .to_string();
        }
    }
    String::new()
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
        self.tls || self.ctx.allow_plaintext_auth
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
            if !self.tls && self.ctx.tls.is_some() {
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

    pub fn is_selected(&self) -> bool {
        matches!(self.state, State::Selected(_))
    }

    /// Everything but LOGIN, AUTHENTICATE, STARTTLS and IDLE.
    pub fn handle(&mut self, cmd: Command<'static>) -> Reply {
        let tag = cmd.tag;
        let authenticated = !matches!(self.state, State::NotAuthenticated | State::Logout);
        match cmd.body {
            CommandBody::Capability => Reply {
                raw: Vec::new(),
                responses: vec![
                    Response::Data(Data::Capability(self.capabilities())),
                    status(Some(&tag), Kind::Ok, None, "CAPABILITY completed"),
                ],
                close: false,
            },
            CommandBody::Noop | CommandBody::Check => self.noop(&tag),
            CommandBody::Logout => {
                self.state = State::Logout;
                Reply {
                    raw: Vec::new(),
                    responses: vec![
                        Response::Status(
                            Status::bye(None, "Logging out".to_string())
                                .unwrap_or_else(|_| unreachable_bye()),
                        ),
                        status(Some(&tag), Kind::Ok, None, "LOGOUT completed"),
                    ],
                    close: true,
                }
            }
            CommandBody::Id { .. } => Reply {
                raw: Vec::new(),
                responses: vec![
                    Response::Data(Data::Id {
                        parameters: Some(vec![
                            (istr("name"), NString(Some(istr("hamail")))),
                            (
                                istr("version"),
                                NString(Some(istr(env!("CARGO_PKG_VERSION")))),
                            ),
                        ]),
                    }),
                    status(Some(&tag), Kind::Ok, None, "ID completed"),
                ],
                close: false,
            },
            _ if !authenticated => Reply::one(status(Some(&tag), Kind::Bad, None, "Log in first")),
            CommandBody::Namespace => Reply {
                raw: Vec::new(),
                responses: vec![
                    Response::Data(Data::Namespace {
                        personal: vec![Namespace {
                            prefix: istr(""),
                            delimiter: imap_types::core::QuotedChar::try_from('/').ok(),
                            extensions: Vec::new(),
                        }],
                        other: Vec::new(),
                        shared: Vec::new(),
                    }),
                    status(Some(&tag), Kind::Ok, None, "NAMESPACE completed"),
                ],
                close: false,
            },
            CommandBody::Select { mailbox, .. } => self.select(&tag, &mailbox, false),
            CommandBody::Examine { mailbox, .. } => self.select(&tag, &mailbox, true),
            CommandBody::Create { mailbox } => self.create(&tag, &mailbox),
            CommandBody::Delete { mailbox } => self.delete(&tag, &mailbox),
            CommandBody::Rename { from, to } => self.rename(&tag, &from, &to),
            CommandBody::Subscribe { mailbox } => {
                self.folder_op(&tag, &mailbox, |f, n| Ok(f.set_subscribed(n, true)?))
            }
            CommandBody::Unsubscribe { mailbox } => {
                self.folder_op(&tag, &mailbox, |f, n| Ok(f.set_subscribed(n, false)?))
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => self.list(&tag, &reference, &mailbox_wildcard, false),
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => self.list(&tag, &reference, &mailbox_wildcard, true),
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status_cmd(&tag, &mailbox, &item_names),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => self.append(&tag, &mailbox, &flags, date, message),
            _ if !self.is_selected() => {
                Reply::one(status(Some(&tag), Kind::Bad, None, "No mailbox selected"))
            }
            CommandBody::Close => self.close(&tag, true),
            CommandBody::Unselect => self.close(&tag, false),
            CommandBody::Expunge => self.expunge(&tag, None),
            CommandBody::ExpungeUid { sequence_set } => self.expunge(&tag, Some(&sequence_set)),
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => self.search(&tag, charset.as_ref(), criteria.as_ref(), uid),
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => self.fetch(&tag, &sequence_set, &macro_or_item_names, uid),
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            } => self.store(&tag, &sequence_set, kind, response, &flags, uid),
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&tag, &sequence_set, &mailbox, uid, false),
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => self.copy(&tag, &sequence_set, &mailbox, uid, true),
            _ => Reply::one(status(Some(&tag), Kind::Bad, None, "Command not supported")),
        }
    }

    fn user(&self) -> &str {
        self.user.as_deref().unwrap_or("")
    }

    /// Bring the selected view up to date (NOOP, CHECK, IDLE polls).
    pub fn noop(&mut self, tag: &Tag<'_>) -> Reply {
        let mut reply = self.poll();
        reply
            .responses
            .push(status(Some(tag), Kind::Ok, None, "Completed"));
        reply
    }

    /// Untagged updates only (used by IDLE as well).
    pub fn poll(&mut self) -> Reply {
        let mut out = Vec::new();
        let State::Selected(view) = &mut self.state else {
            return Reply::default();
        };
        match view.read() {
            Ok(rs) => {
                if view.sync(rs.index(), Expunges::Announce, &mut out).is_err() {
                    return validity_changed();
                }
            }
            Err(e) => tracing::warn!(error = %e, "poll failed"),
        }
        Reply {
            raw: Vec::new(),
            responses: out,
            close: false,
        }
    }

    fn mailbox_name(&self, tag: &Tag<'_>, m: &Mailbox<'_>) -> Result<String, Reply> {
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
    fn folders(&self, tag: &Tag<'_>) -> Result<Folders<'_>, Reply> {
        self.ctx
            .spool
            .folders(self.user())
            .map_err(|e| Reply::one(storage_no(tag, &e)))
    }

    /// The named mailbox if it exists; otherwise the NO the command must answer
    /// (`missing`: NONEXISTENT for SELECT/STATUS, TRYCREATE for APPEND/COPY/MOVE).
    fn existing(
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

    fn select(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>, read_only: bool) -> Reply {
        // RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected.
        self.state = State::Authenticated;
        let (name, mbox) = match self.existing(tag, mailbox, code("NONEXISTENT")) {
            Ok(found) => found,
            Err(r) => return r,
        };
        // The index read here stays with the view, so the next command on an unchanged
        // mailbox reads only the index header.
        let mut cache = None;
        let rs = match mbox.read_cached(&mut cache) {
            Ok(rs) => rs,
            Err(e) => return Reply::one(storage_no(tag, &e)),
        };
        let index = rs.index();
        let mut view = match View::open(mbox.clone(), name, read_only, index) {
            Ok(v) => v,
            Err(e) => return Reply::one(storage_no(tag, &e)),
        };
        let [flags, permanent] = super::view::flags_responses(&index.keywords, read_only);
        let mut out = vec![
            flags,
            Response::Data(Data::Exists(view.exists())),
            Response::Data(Data::Recent(view.recent_count())),
        ];
        if let Some(seq) = index
            .visible()
            .position(|m| !m.flags.contains(Flags::SEEN))
            .and_then(|i| NonZeroU32::new(i as u32 + 1))
        {
            out.push(status(
                None,
                Kind::Ok,
                Some(Code::Unseen(seq)),
                "First unseen",
            ));
        }
        out.push(permanent);
        if let Some(v) = NonZeroU32::new(index.uidvalidity) {
            out.push(status(
                None,
                Kind::Ok,
                Some(Code::UidValidity(v)),
                "UIDs valid",
            ));
        }
        if let Some(n) = NonZeroU32::new(index.uidnext) {
            out.push(status(
                None,
                Kind::Ok,
                Some(Code::UidNext(n)),
                "Predicted next UID",
            ));
        }
        let (c, text) = if read_only {
            (Code::ReadOnly, "EXAMINE completed")
        } else {
            (Code::ReadWrite, "SELECT completed")
        };
        out.push(status(Some(tag), Kind::Ok, Some(c), text));
        drop(rs);
        view.keep_cache(cache);
        self.state = State::Selected(Box::new(view));
        Reply {
            raw: Vec::new(),
            responses: out,
            close: false,
        }
    }

    fn close(&mut self, tag: &Tag<'_>, expunge: bool) -> Reply {
        if let State::Selected(view) = &self.state {
            if expunge && !view.read_only {
                // RFC 3501 §6.4.2: expunge silently.
                if let Err(e) = view.mailbox.write().and_then(|mut ws| ws.expunge_deleted()) {
                    return Reply::one(storage_no(tag, &e));
                }
            }
        }
        self.state = State::Authenticated;
        Reply::one(status(Some(tag), Kind::Ok, None, "Completed"))
    }

    fn folder_op(
        &mut self,
        tag: &Tag<'_>,
        mailbox: &Mailbox<'_>,
        op: impl FnOnce(&Folders<'_>, &str) -> Result<(), FolderError>,
    ) -> Reply {
        let name = match self.mailbox_name(tag, mailbox) {
            Ok(n) => n,
            Err(r) => return r,
        };
        let folders = match self.folders(tag) {
            Ok(f) => f,
            Err(r) => return r,
        };
        match op(&folders, &name) {
            Ok(()) => Reply::one(status(Some(tag), Kind::Ok, None, "Completed")),
            Err(e) => Reply::one(folder_no(tag, &e)),
        }
    }

    /// CREATE; a trailing delimiter makes a hierarchy level (RFC 3501 §6.3.3).
    fn create(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>) -> Reply {
        let wire: &[u8] = match mailbox {
            Mailbox::Inbox => b"INBOX",
            Mailbox::Other(o) => o.inner().as_ref(),
        };
        let level = wire.len() > 1 && wire.ends_with(b"/");
        let name = match names::decode_name(wire.strip_suffix(b"/").unwrap_or(wire)) {
            Ok(n) => n,
            Err(_) => {
                return Reply::one(status(
                    Some(tag),
                    Kind::No,
                    Some(code("CANNOT")),
                    "Invalid mailbox name",
                ))
            }
        };
        let name = if level { format!("{name}/") } else { name };
        let folders = match self.folders(tag) {
            Ok(f) => f,
            Err(r) => return r,
        };
        match folders.create(&name) {
            Ok(()) => Reply::one(status(Some(tag), Kind::Ok, None, "CREATE completed")),
            Err(e) => Reply::one(folder_no(tag, &e)),
        }
    }

    fn delete(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>) -> Reply {
        let name = match self.mailbox_name(tag, mailbox) {
            Ok(n) => n,
            Err(r) => return r,
        };
        if matches!(&self.state, State::Selected(v) if v.name == name) {
            self.state = State::Authenticated;
        }
        self.folder_op(tag, mailbox, |f, n| f.delete(n))
    }

    fn rename(&mut self, tag: &Tag<'_>, from: &Mailbox<'_>, to: &Mailbox<'_>) -> Reply {
        let (from, to) = match (self.mailbox_name(tag, from), self.mailbox_name(tag, to)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        let folders = match self.folders(tag) {
            Ok(f) => f,
            Err(r) => return r,
        };
        if from == "INBOX" {
            // RFC 3501 §6.3.5: move INBOX's messages, leave it empty.
            if let Err(e) = folders.create(&to) {
                return Reply::one(folder_no(tag, &e));
            }
            return match self.move_all_from_inbox(&folders, &to) {
                Ok(()) => Reply::one(status(Some(tag), Kind::Ok, None, "Completed")),
                Err(e) => Reply::one(storage_no(tag, &e)),
            };
        }
        match folders.rename(&from, &to) {
            Ok(()) => Reply::one(status(Some(tag), Kind::Ok, None, "Completed")),
            Err(e) => Reply::one(folder_no(tag, &e)),
        }
    }

    fn move_all_from_inbox(&self, folders: &Folders<'_>, to: &str) -> Result<(), StorageError> {
        let inbox = self.ctx.spool.inbox(self.user())?;
        if !inbox.exists() {
            return Ok(());
        }
        let (msgs, uids) = {
            let rs = inbox.read()?;
            let metas: Vec<_> = rs.index().visible().cloned().collect();
            let mut msgs = Vec::with_capacity(metas.len());
            for m in &metas {
                msgs.push(copy_of(rs.index(), m, rs.read_message(m)?));
            }
            (msgs, metas.iter().map(|m| m.uid).collect::<Vec<_>>())
        };
        if !msgs.is_empty() {
            folders.mailbox(to)?.append(&msgs)?;
            inbox.write()?.expunge(&uids)?;
        }
        Ok(())
    }

    fn list(
        &mut self,
        tag: &Tag<'_>,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
    ) -> Reply {
        let reference = match reference {
            Mailbox::Inbox => "INBOX".to_string(),
            Mailbox::Other(o) => String::from_utf8_lossy(o.inner().as_ref()).into_owned(),
        };
        let pattern = match pattern {
            ListMailbox::Token(t) => String::from_utf8_lossy(t.as_ref()).into_owned(),
            ListMailbox::String(s) => String::from_utf8_lossy(s.as_ref()).into_owned(),
        };
        let delimiter = imap_types::core::QuotedChar::try_from('/').ok();
        let mut out = Vec::new();
        if pattern.is_empty() && !lsub {
            // RFC 3501 §6.3.8: the hierarchy delimiter and root.
            out.push(Response::Data(Data::List {
                items: vec![FlagNameAttribute::Noselect],
                delimiter,
                mailbox: Mailbox::try_from("").unwrap_or(Mailbox::Inbox),
            }));
        } else {
            let folders = match self.folders(tag) {
                Ok(f) => f,
                Err(r) => return r,
            };
            let entries = folders.list();
            let matches = |name: &str| {
                names::list_matches(&reference, &pattern, &names::encode_mailbox(name))
            };
            let attributes = |name: &str| {
                let mut items = Vec::new();
                match entries.iter().find(|e| e.name == name) {
                    Some(e) if e.noselect => items.push(FlagNameAttribute::Noselect),
                    Some(e) if e.name != "INBOX" => items.push(FlagNameAttribute::Noinferiors),
                    _ => {}
                }
                items
            };
            let mut found: Vec<(String, Vec<FlagNameAttribute<'static>>)> = Vec::new();
            if lsub {
                // Subscribed names, whether or not the mailbox exists now (RFC 3501
                // §6.3.6: the server never drops a subscription on its own).
                let subs = folders.subscriptions();
                for sub in &subs {
                    if matches(sub) {
                        if !found.iter().any(|(n, _)| n == sub) {
                            found.push((sub.clone(), attributes(sub)));
                        }
                        continue;
                    }
                    // §6.3.9: with `%`, an unsubscribed parent of a subscribed name that
                    // the pattern reaches is returned \Noselect in its place.
                    if !pattern.contains('%') {
                        continue;
                    }
                    let levels: Vec<usize> = sub.match_indices('/').map(|(i, _)| i).collect();
                    for at in levels {
                        let parent = &sub[..at];
                        if matches(parent)
                            && !subs.iter().any(|s| s == parent)
                            && !found.iter().any(|(n, _)| n == parent)
                        {
                            found.push((parent.to_string(), vec![FlagNameAttribute::Noselect]));
                        }
                    }
                }
            } else {
                for e in &entries {
                    if matches(&e.name) {
                        found.push((e.name.clone(), attributes(&e.name)));
                    }
                }
            }
            for (name, items) in found {
                let Ok(mailbox) = Mailbox::try_from(names::encode_mailbox(&name)) else {
                    continue;
                };
                let mailbox = mailbox.into_static();
                out.push(Response::Data(if lsub {
                    Data::Lsub {
                        items,
                        delimiter,
                        mailbox,
                    }
                } else {
                    Data::List {
                        items,
                        delimiter,
                        mailbox,
                    }
                }));
            }
        }
        out.push(status(
            Some(tag),
            Kind::Ok,
            None,
            if lsub {
                "LSUB completed"
            } else {
                "LIST completed"
            },
        ));
        Reply {
            raw: Vec::new(),
            responses: out,
            close: false,
        }
    }

    fn status_cmd(
        &mut self,
        tag: &Tag<'_>,
        mailbox: &Mailbox<'_>,
        items: &[StatusDataItemName],
    ) -> Reply {
        let (name, mbox) = match self.existing(tag, mailbox, code("NONEXISTENT")) {
            Ok(found) => found,
            Err(r) => return r,
        };
        let (messages, unseen, uidnext, uidvalidity, max_uid_recent) = if mbox.exists() {
            match mbox.read() {
                Ok(rs) => {
                    let idx = rs.index();
                    let wm = mbox.recent_watermark();
                    let vis: Vec<_> = idx.visible().collect();
                    (
                        vis.len() as u32,
                        vis.iter()
                            .filter(|m| !m.flags.contains(Flags::SEEN))
                            .count() as u32,
                        idx.uidnext,
                        idx.uidvalidity,
                        vis.iter().filter(|m| m.uid > wm).count() as u32,
                    )
                }
                Err(e) => return Reply::one(storage_no(tag, &e)),
            }
        } else {
            (0, 0, 1, 1, 0)
        };
        let mut data = Vec::new();
        for item in items {
            data.push(match item {
                StatusDataItemName::Messages => StatusDataItem::Messages(messages),
                StatusDataItemName::Recent => StatusDataItem::Recent(max_uid_recent),
                StatusDataItemName::UidNext => {
                    StatusDataItem::UidNext(NonZeroU32::new(uidnext).unwrap_or(NonZeroU32::MIN))
                }
                StatusDataItemName::UidValidity => StatusDataItem::UidValidity(
                    NonZeroU32::new(uidvalidity).unwrap_or(NonZeroU32::MIN),
                ),
                StatusDataItemName::Unseen => StatusDataItem::Unseen(unseen),
                _ => continue,
            });
        }
        let Ok(mailbox) = Mailbox::try_from(names::encode_mailbox(&name)) else {
            return Reply::one(status(Some(tag), Kind::No, None, "Invalid mailbox name"));
        };
        Reply {
            raw: Vec::new(),
            responses: vec![
                Response::Data(Data::Status {
                    mailbox: mailbox.into_static(),
                    items: data.into(),
                }),
                status(Some(tag), Kind::Ok, None, "STATUS completed"),
            ],
            close: false,
        }
    }

    fn append(
        &mut self,
        tag: &Tag<'_>,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<imap_types::datetime::DateTime>,
        message: LiteralOrLiteral8<'_>,
    ) -> Reply {
        if let Some(bad) = nil_keyword(tag, flags) {
            return bad;
        }
        let (_, mbox) = match self.existing(tag, mailbox, Code::TryCreate) {
            Ok(found) => found,
            Err(r) => return r,
        };
        let bytes = match &message {
            LiteralOrLiteral8::Literal(l) => l.data(),
            LiteralOrLiteral8::Literal8(l) => l.data.as_ref(),
        };
        let data = crate::delivery::crlf_to_lf(bytes);
        let (f, keywords) = flags_and_keywords(flags);
        let mut msg = NewMessage::new(&envelope_sender(&data), data);
        msg.flags = f;
        msg.keywords = keywords;
        if let Some(d) = date {
            msg.date = d.as_ref().timestamp();
        }
        let appended = match mbox.append(std::slice::from_ref(&msg)) {
            Ok(a) => a,
            Err(e) => return Reply::one(storage_no(tag, &e)),
        };
        let mut reply = self.after_change();
        let c = match (
            NonZeroU32::new(appended.uidvalidity),
            NonZeroU32::new(appended.first_uid),
        ) {
            (Some(uidvalidity), Some(uid)) => Some(Code::AppendUid {
                uid_validity: uidvalidity,
                uid,
            }),
            _ => None,
        };
        reply
            .responses
            .push(status(Some(tag), Kind::Ok, c, "APPEND completed"));
        reply
    }

    /// After APPEND/COPY into possibly the selected mailbox: report what is new.
    fn after_change(&mut self) -> Reply {
        if self.is_selected() {
            self.poll()
        } else {
            Reply::default()
        }
    }

    fn fetch(
        &mut self,
        tag: &Tag<'_>,
        set: &SequenceSet,
        items: &MacroOrMessageDataItemNames<'_>,
        uid: bool,
    ) -> Reply {
        let State::Selected(view) = &mut self.state else {
            return Reply::default();
        };
        let plan = Plan::new(items, uid);
        let mut raw = Vec::new();
        let targets = resolve(view, set, uid);
        let mut out = Vec::new();
        let mut missing = false;
        let set_seen = plan.sets_seen && !view.read_only;
        let result = (|| -> Result<(), StorageError> {
            let mut changed = Vec::new();
            let mut rs = view.read()?;
            // \Seen is set under the write lock, which is let go before the (possibly
            // long) reading, so deliveries are not held up by a big FETCH. Only taken when
            // some message lacks \Seen in the index just validated under the read lock;
            // otherwise setting it is a no-op at that point and the read lock suffices.
            if set_seen && lacks_seen(rs.index(), &targets) {
                drop(rs);
                changed = set_seen_flags(view, &targets)?;
                rs = view.read()?;
            }
            // Keywords set meanwhile (here or on another host) are announced first; the
            // FETCH lines may be written straight to `raw`, which goes out before `out`.
            let mut announce = Vec::new();
            view.announce_keywords(rs.index(), &mut announce);
            for r in &announce {
                raw.extend_from_slice(&encode(r));
            }
            missing = emit_fetch(
                view,
                &plan,
                &targets,
                rs.index(),
                &changed,
                &mut out,
                &mut raw,
                |m| rs.read_message(m),
            )?;
            sync(view, rs.index(), uid, &mut out)
        })();
        let mut reply = finish(tag, out, result, missing, "FETCH completed");
        reply.raw = raw;
        reply
    }

    fn store(
        &mut self,
        tag: &Tag<'_>,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
    ) -> Reply {
        let State::Selected(view) = &mut self.state else {
            return Reply::default();
        };
        if view.read_only {
            return Reply::one(status(
                Some(tag),
                Kind::No,
                Some(Code::ReadOnly),
                "Mailbox is read-only",
            ));
        }
        if let Some(bad) = nil_keyword(tag, flags) {
            return bad;
        }
        let (f, k) = flags_and_keywords(flags);
        let targets = resolve(view, set, uid);
        let mut out = Vec::new();
        let mut missing = false;
        let result = (|| -> Result<(), StorageError> {
            let mut ws = view.mailbox.write()?;
            let mut changes = Vec::new();
            for (_, u) in &targets {
                let Some(m) = ws.index().by_uid(*u) else {
                    missing = true;
                    continue;
                };
                let old_k = keyword_names(ws.index(), m.keywords);
                let (nf, nk) = match kind {
                    StoreType::Replace => (f, k.clone()),
                    StoreType::Add => {
                        let mut nk = old_k.clone();
                        nk.extend(k.iter().filter(|x| !old_k.contains(x)).cloned());
                        (m.flags | f, nk)
                    }
                    StoreType::Remove => (
                        Flags(m.flags.0 & !f.0),
                        old_k.iter().filter(|x| !k.contains(x)).cloned().collect(),
                    ),
                };
                changes.push((*u, nf, nk));
            }
            if !changes.is_empty() {
                ws.set_flags(&changes)?;
            }
            // A keyword new to the mailbox is announced before the FETCH that carries it.
            view.announce_keywords(ws.index(), &mut out);
            for (u, nf, nk) in &changes {
                let Some(seq) = view.seq_of(*u) else { continue };
                if response == StoreResponse::Answer {
                    out.push(flags_response(
                        seq,
                        *nf,
                        nk,
                        view.is_recent(*u),
                        uid.then_some(*u),
                    ));
                }
                view.set_known(*u, *nf, nk.clone());
            }
            sync(view, ws.index(), uid, &mut out)
        })();
        finish(tag, out, result, missing, "STORE completed")
    }

    fn expunge(&mut self, tag: &Tag<'_>, only: Option<&SequenceSet>) -> Reply {
        let State::Selected(view) = &mut self.state else {
            return Reply::default();
        };
        if view.read_only {
            return Reply::one(status(
                Some(tag),
                Kind::No,
                Some(Code::ReadOnly),
                "Mailbox is read-only",
            ));
        }
        let allowed: Option<Vec<u32>> = only.map(|set| {
            resolve(view, set, true)
                .into_iter()
                .map(|(_, u)| u)
                .collect()
        });
        let mut out = Vec::new();
        let result = (|| -> Result<(), StorageError> {
            let mut ws = view.mailbox.write()?;
            let uids: Vec<u32> = ws
                .index()
                .visible()
                .filter(|m| m.flags.contains(Flags::DELETED))
                .filter(|m| allowed.as_ref().is_none_or(|a| a.contains(&m.uid)))
                .map(|m| m.uid)
                .collect();
            if !uids.is_empty() {
                ws.expunge(&uids)?;
            }
            if view.sync(ws.index(), Expunges::Announce, &mut out).is_err() {
                return Err(validity_error());
            }
            Ok(())
        })();
        finish(tag, out, result, false, "EXPUNGE completed")
    }

    fn search(
        &mut self,
        tag: &Tag<'_>,
        charset: Option<&Charset<'_>>,
        keys: &[SearchKey<'_>],
        uid: bool,
    ) -> Reply {
        if let Some(cs) = charset {
            let name = match cs {
                Charset::Atom(a) => a.as_ref().to_string(),
                Charset::Quoted(q) => q.as_ref().to_string(),
            };
            if !["UTF-8", "US-ASCII"]
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&name))
            {
                let allowed = ["UTF-8", "US-ASCII"]
                    .iter()
                    .filter_map(|c| Charset::try_from(*c).ok().map(|c| c.into_static()))
                    .collect();
                return Reply::one(status(
                    Some(tag),
                    Kind::No,
                    Some(Code::BadCharset { allowed }),
                    "Unsupported charset",
                ));
            }
        }
        let State::Selected(view) = &mut self.state else {
            return Reply::default();
        };
        let mut out = Vec::new();
        let result = (|| -> Result<(), StorageError> {
            let rs = view.read()?;
            let index = rs.index();
            let metas: Vec<_> = view
                .uids
                .iter()
                .enumerate()
                .filter_map(|(i, u)| index.by_uid(*u).map(|m| (i as u32 + 1, m)))
                .collect();
            let kw: Vec<Vec<&str>> = metas
                .iter()
                .map(|(_, m)| index.keyword_names(m.keywords))
                .collect();
            let cands: Vec<search::Candidate<'_>> = metas
                .iter()
                .zip(kw)
                .map(|((seq, m), keywords)| search::Candidate {
                    seq: *seq,
                    uid: m.uid,
                    flags: m.flags,
                    keywords,
                    recent: view.is_recent(m.uid),
                    internal_date: m.date,
                    size: m.crlf_size(),
                })
                .collect();
            let ctx = search::Context {
                max_seq: view.exists(),
                max_uid: view.uids.last().copied().unwrap_or(0),
            };
            struct L<'s> {
                rs: &'s hamail_storage::mbox::ReadSession,
            }
            impl search::Loader for L<'_> {
                fn message(&mut self, uid: u32) -> Option<Vec<u8>> {
                    let m = self.rs.index().by_uid(uid)?;
                    self.rs.read_message(m).ok().map(|b| fetch::to_crlf(&b))
                }
            }
            let hits = search::search(keys, &cands, &ctx, &mut L { rs: &rs });
            let ids: Vec<NonZeroU32> = hits
                .into_iter()
                .filter_map(|i| cands.get(i))
                .filter_map(|c| NonZeroU32::new(if uid { c.uid } else { c.seq }))
                .collect();
            out.push(Response::Data(Data::Search(ids)));
            sync(view, index, uid, &mut out)
        })();
        finish(tag, out, result, false, "SEARCH completed")
    }

    fn copy(
        &mut self,
        tag: &Tag<'_>,
        set: &SequenceSet,
        mailbox: &Mailbox<'_>,
        uid: bool,
        moving: bool,
    ) -> Reply {
        let (_, dest) = match self.existing(tag, mailbox, Code::TryCreate) {
            Ok(found) => found,
            Err(r) => return r,
        };
        let State::Selected(view) = &mut self.state else {
            return Reply::default();
        };
        if moving && view.read_only {
            return Reply::one(status(
                Some(tag),
                Kind::No,
                Some(Code::ReadOnly),
                "Mailbox is read-only",
            ));
        }
        let targets = resolve(view, set, uid);
        let mut out = Vec::new();
        let mut copyuid = None;
        let result = (|| -> Result<(), StorageError> {
            // Read, let go, then append: never two mailbox locks at once.
            let (msgs, src_uids) = {
                let rs = view.read()?;
                let mut msgs = Vec::new();
                let mut uids = Vec::new();
                for (_, u) in &targets {
                    if let Some(m) = rs.index().by_uid(*u) {
                        msgs.push(copy_of(rs.index(), m, rs.read_message(m)?));
                        uids.push(*u);
                    }
                }
                (msgs, uids)
            };
            if msgs.is_empty() {
                return Ok(());
            }
            let a = dest.append(&msgs)?;
            let dest_uids: Vec<u32> = (a.first_uid..a.first_uid + a.count).collect();
            if let (Some(v), Some(s), Some(d)) = (
                NonZeroU32::new(a.uidvalidity),
                uid_set(&src_uids),
                uid_set(&dest_uids),
            ) {
                copyuid = Some(Code::CopyUid {
                    uid_validity: v,
                    source: s,
                    destination: d,
                });
            }
            if moving {
                // RFC 6851 §4.3: COPYUID in an untagged OK before the expunges.
                if let Some(c) = copyuid.take() {
                    out.push(status(None, Kind::Ok, Some(c), "Moved"));
                }
                let mut ws = view.mailbox.write()?;
                ws.expunge(&src_uids)?;
                if view.sync(ws.index(), Expunges::Announce, &mut out).is_err() {
                    return Err(validity_error());
                }
            } else {
                let rs = view.read()?;
                sync(view, rs.index(), uid, &mut out)?;
            }
            Ok(())
        })();
        if let Err(e) = &result {
            return Reply {
                raw: Vec::new(),
                responses: vec![storage_no(tag, e)],
                close: false,
            };
        }
        out.push(status(
            Some(tag),
            Kind::Ok,
            copyuid,
            if moving {
                "MOVE completed"
            } else {
                "COPY completed"
            },
        ));
        Reply {
            raw: Vec::new(),
            responses: out,
            close: false,
        }
    }
}

/// A stored message as a new message for another mailbox (flags, keywords, date kept).
fn copy_of(index: &Index, m: &hamail_storage::MessageMeta, data: Vec<u8>) -> NewMessage {
    let mut msg = NewMessage::new(&envelope_sender(&data), data);
    msg.flags = Flags(m.flags.0 & !Flags::HIDDEN.0);
    msg.keywords = keyword_names(index, m.keywords);
    msg.date = m.date;
    msg
}

/// Whether some of `targets` is in `index` without \Seen.
fn lacks_seen(index: &Index, targets: &[(u32, u32)]) -> bool {
    targets.iter().any(|(_, u)| {
        index
            .by_uid(*u)
            .is_some_and(|m| !m.flags.contains(Flags::SEEN))
    })
}

/// Set \Seen on those of `targets` that lack it, under the write lock; returns their UIDs.
fn set_seen_flags(view: &View, targets: &[(u32, u32)]) -> Result<Vec<u32>, StorageError> {
    let mut ws = view.mailbox.write()?;
    let changes: Vec<(u32, Flags, Vec<String>)> = targets
        .iter()
        .filter_map(|(_, u)| {
            let m = ws.index().by_uid(*u)?;
            (!m.flags.contains(Flags::SEEN)).then(|| {
                (
                    *u,
                    m.flags | Flags::SEEN,
                    keyword_names(ws.index(), m.keywords),
                )
            })
        })
        .collect();
    if !changes.is_empty() {
        ws.set_flags(&changes)?;
    }
    Ok(changes.iter().map(|c| c.0).collect())
}

/// FETCH responses for `targets`; true if some were expunged meanwhile.
// The FETCH inputs (view, plan, targets, index, \Seen changes) and its two outputs.
#[allow(clippy::too_many_arguments)]
fn emit_fetch(
    view: &mut View,
    plan: &Plan,
    targets: &[(u32, u32)],
    index: &Index,
    seen_set: &[u32],
    out: &mut Vec<Response<'static>>,
    raw: &mut Vec<u8>,
    mut read: impl FnMut(&hamail_storage::MessageMeta) -> Result<Vec<u8>, StorageError>,
) -> Result<bool, StorageError> {
    let mut missing = false;
    // The request every client uses to resynchronise (`FETCH 1:* (UID FLAGS
    // RFC822.SIZE)`) is written straight to the output: thousands of imap-types values
    // and their encoder would otherwise dominate its cost.
    let fast = !plan.needs_message
        && seen_set.is_empty()
        && plan.items.iter().all(|i| {
            matches!(
                i,
                imap_types::fetch::MessageDataItemName::Uid
                    | imap_types::fetch::MessageDataItemName::Flags
                    | imap_types::fetch::MessageDataItemName::Rfc822Size
            )
        });
    let wants_flags = plan
        .items
        .contains(&imap_types::fetch::MessageDataItemName::Flags);
    // FETCH 1:* BODY[] on a big mailbox: membership must not be a linear scan.
    let seen_set: std::collections::HashSet<u32> = seen_set.iter().copied().collect();
    for (seq, u) in targets {
        let Some(m) = index.by_uid(*u) else {
            missing = true;
            continue;
        };
        let keywords = keyword_names(index, m.keywords);
        if fast {
            fetch::write_fast(raw, *seq, *u, m, &keywords, view.is_recent(*u), &plan.items);
            if wants_flags {
                view.set_known(*u, m.flags, keywords);
            }
            continue;
        }
        let message = if plan.needs_message {
            Some(fetch::to_crlf(&read(m)?))
        } else {
            None
        };
        let subject = Subject {
            uid: *u,
            meta: m,
            flags: m.flags,
            keywords: &keywords,
            recent: view.is_recent(*u),
        };
        let mut items = fetch::build(plan, &subject, message.as_deref());
        // RFC 3501 §6.4.5: a \Seen set as a side effect is reported.
        if seen_set.contains(u) && !wants_flags {
            items.push(imap_types::fetch::MessageDataItem::Flags(
                super::view::flag_items(m.flags, &keywords, view.is_recent(*u)),
            ));
        }
        if wants_flags || seen_set.contains(u) {
            view.set_known(*u, m.flags, keywords.clone());
        }
        out.push(super::view::fetch_response(*seq, items));
    }
    Ok(missing)
}

/// RFC 3501 §7.4.1: no EXPUNGE responses during FETCH, STORE or SEARCH (UID forms may).
fn sync(
    view: &mut View,
    index: &Index,
    uid: bool,
    out: &mut Vec<Response<'static>>,
) -> Result<(), StorageError> {
    let mode = if uid {
        Expunges::Announce
    } else {
        Expunges::Defer
    };
    view.sync(index, mode, out).map_err(|_| validity_error())
}

fn validity_error() -> StorageError {
    StorageError::Corrupt {
        what: "mailbox",
        path: std::path::PathBuf::new(),
        reason: "UIDVALIDITY changed".into(),
    }
}

fn validity_changed() -> Reply {
    Reply {
        raw: Vec::new(),
        responses: vec![Response::Status(
            Status::bye(
                None,
                "Mailbox was rebuilt (UIDVALIDITY changed); please reconnect".to_string(),
            )
            .unwrap_or_else(|_| unreachable_bye()),
        )],
        close: true,
    }
}

fn unreachable_bye() -> Status<'static> {
    Status::Bye(imap_types::response::Bye {
        code: None,
        text: imap_types::core::Text::unvalidated("bye".to_string()),
    })
}

fn finish(
    tag: &Tag<'_>,
    mut out: Vec<Response<'static>>,
    result: Result<(), StorageError>,
    missing: bool,
    text: &str,
) -> Reply {
    match result {
        Err(StorageError::Corrupt {
            what: "mailbox", ..
        }) => return validity_changed(),
        Err(e) => {
            out.push(storage_no(tag, &e));
            return Reply {
                raw: Vec::new(),
                responses: out,
                close: false,
            };
        }
        Ok(()) => {}
    }
    if missing {
        out.push(status(
            Some(tag),
            Kind::No,
            Some(code("EXPUNGEISSUED")),
            "Some messages were expunged meanwhile",
        ));
    } else {
        out.push(status(Some(tag), Kind::Ok, None, text));
    }
    Reply {
        raw: Vec::new(),
        responses: out,
        close: false,
    }
}

fn istr(s: &str) -> IString<'static> {
    IString::try_from(s.to_string()).unwrap_or_else(|_| {
        IString::Literal(imap_types::core::Literal::unvalidated(
            s.as_bytes().to_vec(),
        ))
    })
}
