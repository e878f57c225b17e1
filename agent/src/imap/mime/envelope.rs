//! ENVELOPE (RFC 3501 §7.4.2): raw header strings and RFC 5322 address lists parsed into
//! IMAP address structures. Strings stay in their wire form (encoded-words are not
//! decoded, as RFC 3501 asks); only folding, quoting and comments are removed.
//!
//! The address parser is hand-written rather than mail-parser's: that one decodes
//! encoded-words in display names and does not keep source routes or group boundaries the
//! way IMAP needs them. It never fails: junk is skipped, a missing local part or domain
//! becomes `MISSING_MAILBOX` / `MISSING_DOMAIN` (Dovecot's spelling), because a NIL host
//! would turn the address into a group marker.

use imap_types::envelope::{Address, Envelope};

use super::nstring_opt;
use super::parse::{self, Field};

pub(super) fn build(fields: &[Field<'_>]) -> Envelope<'static> {
    let raw = |name: &str| {
        parse::first(fields, name)
            .map(parse::unfold)
            .filter(|v| !v.is_empty())
    };
    let addrs = |name: &str| {
        parse::first(fields, name)
            .map(address_list)
            .unwrap_or_default()
    };
    let from = addrs("From");
    // RFC 3501: an absent or empty Sender / Reply-To is reported as From.
    let or_from = |v: Vec<Address<'static>>| if v.is_empty() { from.clone() } else { v };
    Envelope {
        date: nstring_opt(raw("Date")),
        subject: nstring_opt(raw("Subject")),
        sender: or_from(addrs("Sender")),
        reply_to: or_from(addrs("Reply-To")),
        to: addrs("To"),
        cc: addrs("Cc"),
        bcc: addrs("Bcc"),
        in_reply_to: nstring_opt(raw("In-Reply-To")),
        message_id: nstring_opt(raw("Message-ID")),
        from,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An atom or a quoted string (unquoted), with whether whitespace or a comment came
    /// before it (to rebuild display names with their spacing).
    Word { text: Vec<u8>, space: bool },
    /// A comment's text, outer parentheses removed.
    Comment(Vec<u8>),
    /// `[...]` kept with its brackets.
    Literal(Vec<u8>),
    /// One of `< > @ , ; : .`
    Special(u8, bool),
}

fn tokenize(v: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut space = false;
    while let Some(&b) = v.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' | 0 => {
                space = true;
                i += 1;
            }
            b'(' => {
                let mut depth = 0usize;
                let mut text = Vec::new();
                while let Some(&c) = v.get(i) {
                    i += 1;
                    match c {
                        b'\\' => {
                            if let Some(&d) = v.get(i) {
                                text.push(d);
                                i += 1;
                            }
                        }
                        b'(' => {
                            if depth > 0 {
                                text.push(c);
                            }
                            depth += 1;
                        }
                        b')' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                break;
                            }
                            text.push(c);
                        }
                        b'\r' | b'\n' | 0 => {}
                        _ => text.push(c),
                    }
                }
                out.push(Tok::Comment(text));
                space = true;
            }
            b'"' => {
                i += 1;
                let mut text = Vec::new();
                while let Some(&c) = v.get(i) {
                    i += 1;
                    match c {
                        b'"' => break,
                        b'\\' => {
                            if let Some(&d) = v.get(i) {
                                text.push(d);
                                i += 1;
                            }
                        }
                        b'\r' | b'\n' | 0 => {}
                        _ => text.push(c),
                    }
                }
                out.push(Tok::Word { text, space });
                space = false;
            }
            b'[' => {
                let start = i;
                while let Some(&c) = v.get(i) {
                    i += 1;
                    if c == b']' {
                        break;
                    }
                }
                let text = v[start..i]
                    .iter()
                    .copied()
                    .filter(|c| !matches!(c, b'\r' | b'\n' | 0))
                    .collect();
                out.push(Tok::Literal(text));
                space = false;
            }
            b'<' | b'>' | b'@' | b',' | b';' | b':' | b'.' => {
                out.push(Tok::Special(b, space));
                space = false;
                i += 1;
            }
            b')' | b']' => {
                // Stray closers carry no meaning.
                i += 1;
            }
            _ => {
                let start = i;
                while v.get(i).is_some_and(|&c| {
                    !matches!(
                        c,
                        b' ' | b'\t'
                            | b'\r'
                            | b'\n'
                            | 0
                            | b'('
                            | b')'
                            | b'"'
                            | b'['
                            | b']'
                            | b'<'
                            | b'>'
                            | b'@'
                            | b','
                            | b';'
                            | b':'
                            | b'.'
                    )
                }) {
                    i += 1;
                }
                out.push(Tok::Word {
                    text: v[start..i].to_vec(),
                    space,
                });
                space = false;
            }
        }
    }
    out
}

/// Renders words and dots: with their original spacing (display names) or without any
/// (local parts, domains).
fn render(toks: &[Tok], spaced: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for t in toks {
        let (text, space): (&[u8], bool) = match t {
            Tok::Word { text, space } => (text, *space),
            Tok::Literal(text) => (text, false),
            Tok::Special(c, space) => (std::slice::from_ref(c), *space),
            Tok::Comment(_) => continue,
        };
        if spaced && space && !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(text);
    }
    out
}

fn addr(
    name: Option<Vec<u8>>,
    adl: Option<Vec<u8>>,
    mailbox: Option<Vec<u8>>,
    host: Option<Vec<u8>>,
) -> Address<'static> {
    Address {
        name: nstring_opt(name.filter(|n| !n.is_empty())),
        adl: nstring_opt(adl.filter(|n| !n.is_empty())),
        mailbox: nstring_opt(mailbox),
        host: nstring_opt(host),
    }
}

fn or_missing(v: Vec<u8>, missing: &str) -> Vec<u8> {
    if v.is_empty() {
        missing.as_bytes().to_vec()
    } else {
        v
    }
}

/// Parses an RFC 5322 address list (leniently, including obsolete forms).
pub(super) fn address_list(value: &[u8]) -> Vec<Address<'static>> {
    let toks = tokenize(value);
    let mut out = Vec::new();
    let mut in_group = false;
    let mut i = 0;
    let is = |i: usize, c: u8| matches!(toks.get(i), Some(Tok::Special(s, _)) if *s == c);
    while i < toks.len() {
        // Display name / local part / group name: words, dots, comments.
        let start = i;
        let mut comment: Option<Vec<u8>> = None;
        while let Some(t) = toks.get(i) {
            match t {
                Tok::Word { .. } | Tok::Literal(_) | Tok::Special(b'.', _) => {}
                Tok::Comment(c) => {
                    comment.get_or_insert_with(|| c.clone());
                }
                _ => break,
            }
            i += 1;
        }
        let phrase = &toks[start..i];
        let has_phrase = phrase.iter().any(|t| !matches!(t, Tok::Comment(_)));
        match toks.get(i) {
            Some(Tok::Special(b':', _)) if !in_group => {
                i += 1;
                in_group = true;
                out.push(addr(None, None, Some(render(phrase, true)), None));
            }
            Some(Tok::Special(b'<', _)) => {
                i += 1;
                // Source route: `@a,@b:` before the addr-spec.
                let mut adl = None;
                if is(i, b'@') {
                    let r = i;
                    while i < toks.len() && !is(i, b':') && !is(i, b'>') {
                        i += 1;
                    }
                    if is(i, b':') {
                        adl = Some(render(&toks[r..i], false));
                        i += 1;
                    } else {
                        i = r;
                    }
                }
                let l = i;
                while i < toks.len() && !is(i, b'@') && !is(i, b'>') {
                    i += 1;
                }
                let local = render(&toks[l..i], false);
                let mut domain = Vec::new();
                if is(i, b'@') {
                    i += 1;
                    let d = i;
                    while i < toks.len() && !is(i, b'>') {
                        i += 1;
                    }
                    domain = render(&toks[d..i], false);
                }
                i += 1; // `>`
                if has_phrase || !local.is_empty() || !domain.is_empty() {
                    let name = if has_phrase {
                        Some(render(phrase, true))
                    } else {
                        comment
                    };
                    out.push(addr(
                        name,
                        adl,
                        Some(or_missing(local, "MISSING_MAILBOX")),
                        Some(or_missing(domain, "MISSING_DOMAIN")),
                    ));
                }
            }
            Some(Tok::Special(b'@', _)) => {
                i += 1;
                let d = i;
                while let Some(t) = toks.get(i) {
                    match t {
                        Tok::Word { .. } | Tok::Literal(_) | Tok::Special(b'.', _) => {}
                        Tok::Comment(c) => {
                            comment.get_or_insert_with(|| c.clone());
                        }
                        _ => break,
                    }
                    i += 1;
                }
                out.push(addr(
                    comment,
                    None,
                    Some(or_missing(render(phrase, false), "MISSING_MAILBOX")),
                    Some(or_missing(render(&toks[d..i], false), "MISSING_DOMAIN")),
                ));
            }
            other => {
                // `,`, `;`, end, a stray `>` or a nested `:`: a bare word is a local part
                // without a domain.
                if has_phrase {
                    out.push(addr(
                        comment,
                        None,
                        Some(render(phrase, false)),
                        Some(b"MISSING_DOMAIN".to_vec()),
                    ));
                }
                if matches!(other, Some(Tok::Special(b';', _))) && in_group {
                    in_group = false;
                    out.push(addr(None, None, None, None));
                }
                i += 1;
            }
        }
    }
    if in_group {
        out.push(addr(None, None, None, None));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_types::core::NString;

    fn s(v: &str) -> NString<'static> {
        super::super::nstring(v.as_bytes().to_vec())
    }

    fn a(
        name: Option<&str>,
        adl: Option<&str>,
        mailbox: Option<&str>,
        host: Option<&str>,
    ) -> Address<'static> {
        Address {
            name: name.map_or(NString::NIL, s),
            adl: adl.map_or(NString::NIL, s),
            mailbox: mailbox.map_or(NString::NIL, s),
            host: host.map_or(NString::NIL, s),
        }
    }

    #[test]
    fn plain_and_named() {
        assert_eq!(
            address_list(
                b"John Q. Public <JQP@example.com>, bob@b.example (Bob B), \"Doe, Jane\" <jane@c>"
            ),
            vec![
                a(
                    Some("John Q. Public"),
                    None,
                    Some("JQP"),
                    Some("example.com")
                ),
                a(Some("Bob B"), None, Some("bob"), Some("b.example")),
                a(Some("Doe, Jane"), None, Some("jane"), Some("c")),
            ]
        );
    }

    #[test]
    fn encoded_word_name_stays_raw() {
        assert_eq!(
            address_list(b"=?utf-8?q?J=C3=B6rg_M.?= <j@x.example>"),
            vec![a(
                Some("=?utf-8?q?J=C3=B6rg_M.?="),
                None,
                Some("j"),
                Some("x.example")
            )]
        );
    }

    #[test]
    fn groups() {
        assert_eq!(
            address_list(b"A Group: a@b, Ann <c@d>; e@f, undisclosed-recipients:;"),
            vec![
                a(None, None, Some("A Group"), None),
                a(None, None, Some("a"), Some("b")),
                a(Some("Ann"), None, Some("c"), Some("d")),
                a(None, None, None, None),
                a(None, None, Some("e"), Some("f")),
                a(None, None, Some("undisclosed-recipients"), None),
                a(None, None, None, None),
            ]
        );
        // An unterminated group is closed at the end.
        assert_eq!(
            address_list(b"g: x@y"),
            vec![
                a(None, None, Some("g"), None),
                a(None, None, Some("x"), Some("y")),
                a(None, None, None, None)
            ]
        );
    }

    #[test]
    fn route_quoted_local_literal() {
        assert_eq!(
            address_list(b"<@r1.example,@r2.example:\"john doe\"@[192.0.2.1]>"),
            vec![a(
                None,
                Some("@r1.example,@r2.example"),
                Some("john doe"),
                Some("[192.0.2.1]")
            )]
        );
    }

    #[test]
    fn junk_never_panics_and_degrades() {
        assert_eq!(
            address_list(b"nobody"),
            vec![a(None, None, Some("nobody"), Some("MISSING_DOMAIN"))]
        );
        assert_eq!(address_list(b"<>"), vec![]);
        assert_eq!(
            address_list(b"Name <>"),
            vec![a(
                Some("Name"),
                None,
                Some("MISSING_MAILBOX"),
                Some("MISSING_DOMAIN")
            )]
        );
        assert_eq!(
            address_list(b"@host"),
            vec![a(None, None, Some("MISSING_MAILBOX"), Some("host"))]
        );
        for junk in [
            &b"<<<>>>,,;;::@@"[..],
            b"\"unterminated",
            b"(unterminated",
            b"a@",
            b"\x00\xff<\x80@\x81>",
            b"))]]",
        ] {
            let _ = address_list(junk);
        }
    }
}
