//! The IMAP MIME functions never panic on any bytes, and what they return is consistent:
//! BODY[] is the message, HEADER + TEXT is the message, a partial is a slice of its section,
//! and both BODY and BODYSTRUCTURE can be built.
#![no_main]
use std::num::NonZeroU32;

use hamail_agent::imap::mime::{body_structure, envelope, partial, section};
use imap_types::{
    core::{AString, Vec1},
    fetch::{Part, Section},
};
use libfuzzer_sys::fuzz_target;

fn part(path: &[u32]) -> Part {
    let nums: Vec<NonZeroU32> = path.iter().filter_map(|&n| NonZeroU32::new(n)).collect();
    Part(Vec1::try_from(nums).unwrap_or_else(|_| Vec1::from(NonZeroU32::MIN)))
}

fuzz_target!(|data: &[u8]| {
    let _ = envelope(data);
    let _ = body_structure(data, true);
    let _ = body_structure(data, false);

    assert_eq!(section(data, None).as_deref(), Some(data));
    let header = section(data, Some(&Section::Header(None))).unwrap_or_default();
    let text = section(data, Some(&Section::Text(None))).unwrap_or_default();
    assert_eq!([header, text].concat(), data);

    let names = Vec1::try_from(vec![
        AString::try_from("subject").unwrap(),
        AString::try_from("content-type").unwrap(),
    ])
    .unwrap();
    let sections = [
        Section::HeaderFields(None, names.clone()),
        Section::HeaderFieldsNot(None, names.clone()),
        Section::Part(part(&[1])),
        Section::Part(part(&[2])),
        Section::Part(part(&[1, 1])),
        Section::Part(part(&[2, 1, 2])),
        Section::Mime(part(&[1])),
        Section::Mime(part(&[1, 2])),
        Section::Header(Some(part(&[1]))),
        Section::Text(Some(part(&[2]))),
        Section::HeaderFields(Some(part(&[1])), names),
    ];
    for s in &sections {
        if let Some(bytes) = section(data, Some(s)) {
            let len = data.first().copied().unwrap_or(0).into();
            let p = partial(&bytes, 3, len);
            assert!(p.len() <= usize::from(data.first().copied().unwrap_or(0)));
            // Body sections are slices of the message; HEADER.FIELDS builds new bytes.
            if matches!(
                s,
                Section::Part(_) | Section::Mime(_) | Section::Text(_) | Section::Header(_)
            ) {
                assert!(bytes.len() <= data.len());
            }
        }
    }
});
