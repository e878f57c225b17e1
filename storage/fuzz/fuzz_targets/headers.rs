//! Dovecot/UW header import never panics on any header block.
#![no_main]
use hamail_storage::index::headers_parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let m = headers_parse(data);
    assert!(m.uid != Some(0));
});
