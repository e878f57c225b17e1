//! Mailbox names between the IMAP wire and the spool: modified UTF-7 (RFC 3501 §5.1.3)
//! decoding and encoding, the checks that keep a client's name inside the user's folder
//! tree, and LIST/LSUB pattern matching (RFC 3501 §6.3.8, §6.3.9) with the RFC 3348
//! child attributes.
//!
//! Storage names are UTF-8 with `/` as the hierarchy delimiter; the inbox is always the
//! exact string `"INBOX"`. Everything here is pure: the caller supplies the list of
//! existing (or subscribed) mailboxes.

use std::collections::{BTreeMap, BTreeSet};

use imap_types::mailbox::{ListMailbox, Mailbox};

/// The hierarchy delimiter, on the wire and in storage.
pub const DELIMITER: char = '/';

/// The storage (and wire) name of the inbox.
pub const INBOX: &str = "INBOX";

/// Why a client's mailbox name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not canonical modified UTF-7: unterminated `&`, bad base64, padding bits, null
    /// shifts, encoded printable ASCII or broken UTF-16.
    #[error("mailbox name is not valid modified UTF-7")]
    Utf7,
    /// 8-bit bytes or control characters on the wire (RFC 3501 §5.1: names are 7-bit).
    #[error("mailbox name must be printable 7-bit ASCII (modified UTF-7)")]
    NotAscii,
    /// Decoded fine but not acceptable as a folder name.
    #[error("invalid mailbox name: {0}")]
    Invalid(&'static str),
}

/// The wire bytes of a LIST/LSUB reference or pattern.
pub fn list_mailbox_bytes<'a>(m: &'a ListMailbox<'_>) -> &'a [u8] {
    match m {
        ListMailbox::Token(t) => t.as_ref(),
        ListMailbox::String(s) => s.as_ref(),
    }
}

/// Decode a LIST/LSUB reference or pattern (modified UTF-7, wildcards left alone) for
/// [`list_matches`] and [`list`]. No name rules apply: a pattern is not a name.
pub fn decode_list_mailbox(m: &ListMailbox<'_>) -> Result<String, NameError> {
    decode_utf7(list_mailbox_bytes(m))
}

/// IMAP wire name → storage name.
///
/// `INBOX` in any case becomes `"INBOX"`, and so does a first level spelled `inbox` in any
/// case (`inbox/Sent` → `INBOX/Sent`), so the inbox's children have one spelling. Other
/// names are decoded from modified UTF-7 (strictly: re-encoding must give the same
/// bytes) and must be a relative path of non-empty levels without `.`/`..`, control
/// characters, a level starting with `~` (UW-IMAP home directory syntax), a leading `#`
/// (namespace syntax) or the LIST wildcards `*`/`%`, and must pass
/// [`hamail_storage::spool::validate_mailbox`] (which also refuses levels starting with
/// a dot and the spool's reserved suffixes).
///
/// A trailing delimiter is refused (empty level): for CREATE (RFC 3501 §6.3.3, "the
/// name is intended as a superior hierarchical name") the caller strips one first.
pub fn decode_mailbox(m: &Mailbox<'_>) -> Result<String, NameError> {
    match m {
        Mailbox::Inbox => Ok(INBOX.to_string()),
        Mailbox::Other(other) => decode_name(other.as_ref()),
    }
}

/// [`decode_mailbox`] on raw wire bytes.
pub fn decode_name(wire: &[u8]) -> Result<String, NameError> {
    let name = normalize_inbox(decode_utf7(wire)?);
    if name == INBOX {
        return Ok(name);
    }
    check_name(&name)?;
    Ok(name)
}

/// Storage name → IMAP wire name (modified UTF-7). Total: every UTF-8 string has an
/// encoding.
pub fn encode_mailbox(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush_base64(&mut out, &mut pending);
            out.push(c);
            if c == '&' {
                out.push('-');
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush_base64(&mut out, &mut pending);
    out
}

/// Modified base64 alphabet: RFC 2045 base64 with `,` in place of `/`.
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn flush_base64(out: &mut String, units: &mut Vec<u16>) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for u in units.drain(..) {
        acc = (acc << 16) | u32::from(u);
        bits += 16;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(B64[((acc >> bits) & 0x3f) as usize]));
        }
        // Keep only the bits not yet written, so `acc` never overflows.
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        // Pad the last sextet with zero bits (no `=` padding in modified base64).
        out.push(char::from(B64[((acc << (6 - bits)) & 0x3f) as usize]));
    }
    out.push('-');
}

fn b64_value(b: u8) -> Option<u32> {
    match b {
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
        b'+' => Some(62),
        b',' => Some(63),
        _ => None,
    }
}

/// Strict modified UTF-7 → UTF-8. Only printable ASCII is accepted on the wire, and the
/// result must re-encode to exactly `wire`, which rules out every non-canonical spelling
/// (null shifts like `&AOQ-&APY-`, non-zero padding bits, base64 for characters that
/// represent themselves) without a rule for each.
pub fn decode_utf7(wire: &[u8]) -> Result<String, NameError> {
    if wire.iter().any(|b| !(0x20..=0x7e).contains(b)) {
        return Err(NameError::NotAscii);
    }
    let mut out = String::with_capacity(wire.len());
    let mut i = 0;
    while i < wire.len() {
        let b = wire[i];
        i += 1;
        if b != b'&' {
            out.push(char::from(b));
            continue;
        }
        let end = wire[i..]
            .iter()
            .position(|&b| b == b'-')
            .ok_or(NameError::Utf7)?
            + i;
        if end == i {
            out.push('&');
            i = end + 1;
            continue;
        }
        let mut units = Vec::with_capacity((end - i) * 6 / 16);
        let mut acc: u32 = 0;
        let mut bits = 0u32;
        for &c in &wire[i..end] {
            acc = (acc << 6) | b64_value(c).ok_or(NameError::Utf7)?;
            bits += 6;
            if bits >= 16 {
                bits -= 16;
                units.push(((acc >> bits) & 0xffff) as u16);
                acc &= (1 << bits) - 1;
            }
        }
        // Leftover bits are padding: fewer than a sextet's worth, all zero.
        if bits >= 6 || acc != 0 {
            return Err(NameError::Utf7);
        }
        for c in char::decode_utf16(units) {
            out.push(c.map_err(|_| NameError::Utf7)?);
        }
        i = end + 1;
    }
    if encode_mailbox(&out).as_bytes() != wire {
        return Err(NameError::Utf7);
    }
    Ok(out)
}

/// `inbox` (any case) as the whole name or the first level → `INBOX`.
fn normalize_inbox(name: String) -> String {
    let first = name.split(DELIMITER).next().unwrap_or("");
    if first.eq_ignore_ascii_case(INBOX) && first != INBOX {
        format!("{INBOX}{}", &name[INBOX.len()..])
    } else {
        name
    }
}

fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Invalid("empty name"));
    }
    if name.starts_with(DELIMITER) {
        return Err(NameError::Invalid("names are relative"));
    }
    if name.starts_with('#') {
        return Err(NameError::Invalid("'#' starts a namespace, not a name"));
    }
    for level in name.split(DELIMITER) {
        if level.is_empty() {
            return Err(NameError::Invalid("empty hierarchy level"));
        }
        if level == "." || level == ".." {
            return Err(NameError::Invalid("'.' and '..' are not names"));
        }
        if level.starts_with('~') {
            return Err(NameError::Invalid("a level must not start with '~'"));
        }
        if level.contains(['*', '%']) {
            return Err(NameError::Invalid("'*' and '%' are LIST wildcards"));
        }
        if level.chars().any(char::is_control) {
            return Err(NameError::Invalid("control characters are not allowed"));
        }
    }
    hamail_storage::spool::validate_mailbox(name).map_err(|e| match e {
        hamail_storage::StorageError::InvalidName { reason, .. } => NameError::Invalid(reason),
        _ => NameError::Invalid("refused by the spool"),
    })
}

/// `LIST ref ""` (RFC 3501 §6.3.8): the caller answers with the delimiter and an empty
/// root, `* LIST (\Noselect) "/" ""`, instead of matching names.
pub fn is_delimiter_query(pattern: &str) -> bool {
    pattern.is_empty()
}

/// The canonical pattern for a reference and a mailbox pattern (RFC 3501 §6.3.8):
/// plain concatenation, as in the RFC's `#news.` + `comp.mail.*`; a pattern starting
/// with the delimiter is absolute (`~smith/Mail/` + `/usr/doc/foo`) and ignores the
/// reference. A first level `inbox` in any case is spelled `INBOX`.
pub fn canonical_pattern(reference: &str, pattern: &str) -> String {
    if pattern.starts_with(DELIMITER) {
        pattern.to_string()
    } else {
        normalize_inbox(format!("{reference}{pattern}"))
    }
}

/// Whether storage `name` matches LIST `pattern` under `reference`: `*` matches anything,
/// `%` anything but the delimiter. Case-sensitive except for the `INBOX` level, which
/// RFC 3501 makes case-insensitive (`LIST "" inbox` and `LIST "" in%` find `INBOX`).
/// All three arguments may equally be wire (modified UTF-7) strings, as long as they are
/// all in the same form: the wildcards and the delimiter are ASCII either way.
pub fn list_matches(reference: &str, pattern: &str, name: &str) -> bool {
    wildcard_match(&canonical_pattern(reference, pattern), name)
}

fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Characters of the name's INBOX level compare case-insensitively.
    let inbox_len = if name == INBOX || name.starts_with("INBOX/") {
        INBOX.len()
    } else {
        0
    };
    let same = |pc: char, i: usize| pc == n[i] || (i < inbox_len && pc.eq_ignore_ascii_case(&n[i]));
    // ok[j]: pattern[..pi] matches name[..j]. Row by row over the pattern.
    let mut ok = vec![false; n.len() + 1];
    ok[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                for j in 0..=n.len() {
                    next[j] =
                        ok[j] || (j > 0 && next[j - 1] && (pc == '*' || n[j - 1] != DELIMITER));
                }
            }
            _ => {
                for j in 1..=n.len() {
                    next[j] = ok[j - 1] && same(pc, j - 1);
                }
            }
        }
        ok = next;
    }
    ok[n.len()]
}

/// One LIST/LSUB response line, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Storage name; send [`encode_mailbox`] of it.
    pub name: String,
    /// Not a mailbox itself, only a level above some (`\Noselect`).
    pub noselect: bool,
    /// RFC 3348: `\HasChildren` when true, `\HasNoChildren` otherwise.
    pub has_children: bool,
}

/// The LIST (or LSUB) answer for `reference`/`pattern` over `mailboxes` (storage names,
/// `"INBOX"` included when it should be listed; for LSUB the subscribed names).
///
/// A level above mailboxes that is not a mailbox itself (`a` for `a/b`) is reported with
/// `\Noselect` when it matches and some mailbox below it does not: that is how `%`
/// shows an intermediate level whose children it cannot reach (RFC 3501 §6.3.8, and
/// the LSUB rule of §6.3.9), while `*`, which reaches the children, lists only real
/// mailboxes. Results are sorted, INBOX first. An empty pattern is the delimiter query
/// ([`is_delimiter_query`]) and gives nothing here.
pub fn list<S: AsRef<str>>(reference: &str, pattern: &str, mailboxes: &[S]) -> Vec<ListEntry> {
    if is_delimiter_query(pattern) {
        return Vec::new();
    }
    let pattern = canonical_pattern(reference, pattern);
    // Every mailbox and every level above one: true when it is a mailbox.
    let mut all: BTreeMap<&str, bool> = BTreeMap::new();
    for m in mailboxes {
        let m = m.as_ref();
        all.insert(m, true);
        for (i, c) in m.char_indices() {
            if c == DELIMITER {
                all.entry(&m[..i]).or_insert(false);
            }
        }
    }
    let names: BTreeSet<&str> = all.keys().copied().collect();
    let mut out: Vec<ListEntry> = all
        .iter()
        .filter(|&(name, &selectable)| {
            wildcard_match(&pattern, name)
                && (selectable || hidden_descendant(&all, name, |n| wildcard_match(&pattern, n)))
        })
        .map(|(name, &selectable)| ListEntry {
            name: name.to_string(),
            noselect: !selectable,
            has_children: has_children(&names, name),
        })
        .collect();
    out.sort_by(|a, b| (a.name != INBOX, &a.name).cmp(&(b.name != INBOX, &b.name)));
    out
}

/// Whether a mailbox below `name` is not matched (so `name` stands in for it).
fn hidden_descendant(
    all: &BTreeMap<&str, bool>,
    name: &str,
    matched: impl Fn(&str) -> bool,
) -> bool {
    let prefix = format!("{name}{DELIMITER}");
    all.range::<str, _>((std::ops::Bound::Excluded(name), std::ops::Bound::Unbounded))
        .take_while(|(n, _)| n.starts_with(name))
        .any(|(n, &selectable)| selectable && n.starts_with(&prefix) && !matched(n))
}

/// Whether any name in `names` is below `name` (RFC 3348 `\HasChildren`).
pub fn has_children(names: &BTreeSet<&str>, name: &str) -> bool {
    let prefix = format!("{name}{DELIMITER}");
    names
        .range::<str, _>((std::ops::Bound::Excluded(name), std::ops::Bound::Unbounded))
        .take_while(|n| n.starts_with(name))
        .any(|n| n.starts_with(&prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(s: &str) -> Result<String, NameError> {
        let m = Mailbox::try_from(s).map_err(|_| NameError::Invalid("imap-types"))?;
        decode_mailbox(&m)
    }

    #[test]
    fn round_trips() {
        for (utf8, utf7) in [
            ("INBOX", "INBOX"),
            ("a&b", "a&-b"),
            ("&", "&-"),
            ("Entwürfe", "Entw&APw-rfe"),
            ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
            ("日本語", "&ZeVnLIqe-"),
            ("Grüße/Ärger", "Gr&APwA3w-e/&AMQ-rger"),
            ("😀", "&2D3eAA-"),
        ] {
            assert_eq!(encode_mailbox(utf8), utf7, "{utf8}");
            assert_eq!(decode_utf7(utf7.as_bytes()).as_deref(), Ok(utf8), "{utf7}");
        }
    }

    #[test]
    fn decodes_wire_names() {
        assert_eq!(wire("inbox").as_deref(), Ok("INBOX"));
        assert_eq!(wire("InBoX").as_deref(), Ok("INBOX"));
        assert_eq!(wire("Inbox/Sent").as_deref(), Ok("INBOX/Sent"));
        assert_eq!(wire("INBOXES").as_deref(), Ok("INBOXES"));
        assert_eq!(wire("Entw&APw-rfe").as_deref(), Ok("Entwürfe"));
        assert_eq!(wire("Archive/2024/Q1").as_deref(), Ok("Archive/2024/Q1"));
        assert_eq!(wire("R&-D").as_deref(), Ok("R&D"));
        assert_eq!(wire("&ZeVnLIqe-/&U,BTFw-").as_deref(), Ok("日本語/台北"));
    }

    #[test]
    fn rejects_bad_utf7() {
        for bad in [
            "a&",         // unterminated shift
            "a&AOQ",      // unterminated shift
            "&AOQ-&APY-", // null shift between two runs
            "&AOR-",      // non-zero padding bits
            "&AGE-",      // "a" encoded
            "&AC8-",      // "/" encoded: would smuggle a delimiter
            "&AOQ=-",     // not modified base64
            "&AOQ/-",     // '/' is not in the modified alphabet
            "&2D0-",      // lone high surrogate
            "&AA-",       // leftover partial code unit
        ] {
            assert_eq!(wire(bad), Err(NameError::Utf7), "{bad}");
        }
        assert_eq!(decode_utf7("Entwürfe".as_bytes()), Err(NameError::NotAscii));
        assert_eq!(decode_utf7(b"a\tb"), Err(NameError::NotAscii));
    }

    #[test]
    fn rejects_unsafe_names() {
        for bad in [
            "", "/etc", "a//b", "a/", "..", "a/../b", "a/./b", ".hidden", "~root", "a/~x", "#news",
            "a*", "b%", "&AAo-",
        ] {
            assert!(wire(bad).is_err(), "{bad:?} accepted");
        }
        // Names the spool keeps for its own files beside a mailbox.
        for suffix in hamail_storage::spool::RESERVED_SUFFIXES {
            for bad in [format!("x{suffix}"), format!("y/z{suffix}")] {
                assert!(wire(&bad).is_err(), "{bad:?} accepted");
            }
        }
        assert!(wire(&"x".repeat(256)).is_err());
        assert!(wire("a.b/c-d_e f").is_ok());
        assert_eq!(wire("Projects/#1").as_deref(), Ok("Projects/#1"));
    }

    #[test]
    fn list_wildcards() {
        assert!(list_matches("", "*", "a/b/c"));
        assert!(list_matches("", "%", "a"));
        assert!(!list_matches("", "%", "a/b"));
        assert!(list_matches("", "a/%", "a/b"));
        assert!(!list_matches("", "a/%", "a/b/c"));
        assert!(list_matches("", "a/*", "a/b/c"));
        assert!(list_matches("", "a%c", "abbc"));
        assert!(!list_matches("", "a%c", "ab/c"));
        assert!(list_matches("", "*c", "a/b/c"));
        assert!(list_matches("", "%/%", "a/b"));
        assert!(list_matches("", "Entw*", "Entwürfe"));
        assert!(!list_matches("", "archive", "Archive"));
        assert!(!list_matches("", "", "a"));
    }

    #[test]
    fn list_inbox_is_case_insensitive() {
        assert!(list_matches("", "inbox", "INBOX"));
        assert!(list_matches("", "in%", "INBOX"));
        assert!(list_matches("", "Inbox/%", "INBOX/Sent"));
        assert!(list_matches("inbox/", "%", "INBOX/Sent"));
        assert!(!list_matches("", "inbox/sent", "INBOX/Sent"));
        assert!(!list_matches("", "inboxes", "INBOXES"));
    }

    #[test]
    fn references_join_per_rfc() {
        // RFC 3501 §6.3.8's `#news.` + `comp.mail.*`, with `/` as the delimiter.
        assert_eq!(
            canonical_pattern("news/", "comp/mail/*"),
            "news/comp/mail/*"
        );
        assert!(list_matches("news/", "comp/mail/*", "news/comp/mail/misc"));
        assert!(!list_matches("news/", "comp/mail/*", "comp/mail/misc"));
        assert!(list_matches("archive/", "%", "archive/2024"));
        // An absolute pattern ignores the reference and can match no (relative) name.
        assert_eq!(canonical_pattern("Mail/", "/usr/doc/foo"), "/usr/doc/foo");
        assert!(!list_matches("Mail/", "/usr/doc/foo", "Mail/usr/doc/foo"));
        // `LIST "" ""` is the delimiter query.
        assert!(is_delimiter_query(""));
        assert!(list("", "", &["INBOX"]).is_empty());
    }

    fn entry(name: &str, noselect: bool, has_children: bool) -> ListEntry {
        ListEntry {
            name: name.to_string(),
            noselect,
            has_children,
        }
    }

    #[test]
    fn list_reports_levels_and_children() {
        let boxes = [
            "INBOX",
            "Sent",
            "a/b/c",
            "a/x",
            "INBOX/Work",
            "Archive",
            "Archive/2024",
        ];
        assert_eq!(
            list("", "%", &boxes),
            vec![
                entry("INBOX", false, true),
                entry("Archive", false, true),
                entry("Sent", false, false),
                entry("a", true, true),
            ]
        );
        assert_eq!(
            list("a/", "%", &boxes),
            vec![entry("a/b", true, true), entry("a/x", false, false)]
        );
        // `*` reaches the mailboxes themselves: no stand-in levels.
        assert_eq!(
            list("", "a/*", &boxes),
            vec![entry("a/b/c", false, false), entry("a/x", false, false)]
        );
        assert_eq!(
            list("", "*", &boxes).len(),
            boxes.len() // every mailbox, no `a`, no `a/b`
        );
        assert_eq!(
            list("", "%/%", &boxes),
            vec![
                entry("Archive/2024", false, false),
                entry("INBOX/Work", false, false),
                entry("a/b", true, true),
                entry("a/x", false, false),
            ]
        );
        assert_eq!(list("", "inbox", &boxes), vec![entry("INBOX", false, true)]);
        assert_eq!(list("", "nothing", &boxes), vec![]);
        let names: BTreeSet<&str> = ["a", "a/b", "ab", "b"].into_iter().collect();
        assert!(has_children(&names, "a"));
        assert!(!has_children(&names, "ab"));
        assert!(!has_children(&names, "b"));
    }

    #[test]
    fn list_pattern_decoding() {
        let p = ListMailbox::try_from("Entw&APw-*")
            .map_err(|_| ())
            .and_then(|p| decode_list_mailbox(&p).map_err(|_| ()));
        assert_eq!(p.as_deref(), Ok("Entwü*"));
    }
}
