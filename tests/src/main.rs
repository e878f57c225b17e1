//! hamail-lab: the one-machine cluster and end-to-end tests. Arrives in a later issue; for
//! now it only proves the workspace wiring.

fn main() {
    eprintln!(
        "hamail-lab {}: not implemented yet (see the open issues)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::exit(2);
}
