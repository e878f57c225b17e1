//! Scanning arbitrary bytes as an mbox (the cold index build) never panics, and the
//! messages it finds tile the file exactly.
#![no_main]
use hamail_storage::index::sync::{new_uidvalidity, rebuild, scan, MboxStat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("hamail-fuzz-{}", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(f) = std::fs::File::open(&path) else { return };
    let mut next = 0u64;
    scan(&f, &path, 0, data.len() as u64, |s| {
        assert_eq!(s.meta.offset, next);
        next = s.meta.end();
    })
    .ok();
    assert!(data.is_empty() || next == data.len() as u64);
    if let Ok(stat) = MboxStat::of(&f, &path) {
        if let Ok(index) = rebuild(None, &f, &stat, &path, &mut |p| Ok(new_uidvalidity(p))) {
            assert_eq!(index.covered(), data.len() as u64);
        }
    }
});
