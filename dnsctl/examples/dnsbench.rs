//! Queries per second: hamail's DNS server against nsd, both serving the same zones on
//! loopback, both measured by dnsperf with the same MX/A/SOA query mix.
//!
//! `cargo run --release -p dnsctl --example dnsbench [SECONDS] [THREADS]`
//! (default 10 s, 1 thread: nsd `server-count` and the tokio worker count). Needs `nsd`
//! and `dnsperf` (apt packages of those names).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dnsctl::server::DnsServer;
use hamail_storage::cluster::ClusterConfig;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

const CONFIG: &str = r#"
[cluster]
domains = ["bench.test"]
spool = "/srv/mail"
[[host]]
name = "mx1"
address = "10.1.0.1"
mx_priority = 10
[[host]]
name = "mx2"
address = "10.1.0.2"
mx_priority = 20
[[host]]
name = "mx3"
address = "10.1.0.3"
mx_priority = 30
[auth]
backend = "file"
passwd_file = "/etc/hamail/passwd"
[tls]
cert = "/c.pem"
key = "/k.pem"
[dns]
listen = "10.1.0.53:53"
"#;

/// The query mix: what resolvers ask a mail domain's server.
const QUERIES: &str = "bench.test MX\nmail.bench.test A\nbench.test SOA\nmx1.bench.test A\n\
                       mx2.bench.test A\nbench.test MX\nmail.bench.test A\nnosuch.bench.test A\n";

const PORT: u16 = 25400;

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: u64 = args.next().map_or(10, |a| a.parse().expect("SECONDS"));
    let threads: usize = args.next().map_or(1, |a| a.parse().expect("THREADS"));

    let config = ClusterConfig::parse(CONFIG, Path::new("bench.toml")).unwrap();
    let dns = config.dns.clone().unwrap();
    let all = ["mx1", "mx2", "mx3"];
    let plan = dnsctl::policy::plan(&config.hosts, |h| all.contains(&h), &BTreeSet::new(), None);
    let snapshot = dnsctl::zone::build(&config, &dns, &plan, 2026_0101);

    let dir = tempfile::tempdir().unwrap();
    let qfile = dir.path().join("queries.txt");
    std::fs::write(&qfile, QUERIES).unwrap();

    // nsd, private everything, no rate limiting (RRL would drop a load test's queries).
    let nsd_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 53, 0, 1)), PORT);
    let d = dir.path().display();
    std::fs::write(
        dir.path().join("bench.test.zone"),
        snapshot.to_master_file(),
    )
    .unwrap();
    let conf = format!(
        "server:\n  ip-address: {ip}@{port}\n  rrl-ratelimit: 0\n  rrl-whitelist-ratelimit: 0\n  \
         server-count: {threads}\n  username: \"\"\n  zonesdir: \"{d}\"\n  database: \"\"\n  \
         zonelistfile: \"{d}/zone.list\"\n  xfrdfile: \"{d}/xfrd.state\"\n  xfrdir: \"{d}\"\n  \
         pidfile: \"{d}/nsd.pid\"\n  logfile: \"{d}/nsd.log\"\n  verbosity: 0\n\
         remote-control:\n  control-enable: no\n\
         zone:\n  name: bench.test\n  zonefile: bench.test.zone\n",
        ip = nsd_addr.ip(),
        port = nsd_addr.port(),
    );
    let conf_path = dir.path().join("nsd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut nsd = Nsd(Command::new("nsd")
        .arg("-d")
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .spawn()
        .expect("nsd (apt-get install nsd)"));
    wait_ready(nsd_addr);
    let nsd_qps = dnsperf(nsd_addr, &qfile, secs, threads);
    nsd.stop();

    // hamail, in this process.
    let hamail_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 53, 0, 2)), PORT);
    let server = DnsServer::new(&snapshot, vec![]).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = rt.spawn(async move {
        server
            .serve(hamail_addr, async {
                let _ = stopped.await;
            })
            .await
    });
    wait_ready(hamail_addr);
    let hamail_qps = dnsperf(hamail_addr, &qfile, secs, threads);
    let _ = stop.send(());
    rt.block_on(serving).unwrap().unwrap();

    println!();
    println!("| server | queries/s |");
    println!("|---|---:|");
    println!("| hamail (hickory-server) | {hamail_qps:.0} |");
    println!("| nsd {} | {nsd_qps:.0} |", nsd_version());
    println!(
        "hamail / nsd = {:.0} % ({secs} s each, {threads} server thread(s), dnsperf -c 4 -q 100)",
        100.0 * hamail_qps / nsd_qps
    );
}

/// nsd, stopped (SIGTERM via kill(1) on our own child's pid) when dropped.
struct Nsd(Child);

impl Nsd {
    fn stop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.stop();
        }
    }
}

fn nsd_version() -> String {
    let out = Command::new("nsd").arg("-v").output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or("")
        .to_string()
}

/// Wait until `addr` answers an SOA query over UDP.
fn wait_ready(addr: SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut msg = Message::new(4242, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(
        Name::from_ascii("bench.test.").unwrap(),
        RecordType::SOA,
    ));
    let bytes = msg.to_vec().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    loop {
        let _ = sock.send_to(&bytes, addr);
        if sock.recv_from(&mut buf).is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "{addr} never answered");
    }
}

/// dnsperf's "Queries per second" against `addr`.
fn dnsperf(addr: SocketAddr, qfile: &Path, secs: u64, threads: usize) -> f64 {
    let out = Command::new("dnsperf")
        .args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .arg("-d")
        .arg(qfile)
        .args(["-l", &secs.to_string(), "-c", "4", "-q", "100"])
        .args(["-T", &threads.to_string()])
        .output()
        .expect("dnsperf (apt-get install dnsperf)");
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Queries lost:") || line.starts_with("Response codes:") {
            println!("{addr}: {line}");
        }
    }
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Queries per second:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no qps in dnsperf output:\n{text}"))
}
