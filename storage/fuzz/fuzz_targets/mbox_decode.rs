//! mboxrd: encoding any bytes and decoding them gives them back; decoding any bytes never
//! panics and `decoded_len` agrees with `decode`.
#![no_main]
use hamail_storage::mbox::format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = format::decode(data, None);
    assert_eq!(format::decoded_len(data), decoded.len() as u64);
    let _ = format::from_line_date(data);
    let mut out = Vec::new();
    let from_len = format::encode(&mut out, "fuzz@example.test", 0, data);
    assert_eq!(format::boundaries(&out).count(), 1);
    assert_eq!(format::decode(&out[from_len..], Some(data.len() as u64)), data);
});
