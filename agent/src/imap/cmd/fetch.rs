//! FETCH and UID FETCH (RFC 3501 §6.4.5), all in one place: the command (reading under
//! the read lock; the write lock only to set a missing \Seen, let go before the reading),
//! which data items a
//! request names ([`Plan`]), building them for one message, and the fast path for the
//! resynchronisation request `FETCH 1:* (UID FLAGS RFC822.SIZE)`, written straight to the
//! output. Sizes come from the index (`crlf_size`), so that request never reads a
//! message; everything else reads it once, converted to the CRLF form clients expect by
//! `hamail_storage::wire::to_wire` (whose size is `crlf_size`).

use std::num::NonZeroU32;

use hamail_storage::index::Index;
use hamail_storage::{Flags, MessageMeta, StorageError};
use imap_types::core::{IString, Literal, NString, Tag};
use imap_types::datetime::DateTime;
use imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_types::response::Response;
use imap_types::sequence::SequenceSet;

use super::{keyword_names, resolve, sync};
use crate::imap::mime;
use crate::imap::reply::{encode, finish, CmdError, Reply};
use crate::imap::session::{Session, State};
use crate::imap::view::{flag_items, View};

impl Session {
    pub(super) fn fetch(
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
        let result = (|| -> Result<(), CmdError> {
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
        let mut reply = finish(tag, out, result, missing, None, "FETCH completed");
        reply.raw = raw;
        reply
    }
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
fn set_seen_flags(view: &View, targets: &[(u32, u32)]) -> Result<Vec<u32>, CmdError> {
    let mut ws = view.write()?;
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
            write_fast(raw, *seq, *u, m, &keywords, view.is_recent(*u), &plan.items);
            if wants_flags {
                view.set_known(*u, m.flags, keywords);
            }
            continue;
        }
        let message = if plan.needs_message {
            Some(hamail_storage::wire::to_wire(&read(m)?))
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
        let mut items = build(plan, &subject, message.as_deref());
        // RFC 3501 §6.4.5: a \Seen set as a side effect is reported.
        if seen_set.contains(u) && !wants_flags {
            items.push(imap_types::fetch::MessageDataItem::Flags(flag_items(
                m.flags,
                &keywords,
                view.is_recent(*u),
            )));
        }
        if wants_flags || seen_set.contains(u) {
            view.set_known(*u, m.flags, keywords.clone());
        }
        out.push(crate::imap::view::fetch_response(*seq, items));
    }
    Ok(missing)
}

/// A FETCH request, normalised.
#[derive(Debug, Clone)]
pub struct Plan {
    pub items: Vec<MessageDataItemName<'static>>,
    /// Some item needs the message bytes.
    pub needs_message: bool,
    /// Some item is a non-PEEK BODY[...] or RFC822/RFC822.TEXT: sets \Seen.
    pub sets_seen: bool,
}

impl Plan {
    pub fn new(request: &MacroOrMessageDataItemNames<'_>, uid_command: bool) -> Plan {
        let mut items: Vec<MessageDataItemName<'static>> = match request {
            MacroOrMessageDataItemNames::Macro(m) => {
                m.expand().into_iter().map(to_static).collect()
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => {
                v.iter().cloned().map(to_static).collect()
            }
        };
        // RFC 3501 §6.4.8: UID FETCH always returns the UID.
        if uid_command && !items.contains(&MessageDataItemName::Uid) {
            items.insert(0, MessageDataItemName::Uid);
        }
        let needs_message = items.iter().any(|i| {
            !matches!(
                i,
                MessageDataItemName::Uid
                    | MessageDataItemName::Flags
                    | MessageDataItemName::InternalDate
                    | MessageDataItemName::Rfc822Size
            )
        });
        let sets_seen = items.iter().any(|i| match i {
            MessageDataItemName::BodyExt { peek, .. } => !peek,
            MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => true,
            _ => false,
        });
        Plan {
            items,
            needs_message,
            sets_seen,
        }
    }
}

fn to_static(i: MessageDataItemName<'_>) -> MessageDataItemName<'static> {
    use imap_types::IntoStatic;
    i.into_static()
}

/// What FETCH knows about one message besides its bytes.
#[derive(Debug)]
pub struct Subject<'a> {
    pub uid: u32,
    pub meta: &'a MessageMeta,
    pub flags: Flags,
    pub keywords: &'a [String],
    pub recent: bool,
}

/// The data items for one message; `message` is its CRLF form when the plan needs it.
pub fn build(
    plan: &Plan,
    s: &Subject<'_>,
    message: Option<&[u8]>,
) -> Vec<MessageDataItem<'static>> {
    let empty: &[u8] = b"";
    let msg = message.unwrap_or(empty);
    let mut out = Vec::with_capacity(plan.items.len());
    for item in &plan.items {
        let data = match item {
            MessageDataItemName::Uid => match NonZeroU32::new(s.uid) {
                Some(uid) => MessageDataItem::Uid(uid),
                None => continue,
            },
            MessageDataItemName::Flags => {
                MessageDataItem::Flags(flag_items(s.flags, s.keywords, s.recent))
            }
            MessageDataItemName::InternalDate => {
                MessageDataItem::InternalDate(internal_date(s.meta.date))
            }
            MessageDataItemName::Rfc822Size => {
                MessageDataItem::Rfc822Size(u32::try_from(s.meta.crlf_size()).unwrap_or(u32::MAX))
            }
            MessageDataItemName::Envelope => MessageDataItem::Envelope(mime::envelope(msg)),
            MessageDataItemName::Body => MessageDataItem::Body(mime::body_structure(msg, false)),
            MessageDataItemName::BodyStructure => {
                MessageDataItem::BodyStructure(mime::body_structure(msg, true))
            }
            MessageDataItemName::Rfc822 => MessageDataItem::Rfc822(nstring(msg)),
            MessageDataItemName::Rfc822Header => MessageDataItem::Rfc822Header(nstring(
                &section_bytes(msg, Some(&Section::Header(None))),
            )),
            MessageDataItemName::Rfc822Text => MessageDataItem::Rfc822Text(nstring(
                &section_bytes(msg, Some(&Section::Text(None))),
            )),
            MessageDataItemName::BodyExt {
                section, partial, ..
            } => {
                let bytes = section_bytes(msg, section.as_ref());
                let (data, origin) = match partial {
                    Some((start, len)) => (
                        mime::partial(&bytes, *start, len.get()).to_vec(),
                        Some(*start),
                    ),
                    None => (bytes, None),
                };
                MessageDataItem::BodyExt {
                    section: section.clone(),
                    origin,
                    data: nstring(&data),
                }
            }
            // BINARY (RFC 3516) is not advertised.
            MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. } => continue,
        };
        out.push(data);
    }
    out
}

fn section_bytes(msg: &[u8], section: Option<&Section<'_>>) -> Vec<u8> {
    mime::section(msg, section).unwrap_or_default()
}

/// A literal; NUL (not allowed in IMAP literals) becomes 0x80 as in Dovecot.
pub fn nstring(bytes: &[u8]) -> NString<'static> {
    let data: Vec<u8> = if memchr::memchr(0, bytes).is_some() {
        bytes
            .iter()
            .map(|&b| if b == 0 { 0x80 } else { b })
            .collect()
    } else {
        bytes.to_vec()
    };
    // NUL is the only byte a literal may not carry (`Literal::validate`), and there is
    // none left: no second scan of a possibly large message.
    NString(Some(IString::Literal(Literal::unvalidated(data))))
}

/// INTERNALDATE in UTC.
pub fn internal_date(unix: i64) -> DateTime {
    let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH.fixed_offset();
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp(unix.clamp(0, 253_402_300_799), 0)
        .map_or(epoch, |t| t.fixed_offset());
    DateTime::try_from(t).unwrap_or_else(|_| DateTime::unvalidated(epoch))
}

/// `* seq FETCH (UID n FLAGS (...) RFC822.SIZE n)` for a plan of only those items, in
/// their requested order, byte for byte what the encoder would write.
pub fn write_fast(
    out: &mut Vec<u8>,
    seq: u32,
    uid: u32,
    meta: &MessageMeta,
    keywords: &[String],
    recent: bool,
    items: &[MessageDataItemName<'_>],
) {
    use std::io::Write;
    let _ = write!(out, "* {seq} FETCH (");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        match item {
            MessageDataItemName::Uid => {
                let _ = write!(out, "UID {uid}");
            }
            MessageDataItemName::Rfc822Size => {
                let _ = write!(
                    out,
                    "RFC822.SIZE {}",
                    meta.crlf_size().min(u64::from(u32::MAX))
                );
            }
            _ => {
                out.extend_from_slice(b"FLAGS (");
                let mut first = true;
                let mut put = |out: &mut Vec<u8>, name: &str| {
                    if !first {
                        out.push(b' ');
                    }
                    first = false;
                    out.extend_from_slice(name.as_bytes());
                };
                for name in meta.flags.names() {
                    put(out, name);
                }
                for k in keywords {
                    // Only what a FLAGS list may carry (imported keywords may not be atoms).
                    if imap_types::flag::Flag::try_from(k.as_str()).is_ok() {
                        put(out, k);
                    }
                }
                if recent {
                    put(out, "\\Recent");
                }
                out.push(b')');
            }
        }
    }
    out.extend_from_slice(b")\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_fetch_lines_match_the_encoder() {
        use imap_codec::encode::Encoder;
        let meta = MessageMeta {
            uid: 7,
            flags: Flags::SEEN | Flags::DELETED,
            keywords: 0,
            offset: 0,
            from_len: 10,
            len: 100,
            size: 80,
            date: 0,
            fp: 0,
            bare_lf: 4,
        };
        let keywords = vec!["$Work".to_string(), "bad keyword".to_string()];
        for names in [
            vec![
                MessageDataItemName::Uid,
                MessageDataItemName::Flags,
                MessageDataItemName::Rfc822Size,
            ],
            vec![MessageDataItemName::Rfc822Size, MessageDataItemName::Uid],
            vec![MessageDataItemName::Flags],
        ] {
            for recent in [false, true] {
                let mut fast = Vec::new();
                write_fast(&mut fast, 3, 7, &meta, &keywords, recent, &names);
                let plan = Plan {
                    items: names.clone(),
                    needs_message: false,
                    sets_seen: false,
                };
                let subject = Subject {
                    uid: 7,
                    meta: &meta,
                    flags: meta.flags,
                    keywords: &keywords,
                    recent,
                };
                let resp = crate::imap::view::fetch_response(3, build(&plan, &subject, None));
                let slow = imap_codec::ResponseCodec::default().encode(&resp).dump();
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    String::from_utf8(slow).unwrap()
                );
            }
        }
    }

    #[test]
    fn nul_becomes_0x80_in_literals() {
        let NString(Some(IString::Literal(l))) = nstring(b"a\0b") else {
            panic!("not a literal");
        };
        assert_eq!(l.data(), b"a\x80b");
    }

    #[test]
    fn uid_fetch_adds_uid_and_peek_does_not_set_seen() {
        let req =
            MacroOrMessageDataItemNames::MessageDataItemNames(vec![MessageDataItemName::BodyExt {
                section: None,
                partial: None,
                peek: true,
            }]);
        let p = Plan::new(&req, true);
        assert_eq!(p.items[0], MessageDataItemName::Uid);
        assert!(p.needs_message && !p.sets_seen);
        let fast = Plan::new(
            &MacroOrMessageDataItemNames::Macro(imap_types::fetch::Macro::Fast),
            false,
        );
        assert!(!fast.needs_message);
    }
}
