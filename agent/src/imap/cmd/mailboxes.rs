//! The mailbox list: CREATE, DELETE, RENAME (RFC 3501 §6.3.3–5), SUBSCRIBE and
//! UNSUBSCRIBE (§6.3.6–7), LIST and LSUB (§6.3.8–9). The storage crate's [`Folders`] does
//! the work on the spool; this is only the protocol around it.

use hamail_storage::{FolderError, Folders, StorageError};
use imap_types::core::Tag;
use imap_types::flag::FlagNameAttribute;
use imap_types::mailbox::{ListMailbox, Mailbox};
use imap_types::response::{Data, Response};
use imap_types::IntoStatic;

use super::copy_of;
use crate::imap::names;
use crate::imap::reply::{code, folder_no, status, storage_no, Kind, Reply};
use crate::imap::session::{Session, State};

impl Session {
    pub(super) fn folder_op(
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

    /// SUBSCRIBE (`on`) and UNSUBSCRIBE: names are kept whether or not they exist.
    pub(super) fn subscribe(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>, on: bool) -> Reply {
        self.folder_op(tag, mailbox, |f, n| Ok(f.set_subscribed(n, on)?))
    }

    /// CREATE; a trailing delimiter makes a hierarchy level (RFC 3501 §6.3.3).
    pub(super) fn create(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>) -> Reply {
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

    pub(super) fn delete(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>) -> Reply {
        let name = match self.mailbox_name(tag, mailbox) {
            Ok(n) => n,
            Err(r) => return r,
        };
        if matches!(&self.state, State::Selected(v) if v.name == name) {
            self.state = State::Authenticated;
        }
        self.folder_op(tag, mailbox, |f, n| f.delete(n))
    }

    pub(super) fn rename(&mut self, tag: &Tag<'_>, from: &Mailbox<'_>, to: &Mailbox<'_>) -> Reply {
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

    pub(super) fn move_all_from_inbox(
        &self,
        folders: &Folders<'_>,
        to: &str,
    ) -> Result<(), StorageError> {
        let inbox = self.ctx.services.spool.inbox(self.user())?;
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

    pub(super) fn list(
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
}
