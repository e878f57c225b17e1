//! SMTP benchmark: hamail-agent against a private Postfix, side by side on one spool.
//!
//! What it measures, for message sizes 4 KB and 100 KB and 1, 10 and 50 concurrent clients
//! (each client opens one connection per message: EHLO, MAIL, RCPT, DATA, QUIT, like
//! Postfix's `smtp-source`):
//!
//! - hamail: messages/s accepted *and* durably delivered, i.e. from the first connect until the
//!   last `250` after DATA (hamail answers 250 only once the message is fsynced into the mbox),
//!   then checks that `<spool>/mail/hbench` holds exactly the expected number of messages;
//!   plus the per-message latency (connect to the 250 after DATA), p50 and p99.
//! - Postfix (smtpd -> queue -> local(8), mbox with `fcntl, dotlock` locking, same spool
//!   directory): messages/s until `<spool>/mail/pbench` holds every message (Postfix accepts
//!   into its queue first and delivers afterwards); the accept-only rate is shown too.
//! - The agent's memory: VmRSS when idle after start, and the RSS growth per idle SMTP
//!   connection (500 connections that got the greeting and sent EHLO).
//!
//! Run as root (Postfix drops privileges to the recipient, a real Unix user `pbench`):
//!
//! ```text
//! cargo run --release -p hamail-lab -- bench smtp [--quick] [--repeat N] [--dir DIR] [--keep]
//! ```
//!
//! Each case runs `--repeat` times (3); the table shows the median and the min-max range,
//! since a shared machine is noisy and Postfix's rate depends on whether its two local(8)
//! processes collide on the mbox lock (the loser sleeps `deliver_lock_delay`, 1 s).
//! `--quick` sends a quarter of the messages. The agent binary is the one next to
//! `hamail-lab` (`target/release/hamail-agent`, built first when cargo runs the bench);
//! Postfix is started by `tests/bench/postfix-peer.sh` (built into the bench)
//! (installed with apt-get if missing). Both servers are stopped and the scratch directory
//! removed at the end (kept with `--keep`).

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::Process;

const HAMAIL_USER: &str = "hbench";
const POSTFIX_USER: &str = "pbench";
const DOMAIN: &str = "bench.test";
const SENDER: &str = "load@remote.test";
const IDLE_CONNECTIONS: usize = 500;
/// `tests/bench/postfix-peer.sh`, run with `bash -c`.
const POSTFIX_SCRIPT: &str = include_str!("../../bench/postfix-peer.sh");

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Send a quarter of the messages per case.
    #[arg(long)]
    quick: bool,
    /// Scratch directory (default: /tmp/smtpbench-<pid>); must not exist or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the scratch directory (mboxes, configs, logs) at the end.
    #[arg(long)]
    keep: bool,
    /// hamail SMTP port on 127.0.0.1 (health is this + 1, submission this + 2).
    #[arg(long, default_value_t = 12525)]
    hamail_port: u16,
    /// Postfix smtpd port on 127.0.0.1.
    #[arg(long, default_value_t = 12626)]
    postfix_port: u16,
    /// Runs per case; the table shows the median and the range.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

/// One benchmark case.
#[derive(Debug, Clone, Copy)]
struct Case {
    size: usize,
    clients: usize,
    count: usize,
}

/// Result of one load run against one server.
#[derive(Debug)]
struct LoadResult {
    /// From the start until the last 250 after DATA.
    elapsed: Duration,
    /// Connect to 250 after DATA, per message, sorted.
    latencies: Vec<Duration>,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
        self.latencies[i]
    }
}

/// One run of a case against both servers.
#[derive(Debug)]
struct Run {
    hamail: LoadResult,
    postfix_delivered: f64,
    postfix_accepted: f64,
}

/// One row of the output table: the median of the runs of a case.
#[derive(Debug)]
struct Row {
    case: Case,
    /// The run with the median hamail rate (its latencies are shown).
    hamail: LoadResult,
    hamail_range: (f64, f64),
    postfix_delivered: f64,
    postfix_range: (f64, f64),
    postfix_accepted: f64,
}

impl Row {
    fn new(case: Case, mut runs: Vec<Run>) -> Row {
        let mid = runs.len() / 2;
        let range = |v: &[f64]| (v[0], v[v.len() - 1]);
        let mut delivered: Vec<f64> = runs.iter().map(|r| r.postfix_delivered).collect();
        let mut accepted: Vec<f64> = runs.iter().map(|r| r.postfix_accepted).collect();
        delivered.sort_by(f64::total_cmp);
        accepted.sort_by(f64::total_cmp);
        runs.sort_by(|a, b| a.hamail.rate().total_cmp(&b.hamail.rate()));
        let hamail_range = (runs[0].hamail.rate(), runs[runs.len() - 1].hamail.rate());
        Row {
            case,
            hamail: runs.swap_remove(mid).hamail,
            hamail_range,
            postfix_delivered: delivered[mid],
            postfix_range: range(&delivered),
            postfix_accepted: accepted[mid],
        }
    }
}

pub fn main(args: Args) -> Result<()> {
    raise_fd_limit();
    let dir = scratch_dir(args.dir.as_deref())?;
    let mut lab = Lab::new(dir, &args)?;
    let result = tokio::runtime::Runtime::new()?.block_on(run(&mut lab, &args));
    lab.stop();
    if args.keep {
        println!("kept {}", lab.dir.display());
    } else {
        lab.remove_dir();
    }
    result
}

async fn run(lab: &mut Lab, args: &Args) -> Result<()> {
    lab.start_agent()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = Memory::of(lab.agent_pid()?)?;
    let per_conn = rss_per_connection(lab).await?;
    lab.start_postfix()?;
    warm_up(lab).await?;

    let divisor = if args.quick { 4 } else { 1 };
    let mut rows = Vec::new();
    for (size, count) in [(4 * 1024, 400), (100 * 1024, 200)] {
        for clients in [1, 10, 50] {
            let case = Case {
                size,
                clients,
                count: count / divisor,
            };
            let mut runs = Vec::new();
            for _ in 0..args.repeat.max(1) {
                runs.push(run_case(lab, case).await?);
            }
            rows.push(Row::new(case, runs));
        }
    }
    let pid = lab.agent_pid()?;
    let after = Memory::of(pid)?;
    print_table(&rows, args.repeat.max(1));
    println!();
    println!("hamail-agent memory (KiB; anon = heap and stacks, file = mapped binary/libs):");
    println!("  idle after start:        {idle}");
    println!(
        "  per idle connection:     {per_conn:.1} (VmRSS delta over {IDLE_CONNECTIONS} connections after EHLO)"
    );
    println!("  after the runs:          {after}");
    println!("  peak VmHWM:              {}", status_kib(pid, "VmHWM:")?);
    Ok(())
}

/// The agent's resident memory.
#[derive(Debug)]
struct Memory {
    rss: u64,
    anon: u64,
    file: u64,
}

impl Memory {
    fn of(pid: u32) -> Result<Memory> {
        Ok(Memory {
            rss: status_kib(pid, "VmRSS:")?,
            anon: status_kib(pid, "RssAnon:")?,
            file: status_kib(pid, "RssFile:")?,
        })
    }
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VmRSS {} (anon {}, file {})",
            self.rss, self.anon, self.file
        )
    }
}

/// A few messages to each server first: creates both mboxes (hamail builds its index on the
/// first delivery) and starts Postfix's on-demand daemons.
async fn warm_up(lab: &Lab) -> Result<()> {
    let case = Case {
        size: 4096,
        clients: 2,
        count: 20,
    };
    load(lab.hamail_addr(), HAMAIL_USER, case).await?;
    let mut watcher = MboxWatcher::new(lab.mail_dir()?.join(POSTFIX_USER))?;
    load(lab.postfix_addr(), POSTFIX_USER, case).await?;
    watcher
        .wait_for(case.count, Instant::now(), Duration::from_secs(60))
        .await
}

/// Run one case against hamail, then against Postfix, checking the mboxes.
async fn run_case(lab: &Lab, case: Case) -> Result<Run> {
    eprintln!(
        "case: {} KB x {} messages, {} clients",
        case.size / 1024,
        case.count,
        case.clients
    );
    let hamail_mbox = lab.mail_dir()?.join(HAMAIL_USER);
    let before = count_messages(&hamail_mbox)?;
    let hamail = load(lab.hamail_addr(), HAMAIL_USER, case).await?;
    let after = count_messages(&hamail_mbox)?;
    ensure!(
        after - before == case.count,
        "hamail mbox gained {} messages, expected {}",
        after - before,
        case.count
    );

    let mut watcher = MboxWatcher::new(lab.mail_dir()?.join(POSTFIX_USER))?;
    let start = Instant::now();
    let accepted = load(lab.postfix_addr(), POSTFIX_USER, case).await?;
    watcher
        .wait_for(case.count, start, Duration::from_secs(600))
        .await?;
    let delivered = start.elapsed();
    Ok(Run {
        hamail,
        postfix_delivered: case.count as f64 / delivered.as_secs_f64(),
        postfix_accepted: accepted.rate(),
    })
}

fn print_table(rows: &[Row], repeat: usize) {
    println!(
        "{:>5} {:>7} {:>5} | {:>9} {:>9} {:>6} | {:>7} {:>7} | {:>14} {:>15} | {:>11}",
        "size",
        "clients",
        "msgs",
        "hamail/s",
        "postfix/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "hamail min-max",
        "postfix min-max",
        "pf queued/s"
    );
    println!("{}", "-".repeat(110));
    for r in rows {
        let rate = r.hamail.rate();
        println!(
            "{:>5} {:>7} {:>5} | {:>9.1} {:>9.1} {:>6.2} | {:>7.2} {:>7.2} | {:>14} {:>15} | {:>11.1}",
            format!("{}K", r.case.size / 1024),
            r.case.clients,
            r.case.count,
            rate,
            r.postfix_delivered,
            rate / r.postfix_delivered,
            ms(r.hamail.percentile(0.50)),
            ms(r.hamail.percentile(0.99)),
            format!("{:.0}-{:.0}", r.hamail_range.0, r.hamail_range.1),
            format!("{:.0}-{:.0}", r.postfix_range.0, r.postfix_range.1),
            r.postfix_accepted
        );
    }
    println!();
    println!("median of {repeat} runs per case (msgs each); min-max: msg/s over the runs");
    println!("hamail/s:  accepted and fsynced into the mbox (until the last 250 after DATA)");
    println!("postfix/s: until local(8) has appended every message to the mbox");
    println!("ratio:     hamail/s / postfix/s; p50/p99: hamail connect -> 250 after DATA");
    println!("pf queued/s: Postfix until the last 250 (queued, not yet delivered)");
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------
// Load generator

/// Send `case.count` messages to `user@bench.test` from `case.clients` concurrent clients,
/// one connection per message.
async fn load(addr: std::net::SocketAddr, user: &str, case: Case) -> Result<LoadResult> {
    let message = Arc::new(build_message(case.size));
    let next = Arc::new(AtomicUsize::new(0));
    let rcpt = format!("{user}@{DOMAIN}");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..case.clients {
        let (message, next, rcpt) = (message.clone(), next.clone(), rcpt.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < case.count {
                let t0 = Instant::now();
                let end = send_one(addr, &rcpt, &message).await?;
                done.push((end - t0, end));
            }
            anyhow::Ok(done)
        }));
    }
    let mut latencies = Vec::with_capacity(case.count);
    let mut last = start;
    for task in tasks {
        for (latency, end) in task.await?? {
            latencies.push(latency);
            last = last.max(end);
        }
    }
    latencies.sort();
    Ok(LoadResult {
        elapsed: last - start,
        latencies,
    })
}

/// One SMTP transaction on a fresh connection; returns when the 250 after DATA arrived
/// (QUIT is sent and answered afterwards).
async fn send_one(addr: std::net::SocketAddr, rcpt: &str, message: &[u8]) -> Result<Instant> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    let mut smtp = Smtp {
        stream: BufReader::new(stream),
    };
    smtp.expect(220).await?;
    smtp.command("EHLO load.remote.test", 250).await?;
    smtp.command(&format!("MAIL FROM:<{SENDER}>"), 250).await?;
    smtp.command(&format!("RCPT TO:<{rcpt}>"), 250).await?;
    smtp.command("DATA", 354).await?;
    smtp.stream.get_mut().write_all(message).await?;
    smtp.expect(250).await?;
    let end = Instant::now();
    smtp.command("QUIT", 221).await?;
    Ok(end)
}

/// A minimal SMTP client connection.
struct Smtp {
    stream: BufReader<TcpStream>,
}

impl Smtp {
    async fn command(&mut self, line: &str, code: u16) -> Result<()> {
        self.stream
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await?;
        self.expect(code)
            .await
            .with_context(|| format!("after {line:?}"))
    }

    /// Read one (possibly multi-line) reply and check its code.
    async fn expect(&mut self, code: u16) -> Result<()> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("connection closed; got {all:?}");
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                break;
            }
        }
        let got: u16 = all.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        ensure!(got == code, "expected {code}, got {all:?}");
        Ok(())
    }
}

/// Headers plus a body of 72-character lines, about `size` bytes with CRLF line ends,
/// terminated by `.` (no line starts with `.` or `From `, so no stuffing or escaping).
fn build_message(size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <{SENDER}>\r\nTo: <bench@{DOMAIN}>\r\nSubject: smtpbench {size} bytes\r\n\
         Date: Mon, 24 Nov 2025 12:00:00 +0000\r\nMessage-ID: <{}@smtpbench>\r\n\r\n",
        fastrand::u64(..)
    )
    .into_bytes();
    let line: Vec<u8> = (0..72).map(|i| b'a' + (i % 26) as u8).collect();
    while m.len() + 74 <= size {
        m.extend_from_slice(&line);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b".\r\n");
    m
}

// ---------------------------------------------------------------------------------------
// Memory

/// Open idle connections (greeting read, EHLO answered) and return the agent's RSS growth
/// per connection in KiB; the connections are closed again.
async fn rss_per_connection(lab: &Lab) -> Result<f64> {
    let pid = lab.agent_pid()?;
    let before = rss_kib(pid)?;
    let mut conns = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        let stream = TcpStream::connect(lab.hamail_addr()).await?;
        let mut smtp = Smtp {
            stream: BufReader::new(stream),
        };
        smtp.expect(220).await?;
        smtp.command("EHLO idle.remote.test", 250).await?;
        conns.push(smtp);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid)?;
    drop(conns);
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok((after as f64 - before as f64) / IDLE_CONNECTIONS as f64)
}

fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS:")
}

/// A `kB` field of /proc/<pid>/status.
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kib = line
        .split_whitespace()
        .nth(1)
        .context("empty status field")?;
    Ok(kib.parse()?)
}

/// 500 idle connections need descriptors on both ends; the agent inherits the limit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Mailboxes

/// Number of messages in an mbox (lines starting with `From `); 0 if it does not exist.
fn count_messages(path: &Path) -> Result<usize> {
    Ok(MboxWatcher::new(path.to_path_buf())?.base)
}

/// Counts `From ` separators appended to an mbox since it was created, reading only the
/// new bytes on each poll.
#[derive(Debug)]
struct MboxWatcher {
    path: PathBuf,
    offset: u64,
    /// The last bytes seen, so a separator split across two reads is found.
    tail: Vec<u8>,
    /// Separators already in the file when watching began.
    base: usize,
    count: usize,
}

impl MboxWatcher {
    fn new(path: PathBuf) -> Result<MboxWatcher> {
        let mut w = MboxWatcher {
            path,
            offset: 0,
            tail: b"\n".to_vec(),
            base: 0,
            count: 0,
        };
        w.poll()?;
        w.base = w.count;
        w.count = 0;
        Ok(w)
    }

    fn poll(&mut self) -> Result<()> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("open {}", self.path.display())),
        };
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(self.offset))?;
        let mut new = Vec::new();
        file.read_to_end(&mut new)?;
        self.offset += new.len() as u64;
        let mut buf = std::mem::take(&mut self.tail);
        buf.extend_from_slice(&new);
        self.count += memchr::memmem::find_iter(&buf, b"\nFrom ").count();
        let keep = buf.len().min(5);
        self.tail = buf[buf.len() - keep..].to_vec();
        Ok(())
    }

    /// Poll until `n` new messages are in the mbox, then wait for the writer's fcntl lock
    /// to be released, so the last message is complete (local(8) appends, fsyncs and only
    /// then unlocks).
    async fn wait_for(&mut self, n: usize, start: Instant, timeout: Duration) -> Result<()> {
        loop {
            self.poll()?;
            if self.count >= n {
                break;
            }
            ensure!(
                start.elapsed() < timeout,
                "{}: {} of {n} messages after {timeout:?}",
                self.path.display(),
                self.count
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ensure!(
            self.count == n,
            "{}: {} messages, expected {n}",
            self.path.display(),
            self.count
        );
        wait_fcntl_unlocked(&self.path)
    }
}

/// Take and release a shared fcntl lock on the whole file (blocks while a writer holds it).
fn wait_fcntl_unlocked(path: &Path) -> Result<()> {
    let file = std::fs::File::open(path)?;
    // SAFETY: zeroed flock is a valid "whole file" range; fcntl on our own descriptor.
    unsafe {
        let mut fl: libc::flock = std::mem::zeroed();
        fl.l_type = libc::F_RDLCK as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        if libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &fl) != 0 {
            return Err(std::io::Error::last_os_error()).context("fcntl F_SETLKW");
        }
    }
    Ok(()) // closing the file releases the lock
}

// ---------------------------------------------------------------------------------------
// The servers

/// The scratch directory, the running agent and the Postfix instance.
#[derive(Debug)]
struct Lab {
    dir: PathBuf,
    hamail_port: u16,
    postfix_port: u16,
    agent: Option<Process>,
    postfix_up: bool,
}

fn scratch_dir(dir: Option<&Path>) -> Result<PathBuf> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir().join(format!("smtpbench-{}", std::process::id())),
    };
    if dir.exists() {
        ensure!(
            std::fs::read_dir(&dir)?.next().is_none(),
            "{} is not empty",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir)?;
    // Postfix daemons (unprivileged) must traverse it.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

impl Lab {
    /// Write the spool, passwd and hamail.toml.
    fn new(dir: PathBuf, args: &Args) -> Result<Lab> {
        let lab = Lab {
            dir,
            hamail_port: args.hamail_port,
            postfix_port: args.postfix_port,
            agent: None,
            postfix_up: false,
        };
        let mail = lab.mail_dir()?;
        std::fs::create_dir_all(&mail)?;
        std::fs::set_permissions(lab.spool(), std::fs::Permissions::from_mode(0o755))?;
        // Like /var/mail: local(8) creates the mbox as the recipient.
        std::fs::set_permissions(&mail, std::fs::Permissions::from_mode(0o1777))?;
        std::fs::write(
            lab.dir.join("passwd"),
            format!("{HAMAIL_USER}:{{PLAIN}}benchpass:1000:1000::/nonexistent:/bin/false\n"),
        )?;
        std::fs::write(lab.config(), lab.hamail_toml())?;
        Ok(lab)
    }

    fn spool(&self) -> PathBuf {
        self.dir.join("spool")
    }

    fn mail_dir(&self) -> Result<PathBuf> {
        super::inbox_dir(&self.spool())
    }

    fn config(&self) -> PathBuf {
        self.dir.join("hamail.toml")
    }

    fn health_port(&self) -> u16 {
        self.hamail_port + 1
    }

    fn hamail_addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.hamail_port).into()
    }

    fn postfix_addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.postfix_port).into()
    }

    fn hamail_toml(&self) -> String {
        format!(
            r#"[cluster]
domains = ["{DOMAIN}"]
spool = "{spool}"

[auth]
backend = "file"
passwd_file = "{dir}/passwd"

[locking]
timeout_secs = 30
stale_after_secs = 300

[[host]]
name = "host1"
address = "127.0.0.1"
mx_priority = 10

[listeners]
smtp = {smtp}
health = {health}
submission = {submission}
submissions = 0
imap = 0
imaps = 0
pop3 = 0
pop3s = 0

[limits]
max_connections = 2000
max_connections_per_ip = 2000
"#,
            spool = self.spool().display(),
            dir = self.dir.display(),
            smtp = self.hamail_port,
            health = self.health_port(),
            submission = self.hamail_port + 2,
        )
    }

    /// Start the release agent and wait for `/healthz` = 200.
    fn start_agent(&mut self) -> Result<()> {
        let health = ([127, 0, 0, 1], self.health_port()).into();
        self.agent = Some(Process::agent(&self.dir, &self.config(), health)?);
        eprintln!(
            "hamail-agent pid {} on {}",
            self.agent_pid()?,
            self.hamail_addr()
        );
        Ok(())
    }

    fn agent_pid(&self) -> Result<u32> {
        Ok(self.agent.as_ref().context("agent not running")?.pid())
    }

    fn start_postfix(&mut self) -> Result<()> {
        self.postfix_up = true;
        let (dir, mail) = (self.dir.join("postfix"), self.mail_dir()?);
        let port = self.postfix_port.to_string();
        super::peer_script(
            POSTFIX_SCRIPT,
            "postfix-peer.sh",
            "up",
            &[
                dir.as_os_str(),
                mail.as_os_str(),
                port.as_ref(),
                POSTFIX_USER.as_ref(),
            ],
        )?;
        Ok(())
    }

    /// Stop the agent (SIGTERM, then SIGKILL) and Postfix.
    fn stop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.stop();
        }
        if std::mem::take(&mut self.postfix_up) {
            let dir = self.dir.join("postfix");
            let _ = super::peer_script(
                POSTFIX_SCRIPT,
                "postfix-peer.sh",
                "down",
                &[dir.as_os_str()],
            );
        }
    }

    fn remove_dir(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop();
    }
}
