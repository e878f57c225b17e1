//! `BODY[section]` (RFC 3501 §6.4.5): locating a part and cutting out its bytes.

use std::num::NonZeroU32;

use imap_types::{core::AString, fetch::Section};

use super::parse::{Entity, Kind};

/// The part at `path` (1-based numbers). Every message has a part 1: its body when it is
/// not multipart. A message/rfc822 part's sub-parts are those of the encapsulated message.
fn find<'e, 'a>(msg: &'e Entity<'a>, path: &[NonZeroU32]) -> Option<&'e Entity<'a>> {
    let (first, rest) = path.split_first()?;
    let mut cur = of_message(msg, *first)?;
    for n in rest {
        cur = match &cur.kind {
            Kind::Multipart(children) => nth(children, *n)?,
            Kind::Message(inner) => of_message(inner, *n)?,
            Kind::Leaf => return None,
        };
    }
    Some(cur)
}

fn of_message<'e, 'a>(msg: &'e Entity<'a>, n: NonZeroU32) -> Option<&'e Entity<'a>> {
    match &msg.kind {
        Kind::Multipart(children) => nth(children, n),
        _ if n.get() == 1 => Some(msg),
        _ => None,
    }
}

fn nth<'e, 'a>(children: &'e [Entity<'a>], n: NonZeroU32) -> Option<&'e Entity<'a>> {
    children.get(usize::try_from(n.get() - 1).ok()?)
}

/// The message a HEADER / TEXT / HEADER.FIELDS section refers to: the whole message
/// without a part number, else the message/rfc822 part's encapsulated message.
fn message<'e, 'a>(
    msg: &'e Entity<'a>,
    part: Option<&imap_types::fetch::Part>,
) -> Option<&'e Entity<'a>> {
    match part {
        None => Some(msg),
        Some(p) => match &find(msg, p.0.as_ref())?.kind {
            Kind::Message(inner) => Some(inner),
            _ => None,
        },
    }
}

pub(super) fn extract(msg: &Entity<'_>, section: &Section<'_>) -> Option<Vec<u8>> {
    Some(match section {
        Section::Part(p) => find(msg, p.0.as_ref())?.body.to_vec(),
        Section::Mime(p) => find(msg, p.0.as_ref())?.header.to_vec(),
        Section::Header(p) => message(msg, p.as_ref())?.header.to_vec(),
        Section::Text(p) => message(msg, p.as_ref())?.body.to_vec(),
        Section::HeaderFields(p, names) => {
            header_fields(message(msg, p.as_ref())?, names.as_ref(), true)
        }
        Section::HeaderFieldsNot(p, names) => {
            header_fields(message(msg, p.as_ref())?, names.as_ref(), false)
        }
    })
}

/// The fields whose name is (`keep`) or is not (`!keep`) in `names`, in message order
/// with their continuation lines, then the blank line.
fn header_fields(e: &Entity<'_>, names: &[AString<'_>], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for f in &e.fields {
        let listed = !f.name.is_empty()
            && names
                .iter()
                .any(|n| astring_bytes(n).eq_ignore_ascii_case(f.name));
        if listed == keep {
            out.extend_from_slice(f.raw);
            // The last field of a header without a blank line may lack its line end.
            if !f.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn astring_bytes<'s>(a: &'s AString<'_>) -> &'s [u8] {
    match a {
        AString::Atom(atom) => atom.as_ref().as_bytes(),
        AString::String(s) => s.as_ref(),
    }
}

/// `<start.len>`: the bytes from `start`, at most `len` of them; empty past the end.
pub(super) fn partial(data: &[u8], start: u32, len: u32) -> &[u8] {
    let start = usize::try_from(start).unwrap_or(usize::MAX);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    match data.get(start..) {
        Some(rest) => &rest[..rest.len().min(len)],
        None => &[],
    }
}
