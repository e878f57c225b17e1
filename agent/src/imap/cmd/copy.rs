//! COPY and MOVE, and their UID forms (RFC 3501 §6.4.7, RFC 6851, with UIDPLUS's
//! COPYUID).

use std::num::NonZeroU32;

use imap_types::core::Tag;
use imap_types::mailbox::Mailbox;
use imap_types::response::Code;
use imap_types::sequence::SequenceSet;

use super::{copy_of, resolve, sync, uid_set};
use crate::imap::reply::{finish, read_only, status, CmdError, Kind, Reply};
use crate::imap::session::{Session, State};
use crate::imap::view::Expunges;

impl Session {
    pub(super) fn copy(
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
            return read_only(tag);
        }
        let targets = resolve(view, set, uid);
        let mut out = Vec::new();
        let mut copyuid = None;
        let result = (|| -> Result<(), CmdError> {
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
                let mut ws = view.write()?;
                ws.expunge(&src_uids)?;
                view.sync(ws.index(), Expunges::Announce, &mut out)?;
            } else {
                let rs = view.read()?;
                sync(view, rs.index(), uid, &mut out)?;
            }
            Ok(())
        })();
        let text = if moving {
            "MOVE completed"
        } else {
            "COPY completed"
        };
        finish(tag, out, result, false, copyuid, text)
    }
}
