//! Queries per second: hamail's DNS server (`dnsctl serve`) against nsd, both serving the
//! same zone on loopback, both measured by dnsperf with the same MX/A/SOA query mix.
//!
//! `cargo run --release -p hamail-lab -- bench dns [SECONDS] [THREADS]`
//! (default 10 s, 1 thread: nsd `server-count` and dnsctl's tokio worker count, set with
//! `TOKIO_WORKER_THREADS`; dnsctl still binds one UDP socket per core). Needs `nsd` and
//! `dnsperf` (apt packages of those names). The zone nsd serves is the one dnsctl serves
//! (`dnsctl zone`); the three hosts are loopback addresses where nothing listens, so
//! dnsctl finds them all down and, as with all hosts up, publishes them in configured
//! order.
//!
//! dnsctl runs with `HAMAIL_LOG=info,hickory_server=warn` unless `HAMAIL_LOG` is set:
//! hickory-server logs two `info` lines per query, which costs about a quarter of the
//! throughput here (and is not what this measures).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use hamail_lab::dns;
use hamail_storage::cluster::ClusterConfig;

use super::Process;

/// The query mix: what resolvers ask a mail domain's server.
const QUERIES: &str = "bench.test MX\nmail.bench.test A\nbench.test SOA\nmx1.bench.test A\n\
                       mx2.bench.test A\nbench.test MX\nmail.bench.test A\nnosuch.bench.test A\n";

const PORT: u16 = 25400;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds of dnsperf load against each server.
    #[arg(default_value_t = 10)]
    seconds: u64,
    /// Server threads: nsd's server-count and dnsctl's tokio worker threads.
    #[arg(default_value_t = 1)]
    threads: usize,
}

pub fn main(args: Args) -> Result<()> {
    let (secs, threads) = (args.seconds, args.threads.max(1));
    let bins = super::binaries()?;
    let dir = tempfile::tempdir()?;
    let d = dir.path().display();
    let qfile = dir.path().join("queries.txt");
    std::fs::write(&qfile, QUERIES)?;

    let hamail_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 53, 0, 2)), PORT);
    let config = dir.path().join("hamail.toml");
    let text = ClusterConfig::builder(dir.path().join("spool"))
        .domains(&["bench.test"])
        .host("mx1", "127.53.0.11")
        .host("mx2", "127.53.0.12")
        .host("mx3", "127.53.0.13")
        .section(
            "dns",
            &format!(
                "listen = \"{hamail_addr}\"\nstate_dir = \"{d}/dnsctl\"\n\
                 control_socket = \"{d}/dnsctl.sock\""
            ),
        )
        .toml();
    std::fs::write(&config, text)?;
    let threads_env = threads.to_string();
    let log_env = std::env::var("HAMAIL_LOG").unwrap_or("info,hickory_server=warn".into());
    let start_dnsctl = || -> Result<Process> {
        let server = Process::start(
            &bins.dnsctl,
            &["serve"],
            &config,
            &dir.path().join("dnsctl.log"),
            &[
                ("TOKIO_WORKER_THREADS", &threads_env),
                ("HAMAIL_LOG", &log_env),
            ],
        )?;
        wait_ready(hamail_addr)?;
        Ok(server)
    };

    // The zone, as dnsctl serves it; dnsctl is stopped while nsd is measured.
    let mut dnsctl = start_dnsctl()?;
    let out = Command::new(&bins.dnsctl)
        .arg("--config")
        .arg(&config)
        .arg("zone")
        .output()
        .context("dnsctl zone")?;
    ensure!(
        out.status.success(),
        "dnsctl zone: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dnsctl.stop();
    std::fs::write(dir.path().join("bench.test.zone"), &out.stdout)?;

    // nsd, private everything, no rate limiting (RRL would drop a load test's queries).
    let nsd_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 53, 0, 1)), PORT);
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
    std::fs::write(&conf_path, conf)?;
    let mut nsd = Nsd(Command::new("nsd")
        .arg("-d")
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .spawn()
        .context("nsd (apt-get install nsd)")?);
    wait_ready(nsd_addr)?;
    let nsd_qps = dnsperf(nsd_addr, &qfile, secs, threads)?;
    nsd.stop();

    // hamail: dnsctl serve.
    let mut dnsctl = start_dnsctl()?;
    let hamail_qps = dnsperf(hamail_addr, &qfile, secs, threads)?;
    dnsctl.stop();

    println!();
    println!("| server | queries/s |");
    println!("|---|---:|");
    println!("| hamail (hickory-server) | {hamail_qps:.0} |");
    println!("| nsd {} | {nsd_qps:.0} |", nsd_version());
    println!(
        "hamail / nsd = {:.0} % ({secs} s each, {threads} server thread(s), dnsperf -c 4 -q 100)",
        100.0 * hamail_qps / nsd_qps
    );
    Ok(())
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
    let Ok(out) = Command::new("nsd").arg("-v").output() else {
        return String::new();
    };
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or("")
        .to_string()
}

/// Wait until `addr` answers an SOA query over UDP.
fn wait_ready(addr: SocketAddr) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while dns::query(addr, "bench.test.", dns::SOA).is_none_or(|a| a.is_empty()) {
        if Instant::now() > deadline {
            bail!("{addr} never answered");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// dnsperf's "Queries per second" against `addr`.
fn dnsperf(addr: SocketAddr, qfile: &Path, secs: u64, threads: usize) -> Result<f64> {
    let out = Command::new("dnsperf")
        .args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .arg("-d")
        .arg(qfile)
        .args(["-l", &secs.to_string(), "-c", "4", "-q", "100"])
        .args(["-T", &threads.to_string()])
        .output()
        .context("dnsperf (apt-get install dnsperf)")?;
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
        .with_context(|| format!("no qps in dnsperf output:\n{text}"))
}
