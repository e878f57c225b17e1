//! APPEND (RFC 3501 §6.3.11, with UIDPLUS's APPENDUID).

use std::num::NonZeroU32;

use imap_types::core::Tag;
use imap_types::extensions::binary::LiteralOrLiteral8;
use imap_types::flag::Flag;
use imap_types::mailbox::Mailbox;
use imap_types::response::Code;

use super::{flags_and_keywords, nil_keyword};
use crate::imap::reply::{status, storage_no, Kind, Reply};
use crate::imap::session::Session;

impl Session {
    pub(super) fn append(
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
        let (f, keywords) = flags_and_keywords(flags);
        let date = date.map(|d| d.as_ref().timestamp());
        let appended = match crate::delivery::append(&mbox, bytes, f, keywords, date) {
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
}
