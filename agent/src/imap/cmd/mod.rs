//! The IMAP commands, one file per group, and the one place that dispatches them:
//!
//! - `any`: CAPABILITY, NOOP/CHECK, LOGOUT, ID, NAMESPACE (any state);
//! - `auth`: STARTTLS, LOGIN, AUTHENTICATE (not authenticated);
//! - `mailboxes`: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB;
//! - `select`: SELECT, EXAMINE, CLOSE, UNSELECT, STATUS;
//! - `append`: APPEND;
//! - `idle`: IDLE;
//! - `fetch`: FETCH (the request plan, every data item, the fast path);
//! - `store`: STORE; `expunge`: EXPUNGE, UID EXPUNGE; `search`: SEARCH;
//! - `copy`: COPY and MOVE.
//!
//! [`route`] is the one table of every command: STARTTLS, LOGIN, AUTHENTICATE and IDLE
//! need the connection (TLS handshake, the async directory, reading DONE) and run on it;
//! every other command is a `Session` method bound to its arguments, answered at once if
//! it needs no spool, else run on the blocking pool (see the agent's crate doc for why).
//! `Loop::dispatch` carries the route out; `Session::handle` runs one without a connection
//! (the fuzz target).

mod any;
mod append;
mod auth;
mod copy;
mod expunge;
pub mod fetch;
mod idle;
mod mailboxes;
mod search;
mod select;
mod store;

use std::num::NonZeroU32;

use hamail_storage::index::Index;
use hamail_storage::mbox::NewMessage;
use hamail_storage::Flags;
use imap_types::auth::AuthMechanism;
use imap_types::command::{Command, CommandBody};
use imap_types::core::{Tag, Vec1};
use imap_types::extensions::uidplus::{UidElement, UidSet};
use imap_types::flag::Flag;
use imap_types::response::Response;
use imap_types::sequence::SequenceSet;

use super::reply::{status, CmdError, Kind, Reply};
use super::server::Loop;
use super::session::Session;
use super::view::{Expunges, View};
use crate::conn::ReadError;

/// Where a command runs.
pub enum Route {
    /// A session method that needs no spool: answered at once.
    Answer(SessionFn),
    /// A session method that may work on the spool: run on the blocking pool.
    Spool(SessionFn),
    /// STARTTLS, LOGIN, AUTHENTICATE and IDLE run on the connection (TLS handshake, the
    /// async account directory, reading DONE).
    StartTls(Tag<'static>),
    Login {
        tag: Tag<'static>,
        user: String,
        password: String,
    },
    Authenticate {
        tag: Tag<'static>,
        mechanism: AuthMechanism<'static>,
        initial: Option<Vec<u8>>,
    },
    Idle(Tag<'static>),
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Route::Answer(_) => "Answer",
            Route::Spool(_) => "Spool",
            Route::StartTls(_) => "StartTls",
            Route::Login { .. } => "Login",
            Route::Authenticate { .. } => "Authenticate",
            Route::Idle(_) => "Idle",
        })
    }
}

/// A command bound to its arguments, waiting for the session.
pub type SessionFn = Box<dyn FnOnce(&mut Session) -> Reply + Send>;

fn answer(f: impl FnOnce(&mut Session) -> Reply + Send + 'static) -> Route {
    Route::Answer(Box::new(f))
}

fn spool(f: impl FnOnce(&mut Session) -> Reply + Send + 'static) -> Route {
    Route::Spool(Box::new(f))
}

/// The one table of every command: what runs it, in the session's current state.
pub fn route(session: &Session, cmd: Command<'static>) -> Route {
    let tag = cmd.tag;
    let authenticated = session.is_authenticated();
    let selected = session.is_selected();
    match cmd.body {
        CommandBody::Capability => answer(move |s| s.capability(&tag)),
        CommandBody::Logout => answer(move |s| s.logout(&tag)),
        CommandBody::Id { .. } => answer(move |s| s.id(&tag)),
        CommandBody::StartTLS => Route::StartTls(tag),
        CommandBody::Login { username, password } => Route::Login {
            tag,
            user: String::from_utf8_lossy(username.as_ref()).into_owned(),
            password: String::from_utf8_lossy(password.declassify().as_ref()).into_owned(),
        },
        CommandBody::Authenticate {
            mechanism,
            initial_response,
        } => Route::Authenticate {
            tag,
            mechanism,
            initial: initial_response.map(|r| r.declassify().to_vec()),
        },
        CommandBody::Idle => Route::Idle(tag),
        CommandBody::Noop | CommandBody::Check if !selected => answer(move |s| s.noop(&tag)),
        CommandBody::Noop | CommandBody::Check => spool(move |s| s.noop(&tag)),
        _ if !authenticated => answer(move |_| bad(&tag, "Log in first")),
        CommandBody::Namespace => answer(move |s| s.namespace(&tag)),
        CommandBody::Select { mailbox, .. } => spool(move |s| s.select(&tag, &mailbox, false)),
        CommandBody::Examine { mailbox, .. } => spool(move |s| s.select(&tag, &mailbox, true)),
        CommandBody::Create { mailbox } => spool(move |s| s.create(&tag, &mailbox)),
        CommandBody::Delete { mailbox } => spool(move |s| s.delete(&tag, &mailbox)),
        CommandBody::Rename { from, to } => spool(move |s| s.rename(&tag, &from, &to)),
        CommandBody::Subscribe { mailbox } => spool(move |s| s.subscribe(&tag, &mailbox, true)),
        CommandBody::Unsubscribe { mailbox } => spool(move |s| s.subscribe(&tag, &mailbox, false)),
        CommandBody::List {
            reference,
            mailbox_wildcard,
        } => spool(move |s| s.list(&tag, &reference, &mailbox_wildcard, false)),
        CommandBody::Lsub {
            reference,
            mailbox_wildcard,
        } => spool(move |s| s.list(&tag, &reference, &mailbox_wildcard, true)),
        CommandBody::Status {
            mailbox,
            item_names,
        } => spool(move |s| s.status_cmd(&tag, &mailbox, &item_names)),
        CommandBody::Append {
            mailbox,
            flags,
            date,
            message,
        } => spool(move |s| s.append(&tag, &mailbox, &flags, date, message)),
        _ if !selected => answer(move |_| bad(&tag, "No mailbox selected")),
        CommandBody::Close => spool(move |s| s.close(&tag, true)),
        CommandBody::Unselect => spool(move |s| s.close(&tag, false)),
        CommandBody::Expunge => spool(move |s| s.expunge(&tag, None)),
        CommandBody::ExpungeUid { sequence_set } => {
            spool(move |s| s.expunge(&tag, Some(&sequence_set)))
        }
        CommandBody::Search {
            charset,
            criteria,
            uid,
        } => spool(move |s| s.search(&tag, charset.as_ref(), criteria.as_ref(), uid)),
        CommandBody::Fetch {
            sequence_set,
            macro_or_item_names,
            uid,
            ..
        } => spool(move |s| s.fetch(&tag, &sequence_set, &macro_or_item_names, uid)),
        CommandBody::Store {
            sequence_set,
            kind,
            response,
            flags,
            uid,
            ..
        } => spool(move |s| s.store(&tag, &sequence_set, kind, response, &flags, uid)),
        CommandBody::Copy {
            sequence_set,
            mailbox,
            uid,
        } => spool(move |s| s.copy(&tag, &sequence_set, &mailbox, uid, false)),
        CommandBody::Move {
            sequence_set,
            mailbox,
            uid,
        } => spool(move |s| s.copy(&tag, &sequence_set, &mailbox, uid, true)),
        _ => answer(move |_| bad(&tag, "Command not supported")),
    }
}

impl Session {
    /// Run a command that needs no connection, here and now (fuzzing and tests);
    /// `None` for STARTTLS, LOGIN, AUTHENTICATE and IDLE.
    pub fn handle(&mut self, cmd: Command<'static>) -> Option<Reply> {
        match route(self, cmd) {
            Route::Answer(f) | Route::Spool(f) => Some(f(self)),
            _ => None,
        }
    }
}

impl Loop {
    /// Run one command where its route says; false ends the connection.
    pub(super) async fn dispatch(&mut self, cmd: Command<'static>) -> Result<bool, ReadError> {
        match route(self.session()?, cmd) {
            Route::Answer(f) => self.answer(f),
            Route::Spool(f) => self.on_spool(f).await,
            Route::StartTls(tag) => self.starttls(&tag).await,
            Route::Login {
                tag,
                user,
                password,
            } => {
                self.login(&tag, &user, &password).await;
                Ok(true)
            }
            Route::Authenticate {
                tag,
                mechanism,
                initial,
            } => self.authenticate(&tag, mechanism, initial).await,
            Route::Idle(tag) => self.idle(&tag).await,
        }
    }
}

fn bad(tag: &Tag<'_>, text: &str) -> Reply {
    Reply::one(status(Some(tag), Kind::Bad, None, text))
}

/// `(seq, uid)` of the messages `set` names in `view`, in order, each once.
pub(super) fn resolve(view: &View, set: &SequenceSet, uid: bool) -> Vec<(u32, u32)> {
    view.resolve(set, uid)
}

/// A set listing ascending `uids`, runs folded into ranges (for UIDPLUS responses, where
/// source and destination sets correspond in order).
pub(super) fn uid_set(uids: &[u32]) -> Option<UidSet> {
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

pub(super) fn flags_and_keywords(flags: &[Flag<'_>]) -> (Flags, Vec<String>) {
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
pub(super) fn nil_keyword(tag: &Tag<'_>, flags: &[Flag<'_>]) -> Option<Reply> {
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

pub(super) fn keyword_names(index: &Index, bits: u64) -> Vec<String> {
    index
        .keyword_names(bits)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// A stored message as a new message for another mailbox (flags, keywords, date kept).
pub(super) fn copy_of(index: &Index, m: &hamail_storage::MessageMeta, data: Vec<u8>) -> NewMessage {
    let mut msg = NewMessage::new(&crate::delivery::envelope_sender(&data), data);
    msg.flags = Flags(m.flags.0 & !Flags::HIDDEN.0);
    msg.keywords = keyword_names(index, m.keywords);
    msg.date = m.date;
    msg
}

/// RFC 3501 §7.4.1: no EXPUNGE responses during FETCH, STORE or SEARCH (UID forms may).
pub(super) fn sync(
    view: &mut View,
    index: &Index,
    uid: bool,
    out: &mut Vec<Response<'static>>,
) -> Result<(), CmdError> {
    let mode = if uid {
        Expunges::Announce
    } else {
        Expunges::Defer
    };
    Ok(view.sync(index, mode, out)?)
}
