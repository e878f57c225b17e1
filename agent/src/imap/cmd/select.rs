//! SELECT and EXAMINE (RFC 3501 §6.3.1–2), CLOSE and UNSELECT (§6.4.2, RFC 3691), STATUS
//! (§6.3.10).

use std::num::NonZeroU32;

use hamail_storage::Flags;
use imap_types::core::Tag;
use imap_types::mailbox::Mailbox;
use imap_types::response::{Code, Data, Response};
use imap_types::status::{StatusDataItem, StatusDataItemName};
use imap_types::IntoStatic;

use crate::imap::names;
use crate::imap::reply::{code, status, storage_no, validity_changed, CmdError, Kind, Reply};
use crate::imap::session::{Session, State};
use crate::imap::view::View;

impl Session {
    pub(super) fn select(
        &mut self,
        tag: &Tag<'_>,
        mailbox: &Mailbox<'_>,
        read_only: bool,
    ) -> Reply {
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
        let [flags, permanent] = crate::imap::view::flags_responses(&index.keywords, read_only);
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

    pub(super) fn close(&mut self, tag: &Tag<'_>, expunge: bool) -> Reply {
        if let State::Selected(view) = &self.state {
            if expunge && !view.read_only {
                // RFC 3501 §6.4.2: expunge silently.
                match view.write() {
                    Ok(mut ws) => {
                        if let Err(e) = ws.expunge_deleted() {
                            return Reply::one(storage_no(tag, &e));
                        }
                    }
                    Err(CmdError::ValidityChanged) => return validity_changed(),
                    Err(CmdError::Storage(e)) => return Reply::one(storage_no(tag, &e)),
                }
            }
        }
        self.state = State::Authenticated;
        Reply::one(status(Some(tag), Kind::Ok, None, "Completed"))
    }

    pub(super) fn status_cmd(
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
}
