//! MIME for the IMAP server: ENVELOPE, BODY/BODYSTRUCTURE and `BODY[section]` bytes of one
//! message. Pure functions over the exact bytes the client sees (RFC 5322 with CRLF line
//! ends); no I/O, no state. They accept any input: malformed MIME degrades to the RFC 2045
//! defaults (text/plain, 7bit), a missing close delimiter ends the part at the end of the
//! body, and nesting deeper than 20 levels is shown as an opaque leaf.
//!
//! Turning the values into a FETCH response (`imap_types::fetch::MessageDataItem`):
//! - ENVELOPE → `MessageDataItem::Envelope(envelope(msg))`
//! - BODYSTRUCTURE → `MessageDataItem::BodyStructure(body_structure(msg, true))`
//! - BODY (no section) → `MessageDataItem::Body(body_structure(msg, false))`
//! - `BODY[s]<o.n>` → `MessageDataItem::BodyExt { section, origin: Some(o) if partial,
//!   data }` with the bytes of `section(msg, s)` (then `partial`) as a literal; a section
//!   that does not exist (`None`) is answered with the empty string, as Dovecot does.
//! - RFC822.HEADER / RFC822.TEXT are `Section::Header(None)` / `Section::Text(None)`.
//!
//! Section bytes are returned as they are; an IMAP literal cannot hold NUL, so the caller
//! must deal with a message containing NUL (e.g. `Literal8` after BINARY, or replace it)
//! before building `Literal`. ENVELOPE and BODYSTRUCTURE strings already have NULs dropped.

mod envelope;
mod parse;
mod section;
mod structure;

use std::borrow::Cow;

use imap_types::{
    body::BodyStructure,
    core::{IString, Literal, NString, Quoted},
    envelope::Envelope,
    fetch::Section,
};

use parse::Entity;

/// RFC 3501 ENVELOPE of `msg`: header strings raw (unfolded, encoded-words untouched),
/// addresses parsed, group syntax as start/end markers, NIL for what is missing. Sender
/// and Reply-To fall back to From.
pub fn envelope(msg: &[u8]) -> Envelope<'static> {
    let (header, _) = parse::split(msg);
    envelope::build(&parse::fields(header))
}

/// BODYSTRUCTURE (`extended`) or BODY (`!extended`) of `msg`. Sizes are octets of each
/// part's body as it appears in `msg` (the CRLF before a boundary excluded), line counts
/// are given for text/* and message/rfc822.
pub fn body_structure(msg: &[u8], extended: bool) -> BodyStructure<'static> {
    structure::build(&Entity::parse(msg, false, 0), extended)
}

/// The bytes of `BODY[section]` (RFC 3501 §6.4.5); `None` or an empty section is the whole
/// message. Returns `None` when the part does not exist (including HEADER/TEXT of a part
/// that is not message/rfc822); the caller answers those with an empty string.
pub fn section(msg: &[u8], section: Option<&Section<'_>>) -> Option<Vec<u8>> {
    match section {
        None => Some(msg.to_vec()),
        Some(s) => section::extract(&Entity::parse(msg, false, 0), s),
    }
}

/// `<start.len>` of a section's bytes: at most `len` octets from `start`, empty when
/// `start` is past the end.
pub fn partial(data: &[u8], start: u32, len: u32) -> &[u8] {
    section::partial(data, start, len)
}

/// Any bytes as an IMAP string: quoted when it can be, else a literal. NULs are dropped
/// (no IMAP string carries them; the parsers already removed them, this is the backstop).
fn istring(mut v: Vec<u8>) -> IString<'static> {
    v.retain(|&b| b != 0);
    if Quoted::validate(&v).is_ok() {
        if let Ok(s) = String::from_utf8(v.clone()) {
            if let Ok(q) = Quoted::try_from(s) {
                return IString::Quoted(q);
            }
        }
    }
    match Literal::try_from(v) {
        Ok(l) => IString::Literal(l),
        Err(_) => IString::Quoted(Quoted::unvalidated(Cow::Borrowed(""))),
    }
}

fn nstring(v: Vec<u8>) -> NString<'static> {
    NString(Some(istring(v)))
}

fn nstring_opt(v: Option<Vec<u8>>) -> NString<'static> {
    v.map_or(NString::NIL, nstring)
}

#[cfg(test)]
mod tests;
