//! The selected mailbox as one session's client knows it: message sequence numbers
//! (UIDs in order), the flags it was last told, which messages are \Recent for this
//! session — and [`View::sync`], which compares that with the spool's index after every
//! command and produces the untagged EXPUNGE, EXISTS, RECENT and FETCH FLAGS responses
//! that bring the client up to date. Because every command re-reads the index under the
//! storage lock, changes made by other sessions on this host or any other host reach the
//! client at its next command (or during IDLE, which polls).
//!
//! Keywords (RFC 3501 §7.2.6): the session announces the mailbox's keywords in `FLAGS` and
//! `PERMANENTFLAGS`, and whenever that set grows (a STORE here, or a session on any host)
//! it sends both again *before* any response that uses a new keyword
//! ([`View::announce_keywords`]).
//!
//! \Recent (RFC 3501 §2.3.2.2) goes to exactly one session: the storage crate keeps the
//! highest UID already given out ([`Mailbox::claim_recent`]), claimed by the first
//! read-write session that sees new messages.

use std::collections::HashSet;
use std::num::NonZeroU32;

use super::reply::CmdError;
use hamail_storage::index::{Index, MAX_KEYWORDS};
use hamail_storage::{Flags, Mailbox, StorageError};
use imap_types::core::Vec1;
use imap_types::fetch::MessageDataItem;
use imap_types::flag::{Flag, FlagFetch, FlagPerm};
use imap_types::response::{Code, Data, Response};
use imap_types::sequence::{Sequence, SequenceSet};

/// What one message looked like to the client: its system flags and its keywords as bits
/// of [`View::keywords`] (the list the client was last told, which is the index's list
/// whenever the view compares with an index). Plain data, so that a view of a large
/// mailbox is built, compared and dropped without a heap allocation per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    flags: Flags,
    keywords: u64,
}

/// A [`Known`] that equals no message's state: the client was told a keyword the
/// mailbox's list no longer has, so the next sync must send the message's flags again.
/// (`HIDDEN` is never part of a [`Known`] made from an index.)
const STALE: Known = Known {
    flags: Flags::HIDDEN,
    keywords: 0,
};

/// A selected mailbox.
#[derive(Debug)]
pub struct View {
    pub mailbox: Mailbox,
    /// The name as the client gave it (storage form).
    pub name: String,
    pub read_only: bool,
    pub uidvalidity: u32,
    /// UIDs in sequence order; position + 1 is the message sequence number.
    pub uids: Vec<u32>,
    known: Vec<Known>,
    recent: HashSet<u32>,
    /// Expunged on the spool but not yet announced (RFC 3501 §7.4.1 forbids EXPUNGE
    /// responses during FETCH, STORE and SEARCH).
    ghosts: HashSet<u32>,
    /// The keywords the client was last told in FLAGS (the index's list, in its order).
    keywords: Vec<String>,
    /// The index as last read: reused while the file is unchanged.
    cache: Option<hamail_storage::IndexCache>,
    /// The index state the client was last brought up to date with: when the next
    /// index has the same stamp, nothing changed and `sync` is O(1).
    synced: Option<Stamp>,
}

/// What identifies an index state: every change bumps the generation or replaces the
/// file (and with it the message count or the mbox size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    uidvalidity: u32,
    generation: u64,
    messages: usize,
    covered: u64,
}

impl Stamp {
    fn of(index: &Index) -> Stamp {
        Stamp {
            uidvalidity: index.uidvalidity,
            generation: index.generation,
            messages: index.messages.len(),
            covered: index.covered(),
        }
    }
}

/// Whether this command may announce expunges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expunges {
    Announce,
    Defer,
}

/// The mailbox was rebuilt under us (new UIDVALIDITY): the session must end.
#[derive(Debug)]
pub struct ValidityChanged;

impl View {
    /// A fresh view of `index`; `claim_recent` for SELECT (not EXAMINE).
    pub fn open(
        mailbox: Mailbox,
        name: String,
        read_only: bool,
        index: &Index,
    ) -> Result<View, StorageError> {
        let mut view = View {
            mailbox,
            name,
            read_only,
            uidvalidity: index.uidvalidity,
            uids: Vec::new(),
            known: Vec::new(),
            recent: HashSet::new(),
            ghosts: HashSet::new(),
            keywords: index.keywords.clone(),
            cache: None,
            synced: Some(Stamp::of(index)),
        };
        let max = index.visible().map(|m| m.uid).max().unwrap_or(0);
        let first_recent = view.recent_from(max)?;
        view.uids.reserve_exact(index.messages.len());
        view.known.reserve_exact(index.messages.len());
        for m in index.visible() {
            view.uids.push(m.uid);
            view.known.push(known(m.flags, m.keywords));
            if m.uid >= first_recent {
                view.recent.insert(m.uid);
            }
        }
        Ok(view)
    }

    /// Start from the index that SELECT read.
    pub fn keep_cache(&mut self, cache: Option<hamail_storage::IndexCache>) {
        self.cache = cache;
    }

    /// The mailbox under its read lock, reusing the index read last time if unchanged, and
    /// checked to be the one the client knows: a mailbox recreated under the session (new
    /// UIDVALIDITY) is never read by the old UIDs.
    pub fn read(&mut self) -> Result<hamail_storage::mbox::ReadSession, CmdError> {
        let rs = self.mailbox.read_cached(&mut self.cache)?;
        self.check(rs.index())?;
        Ok(rs)
    }

    /// The mailbox under its write lock, checked like [`View::read`]: no flag is set and
    /// no message expunged by a UID of a mailbox the client never saw.
    pub fn write(&self) -> Result<hamail_storage::mbox::WriteSession, CmdError> {
        let ws = self.mailbox.write()?;
        self.check(ws.index())?;
        Ok(ws)
    }

    fn check(&self, index: &Index) -> Result<(), ValidityChanged> {
        if index.uidvalidity != self.uidvalidity {
            return Err(ValidityChanged);
        }
        Ok(())
    }

    /// `(seq, uid)` of the messages `set` names (UIDs with `uid`), in order, each once.
    /// Each range of the set is found by arithmetic (message numbers) or binary search
    /// (UIDs), so naming one message of a large mailbox costs no pass over all of them.
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<(u32, u32)> {
        let largest = if uid {
            self.uids.last().copied().unwrap_or(0)
        } else {
            self.exists()
        };
        let Some(largest) = NonZeroU32::new(largest) else {
            return Vec::new();
        };
        let n = self.uids.len();
        let mut positions: Vec<usize> = Vec::new();
        for s in set.0.as_ref() {
            let (a, b) = match s {
                Sequence::Single(x) => (x.expand(largest).get(), x.expand(largest).get()),
                Sequence::Range(a, b) => {
                    let (a, b) = (a.expand(largest).get(), b.expand(largest).get());
                    (a.min(b), a.max(b))
                }
            };
            let (lo, hi) = if uid {
                (
                    self.uids.partition_point(|u| *u < a),
                    self.uids.partition_point(|u| *u <= b),
                )
            } else {
                ((a as usize - 1).min(n), (b as usize).min(n))
            };
            positions.extend(lo..hi);
        }
        if set.0.as_ref().len() > 1 {
            positions.sort_unstable();
            positions.dedup();
        }
        positions
            .into_iter()
            .map(|i| (i as u32 + 1, self.uids[i]))
            .collect()
    }

    pub fn exists(&self) -> u32 {
        self.uids.len() as u32
    }

    pub fn recent_count(&self) -> u32 {
        self.recent.len() as u32
    }

    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.contains(&uid)
    }

    pub fn is_ghost(&self, uid: u32) -> bool {
        self.ghosts.contains(&uid)
    }

    /// Sequence number of `uid`.
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    /// The client now knows these flags for `uid` (after a FETCH FLAGS we sent).
    pub fn set_known(&mut self, uid: u32, flags: Flags, keywords: Vec<String>) {
        // Our own change: the next sync must compare (the stamp moved anyway).
        if let Ok(i) = self.uids.binary_search(&uid) {
            let mut bits = 0u64;
            for k in &keywords {
                match self.keywords.iter().position(|x| x == k) {
                    Some(b) if b < 64 => bits |= 1 << b,
                    // Not in the list the client has (callers announce first): compare
                    // as changed next time rather than forget it.
                    _ => {
                        self.known[i] = STALE;
                        return;
                    }
                }
            }
            self.known[i] = Known {
                flags: Flags(flags.0 & !Flags::HIDDEN.0),
                keywords: bits,
            };
        }
    }

    /// Compare with the spool and push the untagged responses that tell the client.
    pub fn sync(
        &mut self,
        index: &Index,
        expunges: Expunges,
        out: &mut Vec<Response<'static>>,
    ) -> Result<(), ValidityChanged> {
        self.check(index)?;
        let stamp = Stamp::of(index);
        if self.synced == Some(stamp) && self.ghosts.is_empty() {
            return Ok(());
        }
        self.announce_keywords(index, out);
        // Flag changes first, with the sequence numbers the client has now.
        let mut gone = Vec::new();
        for (i, uid) in self.uids.iter().enumerate() {
            match index
                .by_uid(*uid)
                .filter(|m| !m.flags.contains(Flags::HIDDEN))
            {
                Some(m) => {
                    // `announce_keywords` made our list the index's: same bits.
                    let now = known(m.flags, m.keywords);
                    if now != self.known[i] {
                        let recent = self.recent.contains(uid);
                        out.push(flags_response(
                            i as u32 + 1,
                            now.flags,
                            &keyword_strings(index, m.keywords),
                            recent,
                            None,
                        ));
                        self.known[i] = now;
                    }
                }
                None => gone.push(i),
            }
        }
        match expunges {
            Expunges::Announce => {
                for &i in gone.iter().rev() {
                    if let Some(seq) = NonZeroU32::new(i as u32 + 1) {
                        out.push(Response::Data(Data::Expunge(seq)));
                    }
                    let uid = self.uids.remove(i);
                    self.known.remove(i);
                    self.recent.remove(&uid);
                    self.ghosts.remove(&uid);
                }
            }
            Expunges::Defer => {
                for &i in &gone {
                    self.ghosts.insert(self.uids[i]);
                }
            }
        }
        let last = self.uids.last().copied().unwrap_or(0);
        let new: Vec<_> = index
            .visible()
            .filter(|m| m.uid > last)
            .map(|m| (m.uid, known(m.flags, m.keywords)))
            .collect();
        if !new.is_empty() {
            let max = new.last().map_or(0, |(uid, _)| *uid);
            // A failure to claim only costs the \Recent flag, never the message.
            let first_recent = self.recent_from(max).unwrap_or(u32::MAX);
            for (uid, k) in new {
                self.uids.push(uid);
                self.known.push(k);
                if uid >= first_recent {
                    self.recent.insert(uid);
                }
            }
            out.push(Response::Data(Data::Exists(self.exists())));
            out.push(Response::Data(Data::Recent(self.recent_count())));
        }
        self.synced = Some(stamp);
        Ok(())
    }

    /// If the mailbox has keywords the client has not been told of, the `FLAGS` and
    /// `PERMANENTFLAGS` responses that tell it. Called before any response that may carry
    /// a keyword: a client may reject a flag it was never told exists.
    pub fn announce_keywords(&mut self, index: &Index, out: &mut Vec<Response<'static>>) {
        if index.keywords == self.keywords {
            return;
        }
        self.remap_known(&index.keywords);
        self.keywords = index.keywords.clone();
        out.extend(flags_responses(&self.keywords, self.read_only));
    }

    /// Re-express the known keyword bits in terms of the list `to` (about to become
    /// ours); a message known with a keyword `to` lacks becomes [`STALE`].
    fn remap_known(&mut self, to: &[String]) {
        let map: Vec<Option<usize>> = self
            .keywords
            .iter()
            .map(|k| to.iter().position(|x| x == k).filter(|&b| b < 64))
            .collect();
        for k in self.known.iter_mut().filter(|k| k.keywords != 0) {
            let mut bits = 0u64;
            for (old, new) in map.iter().enumerate() {
                if k.keywords & (1 << old) != 0 {
                    match new {
                        Some(b) => bits |= 1 << b,
                        None => {
                            *k = STALE;
                            break;
                        }
                    }
                }
            }
            if *k != STALE {
                k.keywords = bits;
            }
        }
    }

    /// The first UID that is \Recent for this session: read-write sessions claim every
    /// message up to `max`; read-only ones only look.
    fn recent_from(&self, max: u32) -> Result<u32, StorageError> {
        if self.read_only {
            return Ok(self.mailbox.recent_watermark().saturating_add(1));
        }
        self.mailbox.claim_recent(max)
    }
}

/// A message's state as the client is told it, the bits relative to the index's list.
fn known(flags: Flags, keywords: u64) -> Known {
    Known {
        flags: Flags(flags.0 & !Flags::HIDDEN.0),
        keywords,
    }
}

fn keyword_strings(index: &Index, bits: u64) -> Vec<String> {
    index
        .keyword_names(bits)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// `* FLAGS (...)` and `* OK [PERMANENTFLAGS (...)]` for a mailbox with these keywords:
/// the system flags and every keyword; `\*` (new keywords allowed) while the mailbox has
/// room for more, and nothing permanent when it is read-only.
pub fn flags_responses(keywords: &[String], read_only: bool) -> [Response<'static>; 2] {
    let room = keywords.len() < MAX_KEYWORDS;
    let system = [
        Flag::Answered,
        Flag::Flagged,
        Flag::Deleted,
        Flag::Seen,
        Flag::Draft,
    ];
    let keywords: Vec<Flag<'static>> = keywords
        .iter()
        .filter_map(|k| Flag::try_from(k.as_str()).ok())
        .map(imap_types::IntoStatic::into_static)
        .collect();
    let flags = system
        .iter()
        .cloned()
        .chain(keywords.iter().cloned())
        .collect();
    let perm = if read_only {
        Vec::new()
    } else {
        let mut perm: Vec<FlagPerm<'static>> = system
            .into_iter()
            .chain(keywords)
            .map(FlagPerm::Flag)
            .collect();
        if room {
            perm.push(FlagPerm::Asterisk);
        }
        perm
    };
    [
        Response::Data(Data::Flags(flags)),
        super::reply::status(
            None,
            super::reply::Kind::Ok,
            Some(Code::PermanentFlags(perm)),
            "Flags permitted",
        ),
    ]
}

/// The FLAGS list of a message as IMAP items.
pub fn flag_items(flags: Flags, keywords: &[String], recent: bool) -> Vec<FlagFetch<'static>> {
    let mut items: Vec<FlagFetch<'static>> = Vec::new();
    for (bit, flag) in [
        (Flags::SEEN, Flag::Seen),
        (Flags::ANSWERED, Flag::Answered),
        (Flags::FLAGGED, Flag::Flagged),
        (Flags::DELETED, Flag::Deleted),
        (Flags::DRAFT, Flag::Draft),
    ] {
        if flags.contains(bit) {
            items.push(FlagFetch::Flag(flag));
        }
    }
    for k in keywords {
        if let Ok(flag) = Flag::try_from(k.as_str()) {
            items.push(FlagFetch::Flag(imap_types::IntoStatic::into_static(flag)));
        }
    }
    if recent {
        items.push(FlagFetch::Recent);
    }
    items
}

/// `* seq FETCH (FLAGS (...) [UID n])`.
pub fn flags_response(
    seq: u32,
    flags: Flags,
    keywords: &[String],
    recent: bool,
    uid: Option<u32>,
) -> Response<'static> {
    let mut items = vec![MessageDataItem::Flags(flag_items(flags, keywords, recent))];
    if let Some(uid) = uid.and_then(NonZeroU32::new) {
        items.push(MessageDataItem::Uid(uid));
    }
    fetch_response(seq, items)
}

/// `* seq FETCH (items)`; a zero sequence number cannot happen (views count from 1).
pub fn fetch_response(seq: u32, items: Vec<MessageDataItem<'static>>) -> Response<'static> {
    let seq = NonZeroU32::new(seq).unwrap_or(NonZeroU32::MIN);
    match Vec1::try_from(items) {
        Ok(items) => Response::Data(Data::Fetch { seq, items }),
        Err(_) => Response::Data(Data::Fetch {
            seq,
            items: Vec1::from(MessageDataItem::Flags(Vec::new())),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hamail_storage::mbox::NewMessage;
    use hamail_storage::{LockOptions, Spool};

    fn fetched(out: &[Response<'static>]) -> Vec<u32> {
        out.iter()
            .filter_map(|r| match r {
                Response::Data(Data::Fetch { seq, .. }) => Some(seq.get()),
                _ => None,
            })
            .collect()
    }

    fn announced(out: &[Response<'static>]) -> bool {
        out.iter()
            .any(|r| matches!(r, Response::Data(Data::Flags(_))))
    }

    /// The definition [`View::resolve`] is checked against: does `set` (with `*` =
    /// `largest`) contain `v`?
    fn set_contains(set: &SequenceSet, v: u32, largest: NonZeroU32) -> bool {
        set.0.as_ref().iter().any(|s| match s {
            Sequence::Single(x) => x.expand(largest).get() == v,
            Sequence::Range(a, b) => {
                let (a, b) = (a.expand(largest).get(), b.expand(largest).get());
                a.min(b) <= v && v <= a.max(b)
            }
        })
    }

    #[test]
    fn resolve_names_what_the_set_contains() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
        let mbox = spool.inbox("u").unwrap();
        let msgs: Vec<NewMessage> = (0..12)
            .map(|i| NewMessage::new("a@b", format!("Subject: {i}\n\nbody\n").into_bytes()))
            .collect();
        mbox.append(&msgs).unwrap();
        // Gaps in the UIDs: 1, 2, 4, 5, 8, 9, 10, 11, 12.
        mbox.write().unwrap().expunge(&[3, 6, 7]).unwrap();
        let index = mbox.read().unwrap().index().clone();
        let view = View::open(mbox.clone(), "INBOX".into(), true, &index).unwrap();
        // The definition: every message tested against the set.
        let naive = |set: &SequenceSet, uid: bool| -> Vec<(u32, u32)> {
            let largest = if uid { 12 } else { 9 };
            let largest = NonZeroU32::new(largest).unwrap();
            view.uids
                .iter()
                .enumerate()
                .map(|(i, u)| (i as u32 + 1, *u))
                .filter(|(seq, u)| set_contains(set, if uid { *u } else { *seq }, largest))
                .collect()
        };
        for text in [
            "1",
            "9",
            "10",
            "*",
            "1:*",
            "*:1",
            "3",
            "3:7",
            "7:3",
            "6:7",
            "13:*",
            "20",
            "2,4,2",
            "5:*,1:3,4",
            "12:10,1",
            "6,7,3:3",
            "*,1",
        ] {
            let set = SequenceSet::try_from(text).unwrap();
            for uid in [false, true] {
                assert_eq!(
                    view.resolve(&set, uid),
                    naive(&set, uid),
                    "{text} uid={uid}"
                );
            }
        }
    }

    #[test]
    fn keyword_changes_reach_the_client_as_bits_of_its_own_list() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), LockOptions::default()).unwrap();
        let mbox = spool.inbox("u").unwrap();
        let msgs: Vec<NewMessage> = (0..3)
            .map(|i| NewMessage::new("a@b", format!("Subject: {i}\n\nbody\n").into_bytes()))
            .collect();
        mbox.append(&msgs).unwrap();
        mbox.write()
            .unwrap()
            .set_flags(&[(1, Flags::SEEN, vec!["$A".into()])])
            .unwrap();
        let index = mbox.read().unwrap().index().clone();
        let mut view = View::open(mbox.clone(), "INBOX".into(), false, &index).unwrap();
        let mut out = Vec::new();

        // Another session adds $B to message 2 and takes $A from message 1.
        mbox.write()
            .unwrap()
            .set_flags(&[
                (1, Flags::SEEN, vec![]),
                (2, Flags::empty(), vec!["$B".into()]),
            ])
            .unwrap();
        let index = mbox.read().unwrap().index().clone();
        view.sync(&index, Expunges::Announce, &mut out).unwrap();
        assert!(announced(&out), "$B is announced before use");
        assert_eq!(fetched(&out), vec![1, 2]);

        // The same states under a list in another order: nothing to tell but the list.
        let mut reordered = index.clone();
        reordered.keywords.reverse();
        for m in &mut reordered.messages {
            m.keywords = (m.keywords & 1) << 1 | (m.keywords & 2) >> 1;
        }
        reordered.generation += 1;
        out.clear();
        view.sync(&reordered, Expunges::Announce, &mut out).unwrap();
        assert!(announced(&out));
        assert_eq!(fetched(&out), Vec::<u32>::new());

        // A keyword the client was told outside the list: compared as changed next time.
        view.set_known(3, Flags::empty(), vec!["$Other".into()]);
        let mut bumped = reordered.clone();
        bumped.generation += 1;
        out.clear();
        view.sync(&bumped, Expunges::Announce, &mut out).unwrap();
        assert_eq!(fetched(&out), vec![3]);
        out.clear();
        bumped.generation += 1;
        view.sync(&bumped, Expunges::Announce, &mut out).unwrap();
        assert!(out.is_empty());
    }
}
