//! The DATA decoder (`hamail_storage::wire::DotDecoder`) never panics, gives the same
//! answer however the input is chunked, what it stores has no CR (bare CR and LF became
//! line breaks) and never contains the terminator it just consumed, and what it stores
//! comes back unchanged when the relay dot-stuffs it again and it is decoded once more.
#![no_main]
use hamail_storage::wire::{to_wire_dot_stuffed, DotDecoder, DotError, Progress};
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8], chunk: usize) -> Option<(usize, Result<Vec<u8>, DotError>)> {
    let mut d = DotDecoder::new(4096, 200);
    let mut pos = 0;
    while pos < data.len() {
        let end = (pos + chunk).min(data.len());
        if let Progress::Done(n) = d.feed(&data[pos..end]) {
            assert!(n <= end - pos);
            return Some((pos + n, d.finish()));
        }
        pos = end;
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let whole = run(rest, rest.len().max(1));
    let chunked = run(rest, usize::from(first % 7) + 1);
    assert_eq!(whole, chunked);
    if let Some((end, Ok(msg))) = whole {
        assert!(rest[..end].ends_with(b"\r\n.\r\n") || &rest[..end] == b".\r\n");
        assert!(!msg.contains(&b'\r'));
        let stuffed = to_wire_dot_stuffed(&msg, None);
        let mut again = DotDecoder::new(usize::MAX, usize::MAX);
        assert_eq!(again.feed(&stuffed), Progress::Done(stuffed.len()));
        let mut want = msg;
        if !want.is_empty() && !want.ends_with(b"\n") {
            want.push(b'\n');
        }
        assert_eq!(again.finish(), Ok(want));
    }
});
