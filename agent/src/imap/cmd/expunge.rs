//! EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1).

use hamail_storage::Flags;
use imap_types::core::Tag;
use imap_types::sequence::SequenceSet;

use super::resolve;
use crate::imap::reply::{finish, read_only, CmdError, Reply};
use crate::imap::session::{Session, State};
use crate::imap::view::Expunges;

impl Session {
    pub(super) fn expunge(&mut self, tag: &Tag<'_>, only: Option<&SequenceSet>) -> Reply {
        let State::Selected(view) = &mut self.state else {
            return Reply::default();
        };
        if view.read_only {
            return read_only(tag);
        }
        let allowed: Option<Vec<u32>> = only.map(|set| {
            resolve(view, set, true)
                .into_iter()
                .map(|(_, u)| u)
                .collect()
        });
        let mut out = Vec::new();
        let result = (|| -> Result<(), CmdError> {
            let mut ws = view.write()?;
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
            view.sync(ws.index(), Expunges::Announce, &mut out)?;
            Ok(())
        })();
        finish(tag, out, result, false, None, "EXPUNGE completed")
    }
}
