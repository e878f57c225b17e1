//! The checksummed framing (queue files, pending appends, intents) never panics on any
//! input, and re-encoding an accepted record gives the same bytes.
#![no_main]
use hamail_storage::record::{Record, Writer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let magic = b"HMFUZZ01";
    let mut framed = magic.to_vec();
    framed.extend_from_slice(data);
    for input in [data, &framed[..]] {
        if let Ok(rec) = Record::decode(input, magic, "fuzz", std::path::Path::new("f")) {
            let mut w = Writer::new(magic);
            for (tag, value) in rec.fields() {
                w.field(tag, value);
            }
            assert_eq!(w.finish(), input);
        }
    }
});
