//! SEARCH and UID SEARCH (RFC 3501 §6.4.4): the command around the search engine in
//! `imap/search.rs`.

use std::num::NonZeroU32;

use imap_types::core::{Charset, Tag};
use imap_types::response::{Code, Data, Response};
use imap_types::search::SearchKey;
use imap_types::IntoStatic;

use super::sync;
use crate::imap::reply::{finish, status, CmdError, Kind, Reply};
use crate::imap::search;
use crate::imap::session::{Session, State};

impl Session {
    pub(super) fn search(
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
        let result = (|| -> Result<(), CmdError> {
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
                    self.rs
                        .read_message(m)
                        .ok()
                        .map(|b| hamail_storage::wire::to_wire(&b))
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
        finish(tag, out, result, false, None, "SEARCH completed")
    }
}
