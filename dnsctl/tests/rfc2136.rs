//! RFC 2136 mode end to end against a real BIND `named` (packages `bind9` and
//! `bind9-dnsutils`, installed by `.ci/run`): a private named on 127.0.0.1 and a free
//! port, a primary zone that allows updates signed with a `tsig-keygen` key, and `dig`
//! to see what the server serves after each [`Updater::apply`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dnsctl::rfc2136::Updater;
use dnsctl::{policy, zone};
use hamail_storage::cluster::ClusterConfig;

const ZONE: &str = "\
$TTL 30
@        IN SOA ns.example.test. hostmaster.example.test. 1 300 60 1209600 30
@        IN NS  ns.example.test.
@        IN MX  10 old.example.test.
ns       IN A   127.0.0.1
old      IN A   192.0.2.99
mail     IN A   192.0.2.99
host1    IN A   10.0.0.11
host2    IN AAAA fd00::12
host3    IN A   10.0.0.13
";

/// A named of our own, killed (and reaped) when the test ends, pass or fail.
struct Named {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 (named needs both). BIND only binds
/// addresses configured on an interface, so it is 127.0.0.1 and a free port rather than
/// an address of our own in 127/8.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn tsig_keygen(dir: &Path, file: &str) -> PathBuf {
    let out = Command::new("tsig-keygen")
        .args(["-a", "hmac-sha256", "hamail-key"])
        .output()
        .expect("tsig-keygen (package bind9) must be installed; see .ci/run");
    assert!(out.status.success());
    let path = dir.join(file);
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn start_named() -> Named {
    assert!(
        Path::new("/usr/sbin/named").exists(),
        "named (package bind9) must be installed; see .ci/run"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let port = free_port();
    tsig_keygen(dir.path(), "hamail-key.conf");
    std::fs::write(dir.path().join("example.test.zone"), ZONE).unwrap();
    let conf = format!(
        r#"include "{d}/hamail-key.conf";
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
}};
controls {{ }};
zone "example.test" {{
    type primary;
    file "{d}/example.test.zone";
    journal "{d}/example.test.zone.jnl";
    allow-update {{ key hamail-key; }};
}};
"#
    );
    std::fs::write(dir.path().join("named.conf"), conf).unwrap();
    let log = std::fs::File::create(dir.path().join("named.log")).unwrap();
    let child = Command::new("/usr/sbin/named")
        .args(["-g", "-u", "root", "-c"])
        .arg(dir.path().join("named.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let named = Named {
        child,
        dir,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while dig(&named, "example.test", "SOA").is_empty() {
        assert!(
            Instant::now() < deadline,
            "named did not answer; its log:\n{}",
            std::fs::read_to_string(named.dir.path().join("named.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    named
}

/// `dig +short`, one answer a line.
fn dig(named: &Named, name: &str, rtype: &str) -> Vec<String> {
    let out = Command::new("dig")
        .arg(format!("@{}", named.addr.ip()))
        .args(["-p", &named.addr.port().to_string()])
        .args(["+short", "+time=1", "+tries=1", name, rtype])
        .output()
        .expect("dig (package bind9-dnsutils) must be installed; see .ci/run");
    if !out.status.success() {
        return Vec::new();
    }
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with(";;"))
        .map(str::to_string)
        .collect()
}

/// MX answers sorted by preference (dig prints the RRset in any order).
fn mx(named: &Named) -> Vec<String> {
    let mut v = dig(named, "example.test", "MX");
    v.sort_by_key(|l| {
        l.split_whitespace()
            .next()
            .and_then(|p| p.parse::<u16>().ok())
    });
    v
}

fn soa_serial(named: &Named) -> u32 {
    let soa = dig(named, "example.test", "SOA");
    soa[0].split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// `examples/config/rfc2136.toml` (three hosts, host2 on IPv6) updating the private named
/// at `server` with the key in `secret_file`.
fn config(server: SocketAddr, secret_file: &Path) -> ClusterConfig {
    let mut config = ClusterConfig::parse(
        include_str!("../../examples/config/rfc2136.toml"),
        Path::new("examples/config/rfc2136.toml"),
    )
    .unwrap();
    let dns = config.dns.as_mut().unwrap();
    let remote = dns.rfc2136.as_mut().unwrap();
    remote.server = server;
    remote.secret_file = secret_file.to_path_buf();
    config
}

fn snapshot(config: &ClusterConfig, down: &[&str]) -> zone::Snapshot {
    let dns = config.dns.clone().unwrap();
    let plan = policy::plan(
        &config.hosts,
        |h| !down.contains(&h),
        &BTreeSet::new(),
        None,
    );
    zone::build(config, &dns, &plan, 1)
}

#[tokio::test]
async fn updates_a_real_bind_primary() {
    let named = start_named();
    let config = config(named.addr, &named.dir.path().join("hamail-key.conf"));
    let rfc = config.dns.as_ref().unwrap().rfc2136.clone().unwrap();
    let updater = Updater::new(&rfc).unwrap();
    let serial0 = soa_serial(&named);

    // All healthy: configured order, mail. on host1 (A); the zone file's old MX and
    // mail. address are gone.
    updater.apply(&snapshot(&config, &[])).await.unwrap();
    assert_eq!(
        mx(&named),
        [
            "10 host1.example.test.",
            "20 host2.example.test.",
            "30 host3.example.test."
        ]
    );
    assert_eq!(dig(&named, "mail.example.test", "A"), ["10.0.0.11"]);
    assert!(dig(&named, "mail.example.test", "AAAA").is_empty());
    let serial1 = soa_serial(&named);
    assert!(serial1 > serial0, "{serial1} > {serial0}");

    // host1 down: host2 first, mail. moves to host2's AAAA and the A is deleted.
    updater.apply(&snapshot(&config, &["host1"])).await.unwrap();
    let failed_over = [
        "10 host2.example.test.",
        "20 host3.example.test.",
        "30 host1.example.test.",
    ];
    assert_eq!(mx(&named), failed_over);
    assert_eq!(dig(&named, "mail.example.test", "AAAA"), ["fd00::12"]);
    assert!(dig(&named, "mail.example.test", "A").is_empty());
    let serial2 = soa_serial(&named);
    assert!(serial2 > serial1, "{serial2} > {serial1}");

    // Same key name, another secret: rejected, and nothing changes.
    let mut wrong = rfc.clone();
    wrong.secret_file = tsig_keygen(named.dir.path(), "wrong-key.conf");
    let err = Updater::new(&wrong)
        .unwrap()
        .apply(&snapshot(&config, &[]))
        .await
        .unwrap_err();
    let text = err.to_string();
    eprintln!("wrong key: {text}");
    assert!(
        ["NOTAUTH", "BADSIG", "BADKEY", "REFUSED"]
            .iter()
            .any(|w| text.contains(w)),
        "{text}"
    );
    assert!(text.contains("key"), "names the likely cause: {text}");
    assert_eq!(mx(&named), failed_over);
    assert_eq!(dig(&named, "mail.example.test", "AAAA"), ["fd00::12"]);
    assert_eq!(soa_serial(&named), serial2);
}

/// `dnsctl serve` itself in RFC 2136 mode: the same probes and policy as the bundled
/// server, and the same CLI, reach BIND as signed updates.
#[test]
fn dnsctl_serve_drives_bind_with_the_same_policy_and_cli() {
    use support::{wait_for, Dnsctl, StandIn};
    let named = start_named();
    let (h1, h2, h3) = (StandIn::start(), StandIn::start(), StandIn::start());
    let secret = named.dir.path().join("hamail-key.conf");
    let extra = format!(
        "[dns.rfc2136]\nserver = \"{}\"\nkey_name = \"hamail-key\"\nsecret_file = \"{}\"\n",
        named.addr,
        secret.display()
    );
    let mut d = Dnsctl::new(
        &[&h1, &h2, &h3],
        "interval_secs = 1\nfail_after = 3\nrecover_after = 3",
        &extra,
    );
    d.start_remote();
    let first = |n: &Named| mx(n).first().cloned().unwrap_or_default();
    assert!(wait_for(Duration::from_secs(5), || first(&named)
        == "10 host1.example.test."));
    assert_eq!(dig(&named, "mail.example.test", "A"), [h1.ip.to_string()]);
    let serial0 = soa_serial(&named);

    h1.set_up(false);
    assert!(
        wait_for(Duration::from_secs(5), || first(&named)
            == "10 host2.example.test."),
        "{}",
        d.log()
    );
    assert_eq!(dig(&named, "mail.example.test", "A"), [h2.ip.to_string()]);
    assert!(soa_serial(&named) > serial0);

    assert!(d.cli(&["failover", "host3"]).status.success());
    assert!(wait_for(Duration::from_secs(1), || first(&named)
        == "10 host3.example.test."));
    assert_eq!(dig(&named, "mail.example.test", "A"), [h3.ip.to_string()]);
}
