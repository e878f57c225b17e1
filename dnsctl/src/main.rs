//! dnsctl: authoritative DNS for the mail domain plus the health controller. Arrives in a
//! later issue; for now it only proves the workspace wiring.

fn main() {
    eprintln!(
        "dnsctl {}: not implemented yet (see the open issues)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
