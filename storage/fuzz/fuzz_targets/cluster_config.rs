//! The cluster config parser and its consistency checks never panic on any text.
#![no_main]
use hamail_storage::cluster::ClusterConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = ClusterConfig::parse(text, std::path::Path::new("fuzz.toml")) {
            assert!(c.problems().is_empty());
        }
    }
});
