//! The `hamail-lab` binary itself: `up` on a fresh directory writes lab.json as
//! documented and starts everything; `down` leaves no process behind; every `bench` parses
//! its options.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

/// Processes whose command line names `config`.
fn processes_using(config: &std::path::Path) -> Vec<u32> {
    let want = config.as_os_str().as_encoded_bytes().to_vec();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == want.as_slice()))
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z'))
        })
        .collect()
}

#[test]
fn up_then_down_leaves_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let base = support::base().to_string();
    let bin = env!("CARGO_BIN_EXE_hamail-lab");
    let out = Command::new(bin)
        .args(["up", "--dir"])
        .arg(dir.path())
        .args(["--hosts", "2", "--base", &base])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tour = String::from_utf8_lossy(&out.stdout);
    assert!(
        tour.contains("swaks --server") && tour.contains("dnsctl --config"),
        "{tour}"
    );

    let info = hamail_lab::LabInfo::load(dir.path()).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("lab.json")).unwrap()).unwrap();
    for key in [
        "domain", "dir", "config", "spool", "ca_cert", "dns", "hosts", "users",
    ] {
        assert!(json.get(key).is_some(), "lab.json lacks {key}");
    }
    assert_eq!(json["hosts"][1]["ports"]["imaps"], 2993);
    assert_eq!(json["dns"]["port"], 5353);
    assert_eq!(info.hosts.len(), 2);
    let running = processes_using(&info.config);
    assert_eq!(running.len(), 3, "2 agents + dnsctl: {running:?}");

    let status = Command::new(bin)
        .args(["status", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&status.stdout).contains("host2"));

    let out = Command::new(bin)
        .args(["down", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(processes_using(&info.config), Vec::<u32>::new());
    assert!(dir.path().join("spool").is_dir(), "the spool is kept");
}

#[test]
fn every_bench_has_its_options() {
    let bin = env!("CARGO_BIN_EXE_hamail-lab");
    for (bench, option) in [
        ("smtp", "--repeat"),
        ("imap", "--messages"),
        ("dns", "[THREADS]"),
        ("spool", "--appends"),
        ("failover", "[TRIALS]"),
    ] {
        let out = Command::new(bin)
            .args(["bench", bench, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && help.contains(option),
            "{bench}: {help}"
        );
    }
}
