//! The passwd-file parser never panics, and every entry it keeps is a valid, lower-case
//! spool user name; checking a password against any parsed credential never panics.
#![no_main]
use hamail_agent::auth::passwd_file::{parse, Credential};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse(text, &["example.test".to_string()]);
    for user in parsed.table.users() {
        assert!(hamail_storage::spool::validate_user(user).is_ok(), "{user:?}");
        assert_eq!(user, user.to_ascii_lowercase());
        let cred = parsed.table.get(user);
        assert!(cred.is_some());
        // Only the cheap schemes: the sha/yescrypt ones are slow by design and their
        // verifiers are RustCrypto's, fuzzed there; md5-crypt is ours and fast enough.
        if let Some(
            c @ (Credential::Ssha { .. }
            | Credential::Sha(_)
            | Credential::Plain(_)
            | Credential::Md5Crypt { .. }),
        ) = cred
        {
            let _ = c.verify(text);
        }
    }
    // Each field alone, as the password column.
    let _ = Credential::parse(text);
});
