//! SEARCH evaluation (RFC 3501 §6.4.4): which messages of a selected mailbox match a list
//! of search keys.
//!
//! The caller describes each message by its index data ([`Candidate`]: sequence number,
//! UID, flags, keywords, size, internal date) and hands over a [`Loader`] for the message
//! text. Keys on index data never touch the loader; keys on headers or body load the
//! message once and parse it once per search ([`MessageCache`]), and an AND list
//! evaluates its index-only keys first so a failing flag test skips the load entirely.
//!
//! String keys match case-insensitively (Unicode lowercase) as substrings. Header keys
//! see RFC 2047-decoded, unfolded text. FROM, TO, CC and BCC also match the field parsed
//! as an address list and rendered as `Name <local@domain>, ...` (comments cut out of the
//! address and standing in for a missing name, group names kept), as Dovecot does, so
//! `user@domain` finds `<user (comment)@ domain>` and `Name <user@` finds
//! `user@domain (Name)`; that parse runs only when the plain substring test fails.
//!
//! BODY sees the decoded text of every text/* part (transfer encoding and charset undone
//! by mail-parser, nested message/rfc822 included) and, as a fallback, the raw body; TEXT
//! sees the header block both raw and decoded plus what BODY sees.

use hamail_storage::{Flags, MessageMeta};
use imap_types::datetime::NaiveDate;
use imap_types::search::SearchKey;
use imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use mail_parser::parsers::MessageStream;
use mail_parser::{Addr, Address, HeaderValue, MessageParser, PartType};
use std::borrow::Cow;
use std::ops::Range;

/// One message as SEARCH sees it without reading it: all of this is in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'m> {
    /// Message sequence number in the session's view (1-based).
    pub seq: u32,
    pub uid: u32,
    pub flags: Flags,
    /// The keywords set on the message (`Index::keyword_names`); compared
    /// case-insensitively.
    pub keywords: Vec<&'m str>,
    /// `\Recent` in this session (not in the index: the session decides).
    pub recent: bool,
    /// Internal date, Unix seconds.
    pub internal_date: i64,
    /// RFC822.SIZE: the size with CRLF line endings.
    pub size: u64,
}

impl<'m> Candidate<'m> {
    /// The candidate for an index record, given its keyword names.
    pub fn from_meta(
        seq: u32,
        meta: &MessageMeta,
        keywords: Vec<&'m str>,
        recent: bool,
    ) -> Candidate<'m> {
        Candidate {
            seq,
            uid: meta.uid,
            flags: meta.flags,
            keywords,
            recent,
            internal_date: meta.date,
            size: meta.crlf_size(),
        }
    }
}

/// Mailbox-wide facts a search needs.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// What `*` means in a sequence set: the highest sequence number (the message count).
    pub max_seq: u32,
    /// What `*` means in a UID set: the highest UID in the mailbox (not UIDNEXT - 1).
    pub max_uid: u32,
}

/// Fetches a message's text (CRLF line endings, as FETCH BODY[] would send it) by UID.
/// `None` when it is gone (expunged by another host meanwhile): every header and body key
/// then fails for it.
pub trait Loader {
    fn message(&mut self, uid: u32) -> Option<Vec<u8>>;
}

impl<F: FnMut(u32) -> Option<Vec<u8>>> Loader for F {
    fn message(&mut self, uid: u32) -> Option<Vec<u8>> {
        self(uid)
    }
}

/// One message's loaded and parsed text, kept across the keys of one search so it is
/// loaded and parsed at most once. Start each candidate with `MessageCache::default()`.
#[derive(Debug, Default)]
pub struct MessageCache {
    state: CacheState,
}

#[derive(Debug, Default)]
enum CacheState {
    #[default]
    Unloaded,
    /// The loader had nothing: do not ask again.
    Missing,
    Loaded(Box<Parsed>),
}

impl MessageCache {
    fn get(&mut self, uid: u32, loader: &mut dyn Loader) -> Option<&mut Parsed> {
        if let CacheState::Unloaded = self.state {
            self.state = match loader.message(uid) {
                Some(raw) => CacheState::Loaded(Box::new(Parsed::new(raw))),
                None => CacheState::Missing,
            };
        }
        match &mut self.state {
            CacheState::Loaded(p) => Some(p),
            _ => None,
        }
    }
}

/// The indices (into `cands`) of the candidates matching all of `keys` (SEARCH ANDs its
/// keys), in order. The caller maps them to sequence numbers or UIDs.
pub fn search(
    keys: &[SearchKey<'_>],
    cands: &[Candidate<'_>],
    ctx: &Context,
    loader: &mut dyn Loader,
) -> Vec<usize> {
    let keys: Vec<Key<'_>> = keys.iter().map(Key::compile).collect();
    cands
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            let mut cache = MessageCache::default();
            all(&keys, c, ctx, loader, &mut cache)
        })
        .map(|(i, _)| i)
        .collect()
}

/// Whether one candidate matches one key. `cache` carries the parsed message between
/// calls for the same candidate; use a fresh one per candidate.
pub fn matches(
    key: &SearchKey<'_>,
    c: &Candidate<'_>,
    ctx: &Context,
    loader: &mut dyn Loader,
    cache: &mut MessageCache,
) -> bool {
    Key::compile(key).eval(c, ctx, loader, cache)
}

/// Whether any of `keys` needs the message text (headers or body). When not, the search
/// runs on the index alone and the caller need not even take the mailbox's read lock
/// for message data.
pub fn needs_message(keys: &[SearchKey<'_>]) -> bool {
    keys.iter().any(|k| Key::compile(k).needs_message())
}

/// A search key with its string lowercased and dates turned into day numbers once, not
/// once per message.
enum Key<'a> {
    All,
    Flag(Flags, bool),
    Recent(bool),
    New,
    Keyword(&'a str, bool),
    Larger(u64),
    Smaller(u64),
    /// Internal date vs day number.
    Date(DateCmp, i64),
    /// Date: header vs day number.
    Sent(DateCmp, i64),
    SeqSet(&'a SequenceSet),
    UidSet(&'a SequenceSet),
    Not(Box<Key<'a>>),
    Or(Box<Key<'a>>, Box<Key<'a>>),
    And(Vec<Key<'a>>),
    /// A header field by (ASCII case-insensitive) name; empty needle: present at all.
    Header(String, String),
    /// An address field (FROM, TO, CC, BCC): like `Header`, but the needle may also be
    /// in the parsed address list's normal form.
    Address(&'static str, String),
    Body(String),
    Text(String),
}

#[derive(Clone, Copy)]
enum DateCmp {
    Before,
    On,
    Since,
}

impl DateCmp {
    fn test(self, day: i64, wanted: i64) -> bool {
        match self {
            DateCmp::Before => day < wanted,
            DateCmp::On => day == wanted,
            DateCmp::Since => day >= wanted,
        }
    }
}

fn needle(s: &impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(s.as_ref()).to_lowercase()
}

/// A search date as days since 1970-01-01.
fn day_number(d: &NaiveDate) -> i64 {
    d.as_ref()
        .and_hms_opt(0, 0, 0)
        .map(|dt| dt.and_utc().timestamp().div_euclid(86_400))
        .unwrap_or(i64::MIN)
}

impl<'a> Key<'a> {
    fn compile(key: &'a SearchKey<'a>) -> Key<'a> {
        match key {
            SearchKey::And(keys) => Key::And(keys.as_ref().iter().map(Key::compile).collect()),
            SearchKey::SequenceSet(set) => Key::SeqSet(set),
            SearchKey::Uid(set) => Key::UidSet(set),
            SearchKey::All => Key::All,
            SearchKey::Answered => Key::Flag(Flags::ANSWERED, true),
            SearchKey::Unanswered => Key::Flag(Flags::ANSWERED, false),
            SearchKey::Deleted => Key::Flag(Flags::DELETED, true),
            SearchKey::Undeleted => Key::Flag(Flags::DELETED, false),
            SearchKey::Draft => Key::Flag(Flags::DRAFT, true),
            SearchKey::Undraft => Key::Flag(Flags::DRAFT, false),
            SearchKey::Flagged => Key::Flag(Flags::FLAGGED, true),
            SearchKey::Unflagged => Key::Flag(Flags::FLAGGED, false),
            SearchKey::Seen => Key::Flag(Flags::SEEN, true),
            SearchKey::Unseen => Key::Flag(Flags::SEEN, false),
            SearchKey::Recent => Key::Recent(true),
            SearchKey::Old => Key::Recent(false),
            SearchKey::New => Key::New,
            SearchKey::Keyword(k) => Key::Keyword(k.as_ref(), true),
            SearchKey::Unkeyword(k) => Key::Keyword(k.as_ref(), false),
            SearchKey::Larger(n) => Key::Larger(u64::from(*n)),
            SearchKey::Smaller(n) => Key::Smaller(u64::from(*n)),
            SearchKey::Before(d) => Key::Date(DateCmp::Before, day_number(d)),
            SearchKey::On(d) => Key::Date(DateCmp::On, day_number(d)),
            SearchKey::Since(d) => Key::Date(DateCmp::Since, day_number(d)),
            SearchKey::SentBefore(d) => Key::Sent(DateCmp::Before, day_number(d)),
            SearchKey::SentOn(d) => Key::Sent(DateCmp::On, day_number(d)),
            SearchKey::SentSince(d) => Key::Sent(DateCmp::Since, day_number(d)),
            SearchKey::Not(k) => Key::Not(Box::new(Key::compile(k))),
            SearchKey::Or(a, b) => Key::Or(Box::new(Key::compile(a)), Box::new(Key::compile(b))),
            SearchKey::Bcc(s) => Key::Address("bcc", needle(s)),
            SearchKey::Cc(s) => Key::Address("cc", needle(s)),
            SearchKey::From(s) => Key::Address("from", needle(s)),
            SearchKey::To(s) => Key::Address("to", needle(s)),
            SearchKey::Subject(s) => Key::Header("subject".to_string(), needle(s)),
            SearchKey::Header(name, s) => Key::Header(
                String::from_utf8_lossy(name.as_ref()).into_owned(),
                needle(s),
            ),
            SearchKey::Body(s) => Key::Body(needle(s)),
            SearchKey::Text(s) => Key::Text(needle(s)),
        }
    }

    fn needs_message(&self) -> bool {
        match self {
            Key::Sent(..) | Key::Header(..) | Key::Address(..) | Key::Body(_) | Key::Text(_) => {
                true
            }
            Key::Not(k) => k.needs_message(),
            Key::Or(a, b) => a.needs_message() || b.needs_message(),
            Key::And(keys) => keys.iter().any(Key::needs_message),
            _ => false,
        }
    }

    fn eval(
        &self,
        c: &Candidate<'_>,
        ctx: &Context,
        loader: &mut dyn Loader,
        cache: &mut MessageCache,
    ) -> bool {
        match self {
            Key::All => true,
            Key::Flag(f, set) => c.flags.contains(*f) == *set,
            Key::Recent(r) => c.recent == *r,
            Key::New => c.recent && !c.flags.contains(Flags::SEEN),
            Key::Keyword(k, set) => has_keyword(c, k) == *set,
            Key::Larger(n) => c.size > *n,
            Key::Smaller(n) => c.size < *n,
            Key::Date(cmp, day) => cmp.test(c.internal_date.div_euclid(86_400), *day),
            Key::SeqSet(set) => in_set(set, c.seq, ctx.max_seq),
            Key::UidSet(set) => in_set(set, c.uid, ctx.max_uid),
            Key::Not(k) => !k.eval(c, ctx, loader, cache),
            Key::Or(a, b) => {
                // The side that needs no message first: it may decide alone.
                let (first, second) = if a.needs_message() && !b.needs_message() {
                    (b, a)
                } else {
                    (a, b)
                };
                first.eval(c, ctx, loader, cache) || second.eval(c, ctx, loader, cache)
            }
            Key::And(keys) => all(keys, c, ctx, loader, cache),
            Key::Sent(cmp, day) => match cache.get(c.uid, loader) {
                // Without a usable Date: header, use the internal date, as RFC 5256 does
                // for sorting by sent date.
                Some(p) => cmp.test(
                    p.sent_day.unwrap_or(c.internal_date.div_euclid(86_400)),
                    *day,
                ),
                None => false,
            },
            Key::Header(name, needle) => cache
                .get(c.uid, loader)
                .is_some_and(|p| p.header_contains(name, needle)),
            Key::Address(name, needle) => cache
                .get(c.uid, loader)
                .is_some_and(|p| p.address_contains(name, needle)),
            Key::Body(needle) => cache
                .get(c.uid, loader)
                .is_some_and(|p| p.body_contains(needle)),
            Key::Text(needle) => cache
                .get(c.uid, loader)
                .is_some_and(|p| p.header_text_contains(needle) || p.body_contains(needle)),
        }
    }
}

/// AND: keys answerable from the index first, so the message is loaded only when they
/// all pass.
fn all(
    keys: &[Key<'_>],
    c: &Candidate<'_>,
    ctx: &Context,
    loader: &mut dyn Loader,
    cache: &mut MessageCache,
) -> bool {
    keys.iter()
        .filter(|k| !k.needs_message())
        .all(|k| k.eval(c, ctx, loader, cache))
        && keys
            .iter()
            .filter(|k| k.needs_message())
            .all(|k| k.eval(c, ctx, loader, cache))
}

fn has_keyword(c: &Candidate<'_>, keyword: &str) -> bool {
    // Keywords are case-insensitive (RFC 9051 §2.3.2 makes explicit what 3501 implies).
    c.keywords.iter().any(|k| k.eq_ignore_ascii_case(keyword))
}

/// Whether `value` is in `set`, `*` being `max`; ranges count in either order (`5:2`).
fn in_set(set: &SequenceSet, value: u32, max: u32) -> bool {
    let resolve = |s: &SeqOrUid| match s {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => max,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(a) => resolve(a) == value,
        Sequence::Range(a, b) => {
            let (a, b) = (resolve(a), resolve(b));
            a.min(b) <= value && value <= a.max(b)
        }
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A header field: its name as written and its value, RFC 2047-decoded, unfolded and
/// lowercased.
#[derive(Debug)]
struct Field {
    name: String,
    value: String,
    /// Where the value lies in the message as sent (folded, undecoded): the address
    /// parser needs the original structure.
    raw: Range<usize>,
    /// The value as an address list in normal form ([`address_form`]), lowercased;
    /// computed for the first address key the decoded value does not satisfy.
    addresses: Option<String>,
}

/// What the string and sent-date keys look at, computed once per message. The header
/// part is cheap and done on load; the body text is decoded only when a BODY or TEXT
/// key gets that far.
#[derive(Debug)]
struct Parsed {
    raw: Vec<u8>,
    body_start: usize,
    fields: Vec<Field>,
    /// The header block as sent, lowercased (TEXT also matches field names and
    /// undecoded text).
    header_lower: String,
    /// The Date: field's calendar date in its own zone, days since 1970-01-01.
    sent_day: Option<i64>,
    /// The body needs no MIME decoding (single part, identity transfer encoding, UTF-8
    /// or ASCII): the raw body is its text.
    plain: bool,
    /// Lowercased raw body; computed on first use.
    body_lower: Option<String>,
    /// Lowercased decoded text parts; computed on first use that the raw body misses.
    texts: Option<Vec<String>>,
}

impl Parsed {
    fn new(raw: Vec<u8>) -> Parsed {
        let mut fields = Vec::new();
        let mut sent_day = None;
        let mut pos = 0;
        let mut body_start = raw.len();
        // (name start, name end, value start, value end) of the field being collected.
        let mut current: Option<(usize, usize, usize, usize)> = None;
        let mut finish = |cur: Option<(usize, usize, usize, usize)>, fields: &mut Vec<Field>| {
            if let Some((ns, ne, vs, ve)) = cur {
                let name = String::from_utf8_lossy(&raw[ns..ne]).trim().to_string();
                let decoded = decode_field(&raw[vs..ve]);
                if sent_day.is_none() && name.eq_ignore_ascii_case("date") {
                    sent_day = mail_parser::DateTime::parse_rfc822(&decoded)
                        .filter(|d| d.is_valid())
                        .map(|d| {
                            days_from_civil(i64::from(d.year), i64::from(d.month), i64::from(d.day))
                        });
                }
                fields.push(Field {
                    name,
                    value: decoded.to_lowercase(),
                    raw: vs..ve,
                    addresses: None,
                });
            }
        };
        while pos < raw.len() {
            let end = memchr::memchr(b'\n', &raw[pos..]).map_or(raw.len(), |i| pos + i + 1);
            let line = &raw[pos..end];
            let content = line.strip_suffix(b"\n").unwrap_or(line);
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            if content.is_empty() {
                body_start = end;
                break;
            }
            if matches!(line[0], b' ' | b'\t') {
                // Folded continuation of the current field.
                if let Some(cur) = current.as_mut() {
                    cur.3 = end;
                }
            } else {
                finish(current.take(), &mut fields);
                // A field name is printable ASCII without spaces (RFC 5322 §3.6.8; the
                // obsolete syntax allows white space before the colon). Anything else,
                // such as a stray mbox `From ` line, is not a field.
                current = memchr::memchr(b':', line)
                    .filter(|&colon| {
                        let name = line[..colon].trim_ascii_end();
                        !name.is_empty() && name.iter().all(|b| b.is_ascii_graphic())
                    })
                    .map(|colon| (pos, pos + colon, pos + colon + 1, end));
            }
            pos = end;
        }
        finish(current.take(), &mut fields);
        let header_lower = String::from_utf8_lossy(&raw[..body_start]).to_lowercase();
        let plain = is_plain(&fields);
        Parsed {
            raw,
            body_start,
            fields,
            header_lower,
            sent_day,
            plain,
            body_lower: None,
            texts: None,
        }
    }

    fn header_contains(&self, name: &str, needle: &str) -> bool {
        self.fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name))
            .any(|f| f.value.contains(needle))
    }

    /// FROM, TO, CC, BCC: the needle is in the decoded value as written or in the
    /// address list's normal form. The normal form is built only when the plain test
    /// fails, so the common hit and the empty needle never parse addresses.
    fn address_contains(&mut self, name: &str, needle: &str) -> bool {
        if self.header_contains(name, needle) {
            return true;
        }
        let raw = &self.raw;
        self.fields
            .iter_mut()
            .filter(|f| f.name.eq_ignore_ascii_case(name))
            .any(|f| {
                let value = raw.get(f.raw.clone()).unwrap_or_default();
                f.addresses
                    .get_or_insert_with(|| address_form(value).to_lowercase())
                    .contains(needle)
            })
    }

    fn header_text_contains(&self, needle: &str) -> bool {
        self.header_lower.contains(needle) || self.fields.iter().any(|f| f.value.contains(needle))
    }

    fn body_contains(&mut self, needle: &str) -> bool {
        let raw_body = self.raw.get(self.body_start..).unwrap_or_default();
        let body_lower = self
            .body_lower
            .get_or_insert_with(|| String::from_utf8_lossy(raw_body).to_lowercase());
        if body_lower.contains(needle) {
            return true;
        }
        if self.plain {
            return false;
        }
        let raw = &self.raw;
        self.texts
            .get_or_insert_with(|| decoded_texts(raw))
            .iter()
            .any(|t| t.contains(needle))
    }
}

/// An unfolded, RFC 2047-decoded header value.
fn decode_field(value: &[u8]) -> String {
    // Most fields have no encoded words: unfold them directly (what mail-parser would
    // produce), which is several times cheaper than its tokenizer.
    if memchr::memmem::find(value, b"=?").is_none() {
        let text = String::from_utf8_lossy(value);
        let mut out = String::with_capacity(text.len());
        for line in text.split('\n').map(str::trim).filter(|l| !l.is_empty()) {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(line);
        }
        return out;
    }
    match MessageStream::new(&with_line_end(value)).parse_unstructured() {
        HeaderValue::Text(t) => t.into_owned(),
        _ => String::new(),
    }
}

/// An address as mail-parser gives it, without the white space it keeps between tokens
/// (`a @ b.org`, or `a@ b.org` once a comment is cut out): unquoted white space is
/// folding or comment padding (RFC 5322 §4.4), never part of an addr-spec. Quoted
/// local parts keep theirs.
fn addr_spec(address: &str) -> Cow<'_, str> {
    if !address.contains(char::is_whitespace) {
        return Cow::Borrowed(address);
    }
    let mut out = String::with_capacity(address.len());
    let (mut quoted, mut escaped) = (false, false);
    for c in address.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c.is_whitespace() {
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// A raw field value ending in a line end: mail-parser's field parsers stop at the first
/// line end not followed by folding white space, and the last field of a message
/// without a body may lack one.
fn with_line_end(value: &[u8]) -> Cow<'_, [u8]> {
    if value.ends_with(b"\n") {
        Cow::Borrowed(value)
    } else {
        Cow::Owned([value, b"\n"].concat())
    }
}

/// An address field's value in the normal form Dovecot searches: each mailbox as
/// `Display Name <local@domain>` or bare `local@domain`, names RFC 2047-decoded, comments
/// cut out of the address and, when there is no display name, taken as it (as in
/// `user@domain (Name)`; Dovecot does the same), a group as `name: member, member;`, all
/// joined with ", ". Empty when the value holds no address at all.
fn address_form(value: &[u8]) -> String {
    fn push_addr(out: &mut String, addr: &Addr<'_>) {
        let name = addr.name.as_deref().filter(|n| !n.is_empty());
        let address = addr
            .address
            .as_deref()
            .map(addr_spec)
            .filter(|a| !a.is_empty());
        if name.is_none() && address.is_none() {
            return;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        match (name, address) {
            (Some(name), Some(address)) => {
                out.push_str(name);
                out.push_str(" <");
                out.push_str(&address);
                out.push('>');
            }
            (Some(name), None) => out.push_str(name),
            (None, Some(address)) => out.push_str(&address),
            (None, None) => {}
        }
    }
    let mut out = String::new();
    match MessageStream::new(&with_line_end(value)).parse_address() {
        HeaderValue::Address(Address::List(addrs)) => {
            for addr in &addrs {
                push_addr(&mut out, addr);
            }
        }
        HeaderValue::Address(Address::Group(groups)) => {
            for group in &groups {
                match group.name.as_deref().filter(|n| !n.is_empty()) {
                    // Members render after the colon, not after a list separator.
                    Some(name) => {
                        let mut members = String::new();
                        for addr in &group.addresses {
                            push_addr(&mut members, addr);
                        }
                        if !out.is_empty() {
                            out.push_str(", ");
                        }
                        out.push_str(name);
                        out.push(':');
                        if !members.is_empty() {
                            out.push(' ');
                            out.push_str(&members);
                        }
                        out.push(';');
                    }
                    // mail-parser puts addresses outside any group into nameless groups.
                    None => {
                        for addr in &group.addresses {
                            push_addr(&mut out, addr);
                        }
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// Whether the raw body already is the text: not multipart, identity transfer encoding,
/// a text type (or none) in US-ASCII or UTF-8 (or no charset).
fn is_plain(fields: &[Field]) -> bool {
    let get = |name: &str| {
        fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value.as_str())
    };
    let cte_ok = get("content-transfer-encoding")
        .is_none_or(|v| matches!(v.trim(), "7bit" | "8bit" | "binary" | ""));
    let ct_ok = get("content-type").is_none_or(|v| {
        let v = v.trim();
        let text = v.starts_with("text/") || v.is_empty();
        let charset = v
            .split(';')
            .skip(1)
            .filter_map(|p| p.trim().strip_prefix("charset="))
            .map(|c| c.trim_matches('"'))
            .next();
        text && charset.is_none_or(|c| matches!(c, "us-ascii" | "utf-8" | "utf8"))
    });
    cte_ok && ct_ok
}

/// The lowercased decoded text of every text/* part, nested messages included.
fn decoded_texts(raw: &[u8]) -> Vec<String> {
    fn collect(msg: &mail_parser::Message<'_>, out: &mut Vec<String>) {
        for part in &msg.parts {
            match &part.body {
                PartType::Text(t) | PartType::Html(t) => out.push(t.to_lowercase()),
                PartType::Message(m) => collect(m, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    if let Some(msg) = MessageParser::default().parse(raw) {
        collect(&msg, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use imap_codec::decode::Decoder;
    use imap_codec::CommandCodec;
    use imap_types::command::CommandBody;

    use super::*;

    const M1: &str = "From: Alice Example <alice@example.com>\r\n\
        To: bob@example.org\r\n\
        Cc: Carol <carol@example.net>\r\n\
        Subject: Lunch plans\r\n\
        Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\
        Message-ID: <1@example.com>\r\n\
        \r\n\
        Let's meet at noon.\r\n";

    const M2: &str = "From: =?ISO-8859-1?Q?J=F6rg_M=FCller?= <joerg@example.de>\r\n\
        To: alice@example.com\r\n\
        Bcc: secret@example.com\r\n\
        Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgTcO8bmNoZW4=?=\r\n\
        Date: Tue, 8 Feb 1994 23:30:00 +0100\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        \r\n\
        Das Wetter ist sch=C3=B6n heute, soft=\r\n\
        break.\r\n";

    const M3: &str = "From: reports@example.com\r\n\
        To: alice@example.com\r\n\
        Subject: Q1\r\n\
        X-Spam-Flag: YES\r\n\
        X-Empty:\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
        \r\n\
        --b1\r\n\
        Content-Type: text/plain; charset=us-ascii\r\n\
        Content-Transfer-Encoding: base64\r\n\
        \r\n\
        VGhlIHF1YXJ0ZXJseSBudW1iZXJzIGxvb2sgZ3JlYXQuDQo=\r\n\
        --b1\r\n\
        Content-Type: text/html; charset=iso-8859-1\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        \r\n\
        <p>Caf=E9 cr=E8me</p>\r\n\
        --b1\r\n\
        Content-Type: application/octet-stream; name=\"data.bin\"\r\n\
        Content-Transfer-Encoding: base64\r\n\
        \r\n\
        AAECAw==\r\n\
        --b1--\r\n";

    const M4: &str = "From: tanaka@example.jp\r\n\
        To: alice@example.com\r\n\
        Subject: =?UTF-8?B?5pel5pys6Kqe44Gu5Lu25ZCN?=\r\n\
        \x20=?UTF-8?B?44OY44Or44OX?= and more\r\n\
        Date: Thu, 10 Feb 1994 08:00:00 +0900\r\n\
        \r\n\
        Plain body, no MIME.\r\n";

    struct Mailbox {
        cands: Vec<Candidate<'static>>,
        texts: HashMap<u32, Vec<u8>>,
    }

    fn mailbox() -> Mailbox {
        // (uid, text, flags, keywords, recent, internal date)
        type Msg = (u32, &'static str, Flags, &'static [&'static str], bool, i64);
        let msgs: [Msg; 4] = [
            (
                1,
                M1,
                Flags::SEEN | Flags::ANSWERED,
                &["$Forwarded"],
                false,
                760_686_745,
            ),
            (
                2,
                M2,
                Flags::FLAGGED | Flags::DRAFT,
                &["Work"],
                true,
                760_746_600,
            ),
            (5, M3, Flags::DELETED, &[], true, 760_752_000),
            (
                7,
                M4,
                Flags::SEEN,
                &["$Forwarded", "Work"],
                true,
                760_924_799,
            ),
        ];
        let cands = msgs
            .iter()
            .enumerate()
            .map(
                |(i, &(uid, text, flags, keywords, recent, date))| Candidate {
                    seq: i as u32 + 1,
                    uid,
                    flags,
                    keywords: keywords.to_vec(),
                    recent,
                    internal_date: date,
                    size: text.len() as u64,
                },
            )
            .collect();
        let texts = msgs
            .iter()
            .map(|&(uid, text, ..)| (uid, text.as_bytes().to_vec()))
            .collect();
        Mailbox { cands, texts }
    }

    /// Parse a SEARCH query; quoted strings with 8-bit characters (not allowed in IMAP
    /// quoted strings) are sent as literals.
    fn keys(query: &str) -> Vec<SearchKey<'static>> {
        let mut line = String::from("a SEARCH ");
        for (i, part) in query.split('"').enumerate() {
            if i % 2 == 0 {
                line.push_str(part);
            } else if part.is_ascii() {
                line.push_str(&format!("\"{part}\""));
            } else {
                line.push_str(&format!("{{{}}}\r\n{part}", part.len()));
            }
        }
        line.push_str("\r\n");
        match CommandCodec::default().decode_static(line.as_bytes()) {
            Ok((_, cmd)) => match cmd.body {
                CommandBody::Search { criteria, .. } => criteria.into_inner(),
                other => panic!("not a SEARCH: {other:?}"),
            },
            Err(e) => panic!("bad query {query:?}: {e:?}"),
        }
    }

    /// A mailbox of plain messages: UIDs and sequence numbers 1, 2, ..., no flags.
    fn plain_mailbox(texts: &[&str]) -> Mailbox {
        let cands = (1..)
            .zip(texts)
            .map(|(n, text)| Candidate {
                seq: n,
                uid: n,
                flags: Flags::empty(),
                keywords: Vec::new(),
                recent: false,
                internal_date: 760_686_745,
                size: text.len() as u64,
            })
            .collect();
        let texts = (1..)
            .zip(texts)
            .map(|(n, text)| (n, text.as_bytes().to_vec()))
            .collect();
        Mailbox { cands, texts }
    }

    /// UIDs matching `query`, and the UIDs the loader was asked for.
    fn run_logged(query: &str) -> (Vec<u32>, Vec<u32>) {
        run_logged_in(&mailbox(), query)
    }

    /// UIDs in `mb` matching `query`, and the UIDs the loader was asked for.
    fn run_logged_in(mb: &Mailbox, query: &str) -> (Vec<u32>, Vec<u32>) {
        let keys = keys(query);
        let ctx = Context {
            max_seq: mb.cands.len() as u32,
            max_uid: mb.cands.iter().map(|c| c.uid).max().unwrap_or(0),
        };
        let mut loads = Vec::new();
        let mut loader = |uid: u32| {
            loads.push(uid);
            mb.texts.get(&uid).cloned()
        };
        let hits = search(&keys, &mb.cands, &ctx, &mut loader);
        let uids = hits.iter().map(|&i| mb.cands[i].uid).collect();
        (uids, loads)
    }

    fn run(query: &str) -> Vec<u32> {
        run_logged(query).0
    }

    fn run_in(mb: &Mailbox, query: &str) -> Vec<u32> {
        run_logged_in(mb, query).0
    }

    #[test]
    fn flag_keys() {
        assert_eq!(run("ALL"), [1, 2, 5, 7]);
        assert_eq!(run("ANSWERED"), [1]);
        assert_eq!(run("UNANSWERED"), [2, 5, 7]);
        assert_eq!(run("DELETED"), [5]);
        assert_eq!(run("UNDELETED"), [1, 2, 7]);
        assert_eq!(run("DRAFT"), [2]);
        assert_eq!(run("UNDRAFT"), [1, 5, 7]);
        assert_eq!(run("FLAGGED"), [2]);
        assert_eq!(run("UNFLAGGED"), [1, 5, 7]);
        assert_eq!(run("SEEN"), [1, 7]);
        assert_eq!(run("UNSEEN"), [2, 5]);
        assert_eq!(run("RECENT"), [2, 5, 7]);
        assert_eq!(run("OLD"), [1]);
        assert_eq!(run("NEW"), [2, 5]);
    }

    #[test]
    fn keyword_keys() {
        assert_eq!(run("KEYWORD $Forwarded"), [1, 7]);
        assert_eq!(run("KEYWORD work"), [2, 7]);
        assert_eq!(run("KEYWORD Unknown"), Vec::<u32>::new());
        assert_eq!(run("UNKEYWORD Work"), [1, 5]);
        assert_eq!(run("UNKEYWORD Unknown"), [1, 2, 5, 7]);
    }

    #[test]
    fn size_keys() {
        let m1 = M1.len();
        assert_eq!(run(&format!("LARGER {}", m1 - 1)), [1, 2, 5]);
        assert_eq!(run(&format!("LARGER {m1}")), [2, 5]);
        assert_eq!(run(&format!("SMALLER {m1}")), [7]);
        assert_eq!(run(&format!("SMALLER {}", m1 + 1)), [1, 7]);
    }

    #[test]
    fn internal_date_keys_use_utc_days() {
        assert_eq!(run("ON 8-Feb-1994"), [1, 2]);
        assert_eq!(run("ON 9-Feb-1994"), [5]);
        assert_eq!(run("BEFORE 9-Feb-1994"), [1, 2]);
        assert_eq!(run("SINCE 9-Feb-1994"), [5, 7]);
        assert_eq!(run("SINCE 10-Feb-1994"), [7]);
        assert_eq!(run("BEFORE 8-Feb-1994"), Vec::<u32>::new());
    }

    #[test]
    fn sent_date_keys_use_the_header_zone() {
        // M1 was sent on the 7th in its zone (8th in UTC); M4 on the 10th (9th in UTC);
        // M3 has no Date: and falls back to its internal date, the 9th.
        assert_eq!(run("SENTON 7-Feb-1994"), [1]);
        assert_eq!(run("SENTON 8-Feb-1994"), [2]);
        assert_eq!(run("SENTON 10-Feb-1994"), [7]);
        assert_eq!(run("SENTON 9-Feb-1994"), [5]);
        assert_eq!(run("SENTBEFORE 8-Feb-1994"), [1]);
        assert_eq!(run("SENTSINCE 9-Feb-1994"), [5, 7]);
    }

    #[test]
    fn sequence_and_uid_sets() {
        assert_eq!(run("1"), [1]);
        assert_eq!(run("2:3"), [2, 5]);
        assert_eq!(run("3:2"), [2, 5]);
        assert_eq!(run("*"), [7]);
        assert_eq!(run("3:*"), [5, 7]);
        assert_eq!(run("*:3"), [5, 7]);
        assert_eq!(run("1,4"), [1, 7]);
        assert_eq!(run("UID 5"), [5]);
        assert_eq!(run("UID 2:5"), [2, 5]);
        assert_eq!(run("UID 6:3"), [5]);
        assert_eq!(run("UID *"), [7]);
        // RFC 3501 §6.4.8: `n:*` includes the highest UID even when n is above it.
        assert_eq!(run("UID 100:*"), [7]);
        assert_eq!(run("UID 3,4"), Vec::<u32>::new());
    }

    #[test]
    fn address_and_subject_keys() {
        assert_eq!(run("FROM alice"), [1]);
        assert_eq!(run("FROM \"Jörg Müller\""), [2]);
        assert_eq!(run("FROM \"müller\""), [2]);
        assert_eq!(run("FROM JOERG@EXAMPLE"), [2]);
        assert_eq!(run("FROM \"jörg\""), [2]);
        assert_eq!(run("FROM \"jörg müller <joerg@\""), [2]);
        assert_eq!(run("FROM \"JÖRG MÜLLER <JOERG@\""), [2]);
        assert_eq!(run("TO alice@example.com"), [2, 5, 7]);
        assert_eq!(run("TO bob"), [1]);
        assert_eq!(run("CC carol"), [1]);
        assert_eq!(run("BCC secret"), [2]);
        assert_eq!(run("SUBJECT lunch"), [1]);
        assert_eq!(run("SUBJECT \"grüsse\""), Vec::<u32>::new());
        assert_eq!(run("SUBJECT \"GRÜSSE\""), Vec::<u32>::new());
        assert_eq!(run("SUBJECT \"GRÜßE aus\""), [2]);
        assert_eq!(run("SUBJECT \"日本語\""), [7]);
        // Folded subject: adjacent encoded words join without the folding white space
        // (RFC 2047 §6.2), the plain tail keeps its space.
        assert_eq!(run("SUBJECT \"件名ヘルプ and\""), [7]);
        assert_eq!(run("SUBJECT \"件名 ヘルプ\""), Vec::<u32>::new());
        assert_eq!(run("SUBJECT \"\""), [1, 2, 5, 7]);
    }

    /// Dovecot imaptest's `search-addresses` mailbox and expectations.
    #[test]
    fn address_keys_match_parsed_addresses() {
        let mb = plain_mailbox(&[
            "From: user-from@domain.org\r\n\
             To: user-to@domain.org\r\n\
             Cc: user-cc@domain.org\r\n\
             Bcc: user-bcc@domain.org\r\n\
             Subject: plain\r\n\
             \r\n\
             body\r\n",
            "From: RealFrom <user-from@domain.org>\r\n\
             To: RealTo <user-to@domain.org>\r\n\
             Cc: RealCc <user-cc@domain.org>\r\n\
             Bcc: RealBcc <user-bcc@domain.org>\r\n\
             Subject: named\r\n\
             \r\n\
             body\r\n",
            "From: <user-from (comment)@ (comment) domain.org>\r\n\
             To: <user-to@domain.org>\r\n\
             Cc: <user-cc@domain.org>\r\n\
             Bcc: <user-bcc@domain.org>\r\n\
             Subject: angle brackets and comments\r\n\
             \r\n\
             body\r\n",
            "From: user-from@domain.org (RealFrom)\r\n\
             To: user-to@domain.org (RealTo)\r\n\
             Cc: user-cc@domain.org (RealCc)\r\n\
             Bcc: user-bcc@domain.org (RealBcc)\r\n\
             Subject: comment names\r\n\
             \r\n\
             body\r\n",
            "From: user-from1@domain.org, user-from2@domain.org\r\n\
             Cc: user-cc@domain.org\r\n\
             Subject: two senders\r\n\
             \r\n\
             body\r\n",
            "To: groupname: groupuser1@domain.org, groupuser2@domain.org;,\r\n  \
             groupname2: groupuser3@domain.org;\r\n\
             Subject: groups\r\n\
             \r\n\
             body\r\n",
        ]);
        let none: &[u32] = &[];
        let expectations: &[(&str, &[u32])] = &[
            ("FROM user-from@domain.org", &[1, 2, 3, 4]),
            ("TO user-to@domain.org", &[1, 2, 3, 4]),
            ("CC user-cc@domain.org", &[1, 2, 3, 4, 5]),
            ("BCC user-bcc@domain.org", &[1, 2, 3, 4]),
            ("FROM realfrom", &[2, 4]),
            ("TO realto", &[2, 4]),
            ("CC realcc", &[2, 4]),
            ("BCC realbcc", &[2, 4]),
            ("HEADER FROM \"\"", &[1, 2, 3, 4, 5]),
            ("HEADER TO \"\"", &[1, 2, 3, 4, 6]),
            ("HEADER CC \"\"", &[1, 2, 3, 4, 5]),
            ("HEADER BCC \"\"", &[1, 2, 3, 4]),
            ("FROM ser-fro", &[1, 2, 3, 4, 5]),
            ("TO ser-t", &[1, 2, 3, 4]),
            ("CC ser-c", &[1, 2, 3, 4, 5]),
            ("BCC ser-bc", &[1, 2, 3, 4]),
            ("FROM ealfro", &[2, 4]),
            ("TO ealt", &[2, 4]),
            ("CC ealc", &[2, 4]),
            ("BCC ealbc", &[2, 4]),
            ("FROM user-from1", &[5]),
            ("FROM user-from2", &[5]),
            ("TO groupname", &[6]),
            ("TO groupname2", &[6]),
            ("TO groupuser1", &[6]),
            ("TO groupuser2", &[6]),
            ("TO groupuser3", &[6]),
            ("TO groupuser4", none),
            // Case-insensitive in both the raw and the parsed form.
            ("FROM USER-FROM@DOMAIN.ORG", &[1, 2, 3, 4]),
            ("FROM \"RealFrom <user-from@\"", &[2, 4]),
        ];
        let failures: Vec<String> = expectations
            .iter()
            .filter_map(|&(query, want)| {
                let got = run_in(&mb, query);
                (got != want).then(|| format!("{query}: got {got:?}, want {want:?}"))
            })
            .collect();
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn address_normal_form() {
        let form = |v: &str| address_form(v.as_bytes());
        // Comments leave the address; mail-parser makes them the display name when
        // there is none (Dovecot takes the last comment), which search may match too.
        assert_eq!(
            form(" <user-from (comment)@ (comment) domain.org>\r\n"),
            "comment comment <user-from@domain.org>"
        );
        assert_eq!(
            form(" user-from@domain.org (RealFrom)\r\n"),
            "RealFrom <user-from@domain.org>"
        );
        assert_eq!(
            form(" =?ISO-8859-1?Q?J=F6rg_M=FCller?= <joerg@example.de>"),
            "Jörg Müller <joerg@example.de>"
        );
        assert_eq!(
            form(
                " groupname: groupuser1@domain.org, groupuser2@domain.org;,\r\n  \
                 groupname2: groupuser3@domain.org;\r\n"
            ),
            "groupname: groupuser1@domain.org, groupuser2@domain.org;, \
             groupname2: groupuser3@domain.org;"
        );
        assert_eq!(
            form(" \"M\u{fc}ller, J\" <j@x>, undisclosed-recipients:;"),
            "M\u{fc}ller, J <j@x>, undisclosed-recipients:;"
        );
        assert_eq!(form(" a@b, g: c@d;, e@f"), "a@b, g: c@d;, e@f");
        // White space around the `@` goes, inside a quoted local part it stays.
        assert_eq!(form(" a @ b.org"), "a@b.org");
        assert_eq!(form(" <a (x)@ b.org>"), "x <a@b.org>");
        assert_eq!(form(" Name <\"a  b\" @ c.org>"), "Name <\"a  b\"@c.org>");
        assert_eq!(form(""), "");
        assert_eq!(form(" (just a comment)\r\n"), "just a comment");
    }

    #[test]
    fn address_form_only_when_the_plain_test_fails() {
        let mut p = Parsed::new(
            b"From: <a (x)@ b.org>\r\nTo: c@d.org\r\nSubject: a@b.org\r\n\r\n".to_vec(),
        );
        // Raw hits and the empty needle parse nothing.
        assert!(p.address_contains("from", "(x)"));
        assert!(p.address_contains("from", ""));
        assert!(p.fields.iter().all(|f| f.addresses.is_none()));
        // A miss parses the named field once and keeps the result.
        assert!(p.address_contains("from", "a@b.org"));
        assert!(!p.address_contains("to", "a@b.org"));
        let parsed: Vec<bool> = p.fields.iter().map(|f| f.addresses.is_some()).collect();
        assert_eq!(parsed, [true, true, false]);
        assert!(!p.address_contains("cc", ""));
    }

    #[test]
    fn header_key() {
        assert_eq!(run("HEADER X-Spam-Flag yes"), [5]);
        assert_eq!(run("HEADER x-spam-flag no"), Vec::<u32>::new());
        // Empty string: the field is present at all, even when empty.
        assert_eq!(run("HEADER X-Empty \"\""), [5]);
        assert_eq!(run("HEADER Message-ID \"\""), [1]);
        assert_eq!(run("HEADER Content-Transfer-Encoding quoted"), [2]);
    }

    #[test]
    fn body_and_text_keys() {
        assert_eq!(run("BODY noon"), [1]);
        // Quoted-printable: decoded text and soft line break.
        assert_eq!(run("BODY \"schön\""), [2]);
        assert_eq!(run("BODY \"softbreak\""), [2]);
        // Base64 text part, ISO-8859-1 HTML part.
        assert_eq!(run("BODY \"quarterly NUMBERS\""), [5]);
        assert_eq!(run("BODY \"café crème\""), [5]);
        // Raw fallback: MIME part headers are in the raw body.
        assert_eq!(run("BODY data.bin"), [5]);
        // BODY does not look at headers; TEXT does.
        assert_eq!(run("BODY lunch"), Vec::<u32>::new());
        assert_eq!(run("TEXT lunch"), [1]);
        assert_eq!(run("TEXT \"x-spam-flag\""), [5]);
        assert_eq!(run("TEXT \"münchen\""), [2]);
        assert_eq!(run("TEXT \"schön\""), [2]);
        assert_eq!(run("TEXT \"no mime\""), [7]);
        assert_eq!(run("TEXT nowhere-to-be-found"), Vec::<u32>::new());
    }

    #[test]
    fn boolean_structure() {
        assert_eq!(run("NOT SEEN"), [2, 5]);
        assert_eq!(run("OR SEEN FLAGGED"), [1, 2, 7]);
        assert_eq!(run("OR DELETED OR ANSWERED DRAFT"), [1, 2, 5]);
        assert_eq!(run("NOT OR SEEN DELETED"), [2]);
        assert_eq!(run("NOT NOT SEEN"), [1, 7]);
        assert_eq!(run("(SEEN RECENT)"), [7]);
        assert_eq!(run("SEEN RECENT"), [7]);
        assert_eq!(run("OR (SEEN RECENT) (DELETED SUBJECT q1)"), [5, 7]);
        assert_eq!(run("NOT (TO alice OR FROM tanaka BODY \"schön\")"), [1, 5]);
        assert_eq!(run("OR NOT FROM alice BODY noon"), [1, 2, 5, 7]);
        assert_eq!(run("UNSEEN NOT TEXT quarterly"), [2]);
    }

    #[test]
    fn index_only_searches_never_load() {
        for q in [
            "ALL",
            "SEEN UNSEEN",
            "OR FLAGGED NOT DELETED",
            "KEYWORD Work LARGER 10 SMALLER 100000",
            "SINCE 1-Jan-1990 BEFORE 1-Jan-2030 ON 8-Feb-1994",
            "UID 1:* 1:* NEW OLD RECENT",
            "(ANSWERED UNANSWERED DRAFT UNDRAFT UNFLAGGED UNKEYWORD x UNDELETED)",
        ] {
            let (_, loads) = run_logged(q);
            assert!(loads.is_empty(), "{q} loaded {loads:?}");
            assert!(!needs_message(&keys(q)), "{q}");
        }
        for q in [
            "SUBJECT x",
            "NOT BODY x",
            "OR SEEN TEXT x",
            "SENTON 1-Jan-2000",
        ] {
            assert!(needs_message(&keys(q)), "{q}");
        }
    }

    #[test]
    fn messages_load_once_and_only_when_needed() {
        // Several text keys: one load per message.
        let (hits, loads) = run_logged("FROM a SUBJECT a BODY e TEXT e HEADER to \"\"");
        assert_eq!(loads, [1, 2, 5, 7]);
        assert_eq!(hits, [1, 2, 7]);
        // Index keys decide first: only the unseen messages are loaded.
        let (hits, loads) = run_logged("TEXT example UNSEEN");
        assert_eq!((hits, loads), (vec![2, 5], vec![2, 5]));
        // OR whose index side is true needs no load.
        let (hits, loads) = run_logged("OR BODY zzz SEEN");
        assert_eq!((hits, loads), (vec![1, 7], vec![2, 5]));
    }

    #[test]
    fn vanished_messages_match_no_text_key() {
        let mb = mailbox();
        let ctx = Context {
            max_seq: 4,
            max_uid: 7,
        };
        let mut calls = 0;
        let mut loader = |_uid: u32| {
            calls += 1;
            None
        };
        let mut cache = MessageCache::default();
        let c = &mb.cands[0];
        assert!(!matches(
            &keys("TEXT a")[0],
            c,
            &ctx,
            &mut loader,
            &mut cache
        ));
        assert!(matches(
            &keys("NOT BODY a")[0],
            c,
            &ctx,
            &mut loader,
            &mut cache
        ));
        assert!(matches(&keys("SEEN")[0], c, &ctx, &mut loader, &mut cache));
        assert_eq!(calls, 1);
    }

    #[test]
    fn header_parsing_edge_cases() {
        let p = Parsed::new(
            b"From alice@example.com Mon Feb  7 21:52:25 1994\n\
              Subject : folded\n\tline\nX-No-Body: yes"
                .to_vec(),
        );
        let names: Vec<&str> = p.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["Subject", "X-No-Body"]);
        assert_eq!(p.fields[0].value, "folded line");
        assert_eq!(p.fields[1].value, "yes");
        assert_eq!(p.body_start, p.raw.len());
        assert!(p.header_contains("subject", "folded line"));
        assert!(!p.header_contains("from", ""));
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1994, 2, 8), 760_686_745 / 86_400);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }
}
