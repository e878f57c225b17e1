//! The aliases parser never panics, and what it keeps is well-formed: lower-case names
//! without blanks, targets without control characters or angle brackets.
#![no_main]
use hamail_agent::auth::aliases::{parse, AliasTarget};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Includes resolve to the input itself, exercising nesting and loop detection.
    let parsed = parse(text, &mut |_| Ok(text.to_string()));
    for name in parsed.table.names() {
        assert!(!name.is_empty() && !name.contains(char::is_whitespace));
        assert_eq!(name, name.to_ascii_lowercase());
        for t in parsed.table.get(name).unwrap_or_default() {
            let s = match t {
                AliasTarget::Local(s) | AliasTarget::Mailbox(s) | AliasTarget::Address(s) => s,
            };
            assert!(!s.is_empty());
            assert!(!s.contains(|c: char| c.is_control() || c == '<' || c == '>'));
        }
    }
});
