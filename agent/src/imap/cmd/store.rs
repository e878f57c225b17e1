//! STORE and UID STORE (RFC 3501 §6.4.6): flags and keywords, answered with FETCH FLAGS
//! unless `.SILENT`.

use hamail_storage::Flags;
use imap_types::core::Tag;
use imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_types::sequence::SequenceSet;

use super::{flags_and_keywords, keyword_names, nil_keyword, resolve, sync};
use crate::imap::reply::{finish, read_only, CmdError, Reply};
use crate::imap::session::{Session, State};
use crate::imap::view::flags_response;

impl Session {
    pub(super) fn store(
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
            return read_only(tag);
        }
        if let Some(bad) = nil_keyword(tag, flags) {
            return bad;
        }
        let (f, k) = flags_and_keywords(flags);
        let targets = resolve(view, set, uid);
        let mut out = Vec::new();
        let mut missing = false;
        let result = (|| -> Result<(), CmdError> {
            let mut ws = view.write()?;
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
        finish(tag, out, result, missing, None, "STORE completed")
    }
}
