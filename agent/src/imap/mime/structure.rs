//! BODY / BODYSTRUCTURE (RFC 3501 §7.4.2) from the entity tree.

use imap_types::{
    body::{
        BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
        SinglePartExtensionData, SpecificFields,
    },
    core::{IString, NString, Vec1},
};

use super::parse::{self, Entity, Kind};
use super::{envelope, istring, nstring_opt};

pub(super) fn build(e: &Entity<'_>, extended: bool) -> BodyStructure<'static> {
    match &e.kind {
        Kind::Multipart(children) => {
            let bodies: Vec<BodyStructure<'static>> =
                children.iter().map(|c| build(c, extended)).collect();
            // IMAP cannot express a multipart without parts; like Dovecot, show one empty
            // text/plain part instead.
            let bodies = Vec1::try_from(bodies).unwrap_or_else(|_| Vec1::from(empty_text()));
            BodyStructure::Multi {
                bodies,
                subtype: istring(e.media.1.clone()),
                extension_data: extended.then(|| MultiPartExtensionData {
                    parameter_list: params(e),
                    tail: Some(disposition(e)),
                }),
            }
        }
        kind => {
            let lines = line_count(e.body);
            let specific = match kind {
                Kind::Message(inner) => SpecificFields::Message {
                    envelope: Box::new(envelope::build(&inner.fields)),
                    body_structure: Box::new(build(inner, extended)),
                    number_of_lines: lines,
                },
                _ if e.media.0.eq_ignore_ascii_case(b"text") => SpecificFields::Text {
                    subtype: istring(e.media.1.clone()),
                    number_of_lines: lines,
                },
                _ => SpecificFields::Basic {
                    r#type: istring(e.media.0.clone()),
                    subtype: istring(e.media.1.clone()),
                },
            };
            let cte = parse::first(&e.fields, "Content-Transfer-Encoding")
                .map(|v| {
                    parse::parse_params(v, false)
                        .0
                        .map(|(t, _)| t)
                        .unwrap_or_default()
                })
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| b"7BIT".to_vec());
            BodyStructure::Single {
                body: Body {
                    basic: BasicFields {
                        parameter_list: params(e),
                        id: raw(e, "Content-ID"),
                        description: raw(e, "Content-Description"),
                        content_transfer_encoding: istring(cte),
                        size: u32::try_from(e.body.len()).unwrap_or(u32::MAX),
                    },
                    specific,
                },
                extension_data: extended.then(|| SinglePartExtensionData {
                    md5: raw(e, "Content-MD5"),
                    tail: Some(disposition(e)),
                }),
            }
        }
    }
}

fn raw(e: &Entity<'_>, name: &str) -> NString<'static> {
    nstring_opt(
        parse::first(&e.fields, name)
            .map(parse::unfold)
            .filter(|v| !v.is_empty()),
    )
}

fn params(e: &Entity<'_>) -> Vec<(IString<'static>, IString<'static>)> {
    if e.defaulted {
        return vec![(istring(b"CHARSET".to_vec()), istring(b"US-ASCII".to_vec()))];
    }
    pairs(&e.params.params)
}

fn pairs(p: &[(Vec<u8>, Vec<u8>)]) -> Vec<(IString<'static>, IString<'static>)> {
    p.iter()
        .map(|(n, v)| (istring(n.clone()), istring(v.clone())))
        .collect()
}

/// Disposition, language and location: always all three, as Dovecot sends them.
fn disposition(e: &Entity<'_>) -> Disposition<'static> {
    let disposition = parse::first(&e.fields, "Content-Disposition").and_then(|v| {
        let (head, p) = parse::parse_params(v, false);
        head.map(|(t, _)| (istring(t), pairs(&p.params)))
    });
    let language = parse::first(&e.fields, "Content-Language")
        .map(|v| {
            parse::unfold(v)
                .split(|&b| b == b',')
                .map(|l| {
                    // Drop comments; a language tag has no spaces.
                    let l = match l.iter().position(|&b| b == b'(') {
                        Some(i) => &l[..i],
                        None => l,
                    };
                    parse::trim(l).to_vec()
                })
                .filter(|l| !l.is_empty())
                .map(istring)
                .collect()
        })
        .unwrap_or_default();
    Disposition {
        disposition,
        tail: Some(Language {
            language,
            tail: Some(Location {
                location: raw(e, "Content-Location"),
                extensions: Vec::new(),
            }),
        }),
    }
}

/// Lines of a part body: its line breaks, plus a last line without one (a part's final
/// CRLF belongs to the boundary, so `hello` before `--b` is one line).
fn line_count(body: &[u8]) -> u32 {
    let n = memchr::memchr_iter(b'\n', body).count()
        + usize::from(body.last().is_some_and(|&b| b != b'\n'));
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn empty_text() -> BodyStructure<'static> {
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: vec![(istring(b"CHARSET".to_vec()), istring(b"US-ASCII".to_vec()))],
                id: NString::NIL,
                description: NString::NIL,
                content_transfer_encoding: istring(b"7BIT".to_vec()),
                size: 0,
            },
            specific: SpecificFields::Text {
                subtype: istring(b"PLAIN".to_vec()),
                number_of_lines: 0,
            },
        },
        extension_data: None,
    }
}
