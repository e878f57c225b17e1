//! hamail-agent: the per-host mail daemon. SMTP, POP3 and IMAP arrive in later issues;
//! for now it only proves the workspace wiring.

fn main() {
    eprintln!(
        "hamail-agent {}: not implemented yet (see the open issues)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
