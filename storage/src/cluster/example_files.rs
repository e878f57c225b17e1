//! The example configs in `examples/config/` (at the repository root) parse with the real
//! parser and say what they are meant to say, and the documentation shows them as they
//! are: a README block that follows the marker
//! `<!-- example-config: examples/config/NAME.toml -->` must equal that file byte for
//! byte.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::*;

/// The repository root (the workspace's).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn examples_dir() -> PathBuf {
    repo_root().join("examples/config")
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// (name, address, MX priority) of every host.
fn hosts(c: &ClusterConfig) -> Vec<(&str, IpAddr, u16)> {
    c.hosts
        .iter()
        .map(|h| (h.name.as_str(), h.address, h.mx_priority))
        .collect()
}

#[test]
fn every_example_config_parses_and_says_what_it_should() {
    let mut names: Vec<String> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.contains(&"hamail.toml".to_string()), "{names:?}");
    for name in &names {
        let path = examples_dir().join(name);
        let c = ClusterConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        match name.as_str() {
            "hamail.toml" => documented_example(&c),
            "dns.toml" => {
                assert_eq!(c.cluster.domains, ["example.test", "example.org"]);
                assert_eq!(
                    hosts(&c),
                    [
                        ("host1", ip("10.0.0.11"), 10),
                        ("host2", ip("10.0.0.12"), 20),
                        ("host3", ip("10.0.0.13"), 30)
                    ]
                );
                let d = c.dns.as_ref().unwrap();
                assert_eq!(d.listen, "10.0.0.14:53".parse().unwrap());
                assert!(d.rfc2136.is_none(), "dnsctl serves the zones itself");
                let records: Vec<(&str, &str)> = d
                    .records
                    .iter()
                    .map(|r| (r.name.as_str(), r.rtype.as_str()))
                    .collect();
                assert_eq!(records, [("www", "CNAME"), ("@", "TXT")]);
                assert_eq!(d.ttl_secs, default_dns_ttl());
            }
            "rfc2136.toml" => {
                assert_eq!(c.cluster.domains, ["example.test"]);
                assert_eq!(c.hosts[1].address, ip("fd00::12"));
                let u = c.dns.as_ref().unwrap().rfc2136.as_ref().unwrap();
                assert_eq!(u.server, "10.0.0.53:53".parse().unwrap());
                assert_eq!(
                    (u.key_name.as_str(), u.algorithm.as_str()),
                    ("hamail-key", "hmac-sha256")
                );
                assert_eq!(u.secret_file, Path::new("/etc/hamail/tsig.key"));
            }
            "lab.toml" => {
                // What `hamail-lab config` writes for the VM lab (tests/src/files.rs
                // checks that it still does).
                assert_eq!(c.cluster.spool, Path::new("/srv/mail"));
                assert_eq!(
                    hosts(&c),
                    [
                        ("host1", ip("10.0.0.11"), 10),
                        ("host2", ip("10.0.0.12"), 20),
                        ("host3", ip("10.0.0.13"), 30)
                    ]
                );
                assert!(c.tls.as_ref().unwrap().allow_plaintext_auth, "the lab only");
                assert_eq!((c.listeners.smtp, c.listeners.imap), (2525, 2143));
                assert!(c.locking.stale_after_secs > c.locking.timeout_secs);
                let d = c.dns.as_ref().unwrap();
                assert_eq!(d.listen, "10.0.0.10:5353".parse().unwrap());
            }
            other => panic!(
                "examples/config/{other}: new example; say in {} what it must contain",
                file!()
            ),
        }
    }
}

/// `hamail.toml`, the README's example: two hosts, the file backend, TLS, and every
/// section the README marks "defaults shown" equal to the code's defaults.
fn documented_example(c: &ClusterConfig) {
    const DEFAULTS: &str = "the documented example shows the code's defaults";
    assert_eq!(c.cluster.domains, ["example.test"]);
    assert_eq!(c.cluster.spool, Path::new("/srv/mail"));
    assert_eq!(
        hosts(c),
        [
            ("host1", ip("10.0.0.11"), 10),
            ("host2", ip("10.0.0.12"), 20)
        ]
    );
    assert_eq!(c.auth.backend, AuthBackend::File);
    assert!(c.auth.passwd_file.is_some() && c.auth.aliases_file.is_some());
    assert!(c.auth.ldap.is_none() && c.auth.nis.is_none());
    assert!(!c.tls.as_ref().unwrap().allow_plaintext_auth);
    assert_eq!(c.listeners, Listeners::default(), "[listeners]: {DEFAULTS}");
    assert_eq!(c.limits, Limits::default(), "[limits]: {DEFAULTS}");
    assert_eq!(c.locking, Locking::default(), "[locking]: {DEFAULTS}");
    assert_eq!(c.queue, QueueConfig::default(), "[queue]: {DEFAULTS}");
    assert_eq!(c.health, Health::default(), "[health]: {DEFAULTS}");
    assert_eq!(c.relay, Relay::default(), "[relay]: {DEFAULTS}");
    assert!(c.dns.is_none());
}

/// The README example's commented-out settings (`# key = value`, `# [auth.ldap]`) are
/// valid once uncommented, and the ones it calls defaults are the defaults.
#[test]
fn the_commented_settings_of_the_documented_example_are_valid_and_defaults_are_defaults() {
    let text = std::fs::read_to_string(examples_dir().join("hamail.toml")).unwrap();
    let setting = |rest: &str| {
        rest.starts_with('[')
            || rest
                .split_once(" = ")
                .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    };
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if setting(rest) => rest,
            _ => l,
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    assert_ne!(uncommented, text);
    let c = ClusterConfig::parse(&uncommented, Path::new("hamail.toml (uncommented)"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.hosts[0].fqdn.as_deref(), Some("mx1.example.test"));
    assert!(c.relay.smarthost.is_some() && c.relay.resolver.is_some());
    assert!(c.health.listen.is_some());
    let l = c.auth.ldap.as_ref().unwrap();
    assert_eq!(l.urls.len(), 2);
    assert!(!l.starttls && !l.compare_hashes);
    assert_eq!(l.user_filter, default_ldap_user_filter());
    assert_eq!(l.user_attr, default_ldap_user_attr());
    assert_eq!(l.mail_attrs, default_ldap_mail_attrs());
    assert_eq!(
        (
            l.connect_timeout_secs,
            l.timeout_secs,
            l.pool_size,
            l.cache_secs
        ),
        (
            default_ldap_connect_timeout(),
            default_ldap_timeout(),
            default_ldap_pool_size(),
            default_ldap_cache()
        )
    );
    let n = c.auth.nis.as_ref().unwrap();
    assert_eq!(n.servers.len(), 2);
    assert_eq!(
        (n.timeout_ms, n.attempts, &n.passwd_map, &n.aliases_map),
        (
            default_nis_timeout(),
            default_nis_attempts(),
            &default_nis_passwd_map(),
            &default_nis_aliases_map()
        )
    );
}

const MARKER_START: &str = "<!-- example-config:";

/// Every `README.md` under `dir`, skipping build output and hidden directories.
fn readmes(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && !name.starts_with('.') && name != "target" {
            readmes(&entry.path(), out);
        } else if kind.is_file() && name == "README.md" {
            out.push(entry.path());
        }
    }
}

#[test]
fn readme_blocks_marked_as_example_configs_equal_the_files() {
    let root = repo_root();
    let mut files = Vec::new();
    readmes(&root, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no README.md under {}", root.display());
    let mut shown = Vec::new();
    for readme in &files {
        let text = std::fs::read_to_string(readme).unwrap();
        let lines: Vec<&str> = text.split('\n').collect();
        let rel = readme.strip_prefix(&root).unwrap_or(readme).display();
        for (i, line) in lines.iter().enumerate() {
            let Some(rest) = line.trim().strip_prefix(MARKER_START) else {
                continue;
            };
            let at = format!("{rel}:{}", i + 1);
            let name = rest
                .strip_suffix("-->")
                .unwrap_or_else(|| panic!("{at}: the marker must end with -->"))
                .trim();
            assert_eq!(
                lines.get(i + 1).map(|l| l.trim_end()),
                Some("```toml"),
                "{at}: a ```toml block must follow the marker for {name} on the next line"
            );
            let body: Vec<&str> = lines[i + 2..]
                .iter()
                .take_while(|l| l.trim_end() != "```")
                .copied()
                .collect();
            assert!(
                i + 2 + body.len() < lines.len(),
                "{at}: the block for {name} is not closed"
            );
            let block = body.iter().flat_map(|l| [*l, "\n"]).collect::<String>();
            let file = std::fs::read_to_string(root.join(name))
                .unwrap_or_else(|e| panic!("{at}: {name}: {e}"));
            if block != file {
                let line = block
                    .lines()
                    .zip(file.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(block.lines().count().min(file.lines().count()));
                panic!(
                    "{at}: the block differs from {name} (first at line {} of the file); \
                     make them equal (the file is the one the tests parse)",
                    line + 1
                );
            }
            shown.push(name.to_string());
        }
    }
    assert!(
        shown.iter().any(|n| n == "examples/config/hamail.toml"),
        "no README shows examples/config/hamail.toml: put the line\n\
         {MARKER_START} examples/config/hamail.toml -->\nright before its ```toml block"
    );
}
