//! The docs stay true to the repository: no relative link, anchor or file path in any
//! Markdown file points at something that is not there (or outside the repository), and
//! the root README stays a newcomer's page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

#[test]
fn no_dangling_references_in_the_docs() {
    let out = Command::new("python3")
        .arg(repo().join("tests/doc_links.py"))
        .arg(repo())
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The checker really looked (it would also pass on an empty list).
    assert!(text.contains("relative links"), "{text}");
}

#[test]
fn the_root_readme_is_at_most_15_kb() {
    let size = std::fs::metadata(repo().join("README.md")).unwrap().len();
    assert!(size <= 15 * 1024, "README.md is {size} bytes");
}
