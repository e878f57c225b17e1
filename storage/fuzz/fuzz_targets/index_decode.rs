//! The index decoder rejects or accepts any bytes without panicking, and what it accepts
//! has ascending UIDs and contiguous messages.
#![no_main]
use hamail_storage::index::Index;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = Index::decode_bytes(data) {
        let mut end = 0;
        for m in &index.messages {
            assert_eq!(m.offset, end);
            end = m.end();
        }
        assert!(index.messages.windows(2).all(|w| w[0].uid < w[1].uid));
    }
});
