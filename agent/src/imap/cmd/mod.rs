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
//! [`Loop::dispatch`] routes each command: STARTTLS, LOGIN, AUTHENTICATE and IDLE need the
//! connection (TLS handshake, the async directory, reading DONE) and run on it; everything
//! else is a method of `Session` that may touch the spool, run through
//! [`Loop::on_spool`] (see the agent's crate doc for why spool work runs on the blocking
//! pool).

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
use imap_types::command::{Command, CommandBody};
use imap_types::core::{Tag, Vec1};
use imap_types::extensions::uidplus::{UidElement, UidSet};
use imap_types::flag::Flag;
use imap_types::response::Response;
use imap_types::sequence::{Sequence, SequenceSet};

use super::reply::{status, CmdError, Kind, Reply};
use super::server::Loop;
use super::view::{Expunges, View};
use crate::conn::ReadError;

impl Loop {
    /// Run one command; false ends the connection. The one table of every command.
    pub(super) async fn dispatch(&mut self, cmd: Command<'static>) -> Result<bool, ReadError> {
        let tag = cmd.tag;
        let session = self.session()?;
        let authenticated = session.is_authenticated();
        let selected = session.is_selected();
        match cmd.body {
            CommandBody::Capability => self.answer(|s| s.capability(&tag)),
            CommandBody::Logout => self.answer(|s| s.logout(&tag)),
            CommandBody::Id { .. } => self.answer(|s| s.id(&tag)),
            CommandBody::StartTLS => self.starttls(&tag).await,
            CommandBody::Login { username, password } => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let pass = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                self.login(&tag, &user, &pass).await;
                Ok(true)
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                let initial = initial_response.map(|r| r.declassify().to_vec());
                self.authenticate(&tag, mechanism, initial).await
            }
            CommandBody::Idle => self.idle(&tag).await,
            CommandBody::Noop | CommandBody::Check if !authenticated => {
                self.answer(|s| s.noop(&tag))
            }
            CommandBody::Noop | CommandBody::Check => self.on_spool(move |s| s.noop(&tag)).await,
            _ if !authenticated => self.answer(|_| bad(&tag, "Log in first")),
            CommandBody::Namespace => self.answer(|s| s.namespace(&tag)),
            CommandBody::Select { mailbox, .. } => {
                self.on_spool(move |s| s.select(&tag, &mailbox, false))
                    .await
            }
            CommandBody::Examine { mailbox, .. } => {
                self.on_spool(move |s| s.select(&tag, &mailbox, true)).await
            }
            CommandBody::Create { mailbox } => {
                self.on_spool(move |s| s.create(&tag, &mailbox)).await
            }
            CommandBody::Delete { mailbox } => {
                self.on_spool(move |s| s.delete(&tag, &mailbox)).await
            }
            CommandBody::Rename { from, to } => {
                self.on_spool(move |s| s.rename(&tag, &from, &to)).await
            }
            CommandBody::Subscribe { mailbox } => {
                self.on_spool(move |s| s.subscribe(&tag, &mailbox, true))
                    .await
            }
            CommandBody::Unsubscribe { mailbox } => {
                self.on_spool(move |s| s.subscribe(&tag, &mailbox, false))
                    .await
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => {
                self.on_spool(move |s| s.list(&tag, &reference, &mailbox_wildcard, false))
                    .await
            }
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => {
                self.on_spool(move |s| s.list(&tag, &reference, &mailbox_wildcard, true))
                    .await
            }
            CommandBody::Status {
                mailbox,
                item_names,
            } => {
                self.on_spool(move |s| s.status_cmd(&tag, &mailbox, &item_names))
                    .await
            }
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                self.on_spool(move |s| s.append(&tag, &mailbox, &flags, date, message))
                    .await
            }
            _ if !selected => self.answer(|_| bad(&tag, "No mailbox selected")),
            CommandBody::Close => self.on_spool(move |s| s.close(&tag, true)).await,
            CommandBody::Unselect => self.on_spool(move |s| s.close(&tag, false)).await,
            CommandBody::Expunge => self.on_spool(move |s| s.expunge(&tag, None)).await,
            CommandBody::ExpungeUid { sequence_set } => {
                self.on_spool(move |s| s.expunge(&tag, Some(&sequence_set)))
                    .await
            }
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => {
                self.on_spool(move |s| s.search(&tag, charset.as_ref(), criteria.as_ref(), uid))
                    .await
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                ..
            } => {
                self.on_spool(move |s| s.fetch(&tag, &sequence_set, &macro_or_item_names, uid))
                    .await
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            } => {
                self.on_spool(move |s| s.store(&tag, &sequence_set, kind, response, &flags, uid))
                    .await
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.on_spool(move |s| s.copy(&tag, &sequence_set, &mailbox, uid, false))
                    .await
            }
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.on_spool(move |s| s.copy(&tag, &sequence_set, &mailbox, uid, true))
                    .await
            }
            _ => self.answer(|_| bad(&tag, "Command not supported")),
        }
    }
}

fn bad(tag: &Tag<'_>, text: &str) -> Reply {
    Reply::one(status(Some(tag), Kind::Bad, None, text))
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

/// `(seq, uid)` of the messages `set` names in `view`.
pub(super) fn resolve(view: &View, set: &SequenceSet, uid: bool) -> Vec<(u32, u32)> {
    let largest = if uid {
        view.uids.last().copied().unwrap_or(0)
    } else {
        view.exists()
    };
    let Some(largest) = NonZeroU32::new(largest) else {
        return Vec::new();
    };
    view.uids
        .iter()
        .enumerate()
        .filter(|(i, u)| set_contains(set, if uid { **u } else { *i as u32 + 1 }, largest))
        .map(|(i, u)| (i as u32 + 1, *u))
        .collect()
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

/// The sender for the `From ` line of a copied or appended message: its Return-Path.
pub(super) fn envelope_sender(data: &[u8]) -> String {
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

/// A stored message as a new message for another mailbox (flags, keywords, date kept).
pub(super) fn copy_of(index: &Index, m: &hamail_storage::MessageMeta, data: Vec<u8>) -> NewMessage {
    let mut msg = NewMessage::new(&envelope_sender(&data), data);
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
