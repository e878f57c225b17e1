//! IMAP benchmark: hamail-agent against a private Dovecot 2.3, both serving the same mbox file.
//!
//! One mbox of `--messages` (10,000) generated messages, 2-20 KB each, a fifth of them
//! multipart (text + HTML, or text + a base64 attachment), every subject distinct, bodies made
//! of searchable words; exactly 1 % of them contain the word `xyzzyquorum`. The same bytes are
//! copied to `<spool>/mail/hbench` for hamail and to Dovecot's INBOX of `dbench` (Dovecot's
//! copy is owned by its mail user). What it measures, with its own small IMAP client (plain TCP,
//! LOGIN), each operation on a fresh session and the median of `--repeat` (5) runs:
//!
//! - the cold first SELECT (hamail builds its sidecar index, Dovecot its index and cache), once;
//! - SELECT INBOX with a valid index;
//! - `FETCH 1:* (FLAGS UID RFC822.SIZE)`;
//! - `FETCH n BODY[]` of the message in the middle;
//! - `SEARCH TEXT "xyzzyquorum"` (no full-text index on either side: both scan the bodies);
//! - mixed ops/s, 10 clients on 10 users (`hbench0..9` / `dbench0..9`, each a copy of the
//!   first `--user-messages` (2,000) messages), each looping for `--seconds` (10) over SELECT,
//!   FETCH r BODY.PEEK[], STORE r +FLAGS (\Seen), SEARCH UNSEEN, NOOP and, every 10th round,
//!   APPEND of a 1 KB message; each command is one op;
//! - the same mixed load with the 10 clients on one user (`hshared` / `dshared`), where every
//!   client contends for the same mbox lock.
//!
//! The results are checked to agree (EXISTS, number of FETCH responses, sum of RFC822.SIZE,
//! BODY[] length, SEARCH hits); a `WARNING` line is printed where they do not.
//!
//! Run as root (Dovecot drops privileges to a Unix user, `dvbench`):
//!
//! ```text
//! cargo run --release -p hamail-lab -- bench imap [--quick] [--messages N] [--keep]
//! ```
//!
//! `--quick` uses 2,000 messages, 500 per mixed-load user and 3-second mixed runs. The agent
//! binary is the one next to `hamail-lab` (`target/release/hamail-agent`, built first when
//! cargo runs the bench); Dovecot is started by `tests/bench/dovecot-peer.sh` (built into the
//! bench; dovecot-imapd installed with apt-get if missing).
//! Both servers are stopped and the scratch directory removed at the end (kept with `--keep`).

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine;
use hamail_storage::mbox::format;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::Process;

const PASSWORD: &str = "benchpass";
const DOMAIN: &str = "bench.test";
/// The search word: in every message whose number (from 0) is 42 modulo 100.
const MARKER: &str = "xyzzyquorum";
/// Timeout of one IMAP command (Dovecot can wait long for an mbox lock).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// `tests/bench/dovecot-peer.sh`, run with `bash -c`.
const DOVECOT_SCRIPT: &str = include_str!("../../bench/dovecot-peer.sh");

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Smaller mailboxes and shorter mixed runs (2,000 / 500 messages, 3 s).
    #[arg(long)]
    quick: bool,
    /// Messages in the big mailbox (default 10,000; 2,000 with --quick).
    #[arg(long)]
    messages: Option<usize>,
    /// Messages per mailbox of the mixed loads (default 2,000; 500 with --quick).
    #[arg(long)]
    user_messages: Option<usize>,
    /// Seconds per mixed-load run (default 10; 3 with --quick).
    #[arg(long)]
    seconds: Option<u64>,
    /// Concurrent clients of the mixed loads.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Runs per measurement; the table shows the median and the range.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Scratch directory (default: /tmp/imapbench-<pid>); must not exist or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the scratch directory (mboxes, indexes, configs, logs) at the end.
    #[arg(long)]
    keep: bool,
    /// hamail IMAP port on 127.0.0.1 (health is this + 1).
    #[arg(long, default_value_t = 14143)]
    hamail_port: u16,
    /// Dovecot IMAP port on 127.0.0.1.
    #[arg(long, default_value_t = 14243)]
    dovecot_port: u16,
}

/// The sizes of one benchmark.
#[derive(Debug, Clone, Copy)]
struct Plan {
    messages: usize,
    user_messages: usize,
    seconds: u64,
    clients: usize,
    repeat: usize,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        let (messages, user_messages, seconds) = if args.quick {
            (2_000, 500, 3)
        } else {
            (10_000, 2_000, 10)
        };
        let messages = args.messages.unwrap_or(messages).max(1);
        Plan {
            messages,
            user_messages: args
                .user_messages
                .unwrap_or(user_messages)
                .clamp(1, messages),
            seconds: args.seconds.unwrap_or(seconds).max(1),
            clients: args.clients.max(1),
            repeat: args.repeat.max(1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Hamail,
    Dovecot,
}

const SERVERS: [Server; 2] = [Server::Hamail, Server::Dovecot];

impl Server {
    /// User names start with this letter: `hbench`, `dbench3`, `hshared`.
    fn prefix(self) -> &'static str {
        match self {
            Server::Hamail => "h",
            Server::Dovecot => "d",
        }
    }

    fn big_user(self) -> String {
        format!("{}bench", self.prefix())
    }

    fn user(self, i: usize) -> String {
        format!("{}bench{i}", self.prefix())
    }

    fn shared_user(self) -> String {
        format!("{}shared", self.prefix())
    }
}

pub fn main(args: Args) -> Result<()> {
    let plan = Plan::new(&args);
    let dir = scratch_dir(args.dir.as_deref())?;
    let mut lab = Lab::new(dir, &args, plan)?;
    let result = tokio::runtime::Runtime::new()?.block_on(run(&mut lab, plan));
    lab.stop();
    if args.keep {
        println!("kept {}", lab.dir.display());
    } else {
        lab.remove_dir();
    }
    result
}

async fn run(lab: &mut Lab, plan: Plan) -> Result<()> {
    let mbox_bytes = lab.write_mailboxes(plan)?;
    lab.start_agent()?;
    lab.start_dovecot()?;

    let mut cold = Vec::new();
    for server in SERVERS {
        cold.push(warm_up(lab, server, plan).await?);
    }
    let mut single: [Vec<Single>; 2] = [Vec::new(), Vec::new()];
    for run in 0..plan.repeat {
        eprintln!("single-client run {}/{}", run + 1, plan.repeat);
        for (i, server) in SERVERS.into_iter().enumerate() {
            let user = server.big_user();
            single[i].push(single_run(lab.addr(server), &user, plan.messages).await?);
        }
    }
    let spread: Vec<Vec<String>> = SERVERS
        .iter()
        .map(|&s| (0..plan.clients).map(|i| s.user(i)).collect())
        .collect();
    let shared: Vec<Vec<String>> = SERVERS
        .iter()
        .map(|&s| vec![s.shared_user(); plan.clients])
        .collect();
    let spread_runs = mixed_runs(lab, &spread, plan, &format!("{} users", plan.clients)).await?;
    let shared_runs = mixed_runs(lab, &shared, plan, "1 user").await?;

    let report = Report {
        plan,
        mbox_bytes,
        cold,
        single,
        spread: spread_runs,
        shared: shared_runs,
    };
    report.print();
    Ok(())
}

/// A cold first SELECT (returned), then a `FETCH n BODY[]` so the one-time flag write
/// (\Seen) of the measured runs happens now, then a SELECT on each mixed-load mailbox and a
/// short mixed run of each kind, so both servers have built their indexes (and Dovecot has
/// written its X-UID headers) before anything is measured.
async fn warm_up(lab: &Lab, server: Server, plan: Plan) -> Result<Cold> {
    let addr = lab.addr(server);
    eprintln!("warm-up: {server:?}");
    let mut c = Imap::login(addr, &server.big_user()).await?;
    let (select, time) = timed(c.command("SELECT INBOX")).await;
    let exists = select?.exists()?;
    c.command(&format!("FETCH {} BODY[]", middle(plan.messages)))
        .await?;
    c.logout().await?;
    let mut users: Vec<String> = (0..plan.clients).map(|i| server.user(i)).collect();
    users.push(server.shared_user());
    for user in &users {
        let mut c = Imap::login(addr, user).await?;
        c.command("SELECT INBOX").await?;
        c.logout().await?;
    }
    let second = Duration::from_secs(1);
    mixed(addr, &users[..plan.clients], second).await?;
    mixed(addr, &vec![server.shared_user(); plan.clients], second).await?;
    Ok(Cold { time, exists })
}

/// The first SELECT of the big mailbox, without an index.
#[derive(Debug)]
struct Cold {
    time: Duration,
    exists: usize,
}

fn middle(n: usize) -> usize {
    n.div_ceil(2).max(1)
}

/// Run `f` and return how long it took.
async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let out = f.await;
    (out, start.elapsed())
}

// ---------------------------------------------------------------------------------------
// Single-client operations on the big mailbox

/// One fresh session on the big mailbox: each operation timed alone.
#[derive(Debug)]
struct Single {
    select: Duration,
    fetch_all: Duration,
    fetch_body: Duration,
    search: Duration,
    exists: usize,
    fetched: usize,
    size_sum: u64,
    body_len: usize,
    hits: usize,
}

async fn single_run(addr: std::net::SocketAddr, user: &str, messages: usize) -> Result<Single> {
    let mut c = Imap::login(addr, user).await?;
    let (r, select) = timed(c.command("SELECT INBOX")).await;
    let exists = r?.exists()?;
    let (r, fetch_all) = timed(c.command("FETCH 1:* (FLAGS UID RFC822.SIZE)")).await;
    let r = r?;
    let (fetched, size_sum) = (r.count_untagged("FETCH"), r.rfc822_size_sum());
    let (r, fetch_body) = timed(c.command(&format!("FETCH {} BODY[]", middle(messages)))).await;
    let body_len = r?.literals.first().copied().unwrap_or(0);
    let (r, search) = timed(c.command(&format!("SEARCH TEXT \"{MARKER}\""))).await;
    let hits = r?.search_hits();
    c.logout().await?;
    Ok(Single {
        select,
        fetch_all,
        fetch_body,
        search,
        exists,
        fetched,
        size_sum,
        body_len,
        hits,
    })
}

// ---------------------------------------------------------------------------------------
// Mixed load

/// One mixed-load run against one server.
#[derive(Debug)]
struct Mixed {
    ops: usize,
    /// Commands answered NO or BAD (not counted in `ops`).
    failed: usize,
    elapsed: Duration,
    /// Per command, sorted.
    latencies: Vec<Duration>,
}

impl Mixed {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
        self.latencies[i]
    }
}

/// `plan.repeat` mixed runs on each server (alternating), `users[server]` giving the user
/// of each client.
async fn mixed_runs(
    lab: &Lab,
    users: &[Vec<String>],
    plan: Plan,
    label: &str,
) -> Result<[Vec<Mixed>; 2]> {
    let mut runs: [Vec<Mixed>; 2] = [Vec::new(), Vec::new()];
    let duration = Duration::from_secs(plan.seconds);
    for run in 0..plan.repeat {
        eprintln!(
            "mixed, {} clients on {label}: run {}/{}",
            plan.clients,
            run + 1,
            plan.repeat
        );
        for (i, server) in SERVERS.into_iter().enumerate() {
            runs[i].push(mixed(lab.addr(server), &users[i], duration).await?);
        }
    }
    Ok(runs)
}

/// One client per entry of `users` (logged in before the clock starts), each looping over
/// the mixed commands until `duration` has passed.
async fn mixed(addr: std::net::SocketAddr, users: &[String], duration: Duration) -> Result<Mixed> {
    let mut clients = Vec::new();
    for user in users {
        clients.push(Imap::login(addr, user).await?);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for (n, client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(mixed_client(client, n as u64, deadline)));
    }
    let mut total = Mixed {
        ops: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    let mut last = start;
    for task in tasks {
        let (one, end) = task.await??;
        total.ops += one.ops;
        total.failed += one.failed;
        total.latencies.extend(one.latencies);
        last = last.max(end);
    }
    total.elapsed = last - start;
    total.latencies.sort();
    Ok(total)
}

/// The loop of one mixed-load client; returns its counts and when its last command ended.
async fn mixed_client(mut c: Imap, seed: u64, deadline: Instant) -> Result<(Mixed, Instant)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut m = Mixed {
        ops: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    let append = small_message(seed);
    let mut end = Instant::now();
    let mut round = 0u64;
    'rounds: while Instant::now() < deadline {
        round += 1;
        let mut exists = 1;
        for step in 0..6 {
            if Instant::now() >= deadline {
                break 'rounds;
            }
            let t0 = Instant::now();
            let r = match step {
                0 => c.command_status("SELECT INBOX").await?,
                1 => {
                    let n = rng.usize(1..=exists);
                    c.command_status(&format!("FETCH {n} BODY.PEEK[]")).await?
                }
                2 => {
                    let n = rng.usize(1..=exists);
                    c.command_status(&format!("STORE {n} +FLAGS (\\Seen)"))
                        .await?
                }
                3 => c.command_status("SEARCH UNSEEN").await?,
                4 => c.command_status("NOOP").await?,
                _ if round.is_multiple_of(10) => c.append_status("INBOX", &append).await?,
                _ => continue,
            };
            end = Instant::now();
            if r.ok {
                m.ops += 1;
                m.latencies.push(end - t0);
                if step == 0 {
                    exists = r.exists().unwrap_or(1).max(1);
                }
            } else {
                m.failed += 1;
            }
        }
    }
    c.logout().await?;
    Ok((m, end))
}

/// The message APPENDed by the mixed loads, about 1 KB, CRLF line ends.
fn small_message(seed: u64) -> Vec<u8> {
    let mut m = format!(
        "From: Load <load{seed}@remote.test>\r\nTo: <bench@{DOMAIN}>\r\n\
         Subject: appended by client {seed}\r\nDate: {}\r\n\
         Message-ID: <{seed}.{}@imapbench.test>\r\n\r\n",
        format::rfc5322(BASE_DATE),
        fastrand::u64(..)
    );
    while m.len() < 1000 {
        m.push_str("the quick brown fox jumps over the lazy dog, again and again\r\n");
    }
    m.into_bytes()
}

// ---------------------------------------------------------------------------------------
// Report

/// Everything measured.
#[derive(Debug)]
struct Report {
    plan: Plan,
    mbox_bytes: usize,
    cold: Vec<Cold>,
    single: [Vec<Single>; 2],
    spread: [Vec<Mixed>; 2],
    shared: [Vec<Mixed>; 2],
}

/// Median and range of some values.
#[derive(Debug, Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

impl Stat {
    fn of(mut v: Vec<f64>) -> Stat {
        v.sort_by(f64::total_cmp);
        Stat {
            median: v[v.len() / 2],
            min: v[0],
            max: v[v.len() - 1],
        }
    }

    fn range(&self, decimals: usize) -> String {
        format!("{:.decimals$}-{:.decimals$}", self.min, self.max)
    }
}

/// Which way is better for a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Millis,
    PerSecond,
}

impl Report {
    fn print(&self) {
        let p = self.plan;
        println!();
        println!(
            "IMAP: hamail-agent vs Dovecot {}, same mbox ({} messages, {:.1} MB, LF, mboxrd), \
             median of {} runs",
            dovecot_version(),
            p.messages,
            self.mbox_bytes as f64 / 1e6,
            p.repeat
        );
        println!(
            "mixed loads: {} clients x {} s, mailboxes of {} messages (a smaller copy, to keep \
             the setup fast)",
            p.clients, p.seconds, p.user_messages
        );
        println!();
        println!(
            "{:<44} | {:>10} {:>10} | {:>8} | {:>15} {:>15}",
            "operation", "hamail", "dovecot", "hamail x", "hamail min-max", "dovecot min-max"
        );
        println!("{}", "-".repeat(113));
        let cold = |i: usize| Stat::of(vec![ms(self.cold[i].time)]);
        self.row(
            "first SELECT, no index yet (ms, once)",
            Unit::Millis,
            [cold(0), cold(1)],
        );
        let single = |f: fn(&Single) -> Duration| {
            let s = |i: usize| Stat::of(self.single[i].iter().map(|r| ms(f(r))).collect());
            [s(0), s(1)]
        };
        self.row("SELECT INBOX (ms)", Unit::Millis, single(|r| r.select));
        self.row(
            "FETCH 1:* (FLAGS UID RFC822.SIZE) (ms)",
            Unit::Millis,
            single(|r| r.fetch_all),
        );
        self.row(
            &format!("FETCH {} BODY[] (ms)", middle(p.messages)),
            Unit::Millis,
            single(|r| r.fetch_body),
        );
        self.row(
            &format!("SEARCH TEXT \"{MARKER}\" (ms)"),
            Unit::Millis,
            single(|r| r.search),
        );
        let rate = |runs: &[Vec<Mixed>; 2]| {
            let s = |i: usize| Stat::of(runs[i].iter().map(Mixed::rate).collect());
            [s(0), s(1)]
        };
        let p99 = |runs: &[Vec<Mixed>; 2]| {
            let s = |i: usize| Stat::of(runs[i].iter().map(|r| ms(r.percentile(0.99))).collect());
            [s(0), s(1)]
        };
        let spread = format!("mixed, {} clients on {} users", p.clients, p.clients);
        let shared = format!("mixed, {} clients on 1 user", p.clients);
        self.row(
            &format!("{spread} (ops/s)"),
            Unit::PerSecond,
            rate(&self.spread),
        );
        self.row(
            &format!("{spread}, p99 (ms)"),
            Unit::Millis,
            p99(&self.spread),
        );
        self.row(
            &format!("{shared} (ops/s)"),
            Unit::PerSecond,
            rate(&self.shared),
        );
        self.row(
            &format!("{shared}, p99 (ms)"),
            Unit::Millis,
            p99(&self.shared),
        );
        println!();
        println!("hamail x: how many times faster hamail is (dovecot time / hamail time, or");
        println!(
            "          hamail ops/s / dovecot ops/s); each single operation on a fresh session"
        );
        println!("mixed ops: SELECT, FETCH r BODY.PEEK[], STORE r +FLAGS (\\Seen), SEARCH UNSEEN,");
        println!("          NOOP, APPEND of 1 KB every 10th round; p99: per-command latency");
        for (name, runs) in [
            ("one user per client", &self.spread),
            ("1 user", &self.shared),
        ] {
            let failed: Vec<usize> = runs
                .iter()
                .map(|r| r.iter().map(|m| m.failed).sum())
                .collect();
            if failed.iter().any(|&f| f > 0) {
                println!(
                    "WARNING: mixed on {name}: commands answered NO/BAD: hamail {}, dovecot {}",
                    failed[0], failed[1]
                );
            }
        }
        println!();
        self.checks();
    }

    fn row(&self, name: &str, unit: Unit, s: [Stat; 2]) {
        let ratio = match unit {
            Unit::Millis => s[1].median / s[0].median,
            Unit::PerSecond => s[0].median / s[1].median,
        };
        let decimals = if unit == Unit::Millis && s[0].median < 10.0 {
            2
        } else {
            1
        };
        println!(
            "{name:<44} | {:>10.decimals$} {:>10.decimals$} | {:>8.2} | {:>15} {:>15}",
            s[0].median,
            s[1].median,
            ratio,
            s[0].range(decimals),
            s[1].range(decimals),
        );
    }

    /// Do both servers agree on what the mailbox holds?
    fn checks(&self) {
        let p = self.plan;
        let expected_hits = (0..p.messages).filter(|i| i % 100 == 42).count();
        let first = |i: usize| &self.single[i][0];
        let (h, d) = (first(0), first(1));
        check(
            "EXISTS (cold SELECT)",
            self.cold[0].exists,
            self.cold[1].exists,
            p.messages,
        );
        check("EXISTS (SELECT)", h.exists, d.exists, p.messages);
        check("FETCH 1:* responses", h.fetched, d.fetched, p.messages);
        check("SEARCH TEXT hits", h.hits, d.hits, expected_hits);
        check_same("sum of RFC822.SIZE", h.size_sum, d.size_sum);
        check_same("BODY[] length", h.body_len, d.body_len);
        for (i, name) in ["hamail", "dovecot"].iter().enumerate() {
            let runs = &self.single[i];
            if runs.iter().any(|r| {
                (r.exists, r.fetched, r.hits, r.size_sum)
                    != (
                        runs[0].exists,
                        runs[0].fetched,
                        runs[0].hits,
                        runs[0].size_sum,
                    )
            }) {
                println!(
                    "WARNING: {name}: the single-client runs did not all see the same mailbox"
                );
            }
        }
    }
}

fn check(what: &str, hamail: usize, dovecot: usize, expected: usize) {
    if hamail == expected && dovecot == expected {
        println!("check {what}: both {expected}: ok");
    } else {
        println!("WARNING: {what}: hamail {hamail}, dovecot {dovecot}, expected {expected}");
    }
}

fn check_same<T: PartialEq + std::fmt::Display>(what: &str, hamail: T, dovecot: T) {
    if hamail == dovecot {
        println!("check {what}: both {hamail}: ok");
    } else {
        println!("WARNING: {what}: hamail {hamail}, dovecot {dovecot}");
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn dovecot_version() -> String {
    Command::new("dovecot")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".to_string())
}

// ---------------------------------------------------------------------------------------
// IMAP client

/// A minimal IMAP client connection: one command at a time, literals read inline.
struct Imap {
    stream: BufReader<TcpStream>,
    tag: u32,
}

/// The response to one command.
#[derive(Debug)]
struct Response {
    /// Untagged lines (with any literal's bytes inline), then the tagged line.
    lines: Vec<Vec<u8>>,
    /// The length of each literal, in order.
    literals: Vec<usize>,
    /// Tagged OK (else NO or BAD).
    ok: bool,
}

impl Imap {
    /// Connect, read the greeting and LOGIN.
    async fn login(addr: std::net::SocketAddr, user: &str) -> Result<Imap> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let mut c = Imap {
            stream: BufReader::new(stream),
            tag: 0,
        };
        let (greeting, _) = c.read_line().await?;
        ensure!(
            greeting.starts_with(b"* OK"),
            "greeting {:?}",
            String::from_utf8_lossy(&greeting)
        );
        c.command(&format!("LOGIN {user} {PASSWORD}"))
            .await
            .with_context(|| format!("login {user} at {addr}"))?;
        Ok(c)
    }

    /// Send a command and require a tagged OK.
    async fn command(&mut self, line: &str) -> Result<Response> {
        let r = self.command_status(line).await?;
        ensure!(r.ok, "{line}: {}", r.status_line());
        Ok(r)
    }

    /// Send a command; NO and BAD are returned, not errors.
    async fn command_status(&mut self, line: &str) -> Result<Response> {
        let tag = self.next_tag();
        self.send(format!("{tag} {line}\r\n").as_bytes()).await?;
        self.response(&tag)
            .await
            .with_context(|| format!("after {line:?}"))
    }

    /// APPEND with a synchronizing literal.
    async fn append_status(&mut self, mailbox: &str, message: &[u8]) -> Result<Response> {
        let tag = self.next_tag();
        let head = format!("{tag} APPEND {mailbox} {{{}}}\r\n", message.len());
        self.send(head.as_bytes()).await?;
        let (line, _) = self.read_line().await?;
        if !line.starts_with(b"+") {
            let mut r = self.response(&tag).await?;
            r.lines.insert(0, line);
            return Ok(r);
        }
        self.send(message).await?;
        self.send(b"\r\n").await?;
        self.response(&tag).await
    }

    async fn logout(mut self) -> Result<()> {
        self.command_status("LOGOUT").await?;
        Ok(())
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("a{}", self.tag)
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        Ok(self.stream.get_mut().write_all(bytes).await?)
    }

    /// Read lines until the tagged one.
    async fn response(&mut self, tag: &str) -> Result<Response> {
        let prefix = format!("{tag} ");
        let mut r = Response {
            lines: Vec::new(),
            literals: Vec::new(),
            ok: false,
        };
        loop {
            let (line, literals) = tokio::time::timeout(COMMAND_TIMEOUT, self.read_line())
                .await
                .context("command timed out")??;
            r.literals.extend(literals);
            let tagged = line.starts_with(prefix.as_bytes());
            if tagged {
                r.ok = line[prefix.len()..].starts_with(b"OK");
            }
            r.lines.push(line);
            if tagged {
                return Ok(r);
            }
        }
    }

    /// One response line, CRLF removed, with the bytes of any literals inline; also the
    /// literal lengths.
    async fn read_line(&mut self) -> Result<(Vec<u8>, Vec<usize>)> {
        let mut line = Vec::new();
        let mut literals = Vec::new();
        loop {
            let start = line.len();
            if self.stream.read_until(b'\n', &mut line).await? == 0 {
                bail!(
                    "connection closed; got {:?}",
                    String::from_utf8_lossy(&line)
                );
            }
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            match literal_len(&line[start..]) {
                Some(n) => {
                    let at = line.len();
                    line.resize(at + n, 0);
                    self.stream.read_exact(&mut line[at..]).await?;
                    literals.push(n);
                }
                None => return Ok((line, literals)),
            }
        }
    }
}

/// `n` if the line ends with `{n}`.
fn literal_len(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&body[open + 1..]).ok()?.parse().ok()
}

impl Response {
    fn status_line(&self) -> String {
        self.lines
            .last()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .unwrap_or_default()
    }

    /// Untagged `* <n> <word>` lines.
    fn numbered<'a>(&'a self, word: &'a str) -> impl Iterator<Item = usize> + 'a {
        self.lines.iter().filter_map(move |l| {
            let mut parts = l.strip_prefix(b"* ")?.splitn(3, |&b| b == b' ');
            let n = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
            let w = parts.next()?;
            let w = w.strip_suffix(b"\r").unwrap_or(w);
            w.eq_ignore_ascii_case(word.as_bytes()).then_some(n)
        })
    }

    /// The last `* <n> EXISTS`.
    fn exists(&self) -> Result<usize> {
        self.numbered("EXISTS")
            .last()
            .context("no EXISTS in the response")
    }

    fn count_untagged(&self, word: &str) -> usize {
        self.numbered(word).count()
    }

    /// The sum of the `RFC822.SIZE` values of the FETCH responses.
    fn rfc822_size_sum(&self) -> u64 {
        let key = b"RFC822.SIZE ";
        self.lines
            .iter()
            .filter_map(|l| {
                let at = memchr::memmem::find(l, key)? + key.len();
                let digits: Vec<u8> = l[at..]
                    .iter()
                    .copied()
                    .take_while(u8::is_ascii_digit)
                    .collect();
                std::str::from_utf8(&digits).ok()?.parse::<u64>().ok()
            })
            .sum()
    }

    /// The number of message numbers in the `* SEARCH` responses.
    fn search_hits(&self) -> usize {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix(b"* SEARCH"))
            .map(|rest| rest.split(|&b| b == b' ').filter(|w| !w.is_empty()).count())
            .sum()
    }
}

// ---------------------------------------------------------------------------------------
// The mailbox

/// Internal date of the first generated message (2025-01-06 09:00 UTC); one every 10 minutes.
const BASE_DATE: i64 = 1_736_154_000;

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "di", "pa", "go", "be", "fi", "ha", "ju", "wo",
    "ar", "en", "il", "om", "un", "tra", "sel", "dor",
];

/// The vocabulary of the generated bodies: 2-4 syllables, none with x, y, z or q, so the
/// marker word occurs only where it is put.
fn vocabulary(rng: &mut fastrand::Rng) -> Vec<String> {
    (0..3000)
        .map(|_| {
            (0..rng.usize(2..=4))
                .map(|_| SYLLABLES[rng.usize(..SYLLABLES.len())])
                .collect()
        })
        .collect()
}

/// An mbox of `n` messages, and the byte length of its first `prefix` messages.
fn generate_mbox(n: usize, prefix: usize) -> (Vec<u8>, usize) {
    let mut rng = fastrand::Rng::with_seed(20_251_124);
    let words = vocabulary(&mut rng);
    let mut out = Vec::with_capacity(n * 12_000);
    let mut prefix_len = 0;
    for i in 0..n {
        if i == prefix {
            prefix_len = out.len();
        }
        let date = BASE_DATE + i as i64 * 600;
        let data = message(&mut rng, &words, i, date);
        format::encode(
            &mut out,
            &format!("sender{}@remote.test", i % 97),
            date,
            &data,
        );
    }
    if prefix >= n {
        prefix_len = out.len();
    }
    (out, prefix_len)
}

/// Message `i`: headers, then a text body (every 5th is multipart/alternative with an HTML
/// copy, every 5th + 1 multipart/mixed with a base64 attachment); 2-20 KB; LF line ends.
fn message(rng: &mut fastrand::Rng, words: &[String], i: usize, date: i64) -> Vec<u8> {
    let pick = |rng: &mut fastrand::Rng| words[rng.usize(..words.len())].as_str();
    let target = rng.usize(2048..=20480);
    let subject = format!("{} {} {} report #{i}", pick(rng), pick(rng), pick(rng));
    let mut m = format!(
        "From: {} <{}@remote.test>\nTo: <bench@{DOMAIN}>\nSubject: {subject}\n\
         Date: {}\nMessage-ID: <{i}.{}@imapbench.test>\nMIME-Version: 1.0\n",
        pick(rng),
        pick(rng),
        format::rfc5322(date),
        rng.u32(..)
    );
    let text_len = target.saturating_sub(m.len() + 200) / if i.is_multiple_of(5) { 2 } else { 1 };
    let text = paragraphs(rng, words, text_len.max(200), i % 100 == 42);
    match i % 5 {
        0 => {
            let b = format!("alt-{i}");
            let html: String = text
                .split("\n\n")
                .map(|p| format!("<p>{p}</p>\n"))
                .collect();
            m += &format!(
                "Content-Type: multipart/alternative; boundary=\"{b}\"\n\n\
                 --{b}\nContent-Type: text/plain; charset=us-ascii\n\n{text}\n\
                 --{b}\nContent-Type: text/html; charset=us-ascii\n\n<html><body>\n{html}</body></html>\n\
                 --{b}--\n"
            );
        }
        1 => {
            let b = format!("mix-{i}");
            let text = &text[..text.len() * 3 / 4];
            let text = &text[..text.rfind(' ').unwrap_or(text.len())];
            let blob: Vec<u8> = (0..target / 6).map(|_| rng.u8(..)).collect();
            let encoded = base64::engine::general_purpose::STANDARD.encode(blob);
            let lines: Vec<&str> = encoded
                .as_bytes()
                .chunks(76)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect();
            m += &format!(
                "Content-Type: multipart/mixed; boundary=\"{b}\"\n\n\
                 --{b}\nContent-Type: text/plain; charset=us-ascii\n\n{text}\n\n\
                 --{b}\nContent-Type: application/octet-stream; name=\"data-{i}.bin\"\n\
                 Content-Transfer-Encoding: base64\n\n{}\n--{b}--\n",
                lines.join("\n")
            );
        }
        _ => m += &format!("Content-Type: text/plain; charset=us-ascii\n\n{text}\n"),
    }
    m.into_bytes()
}

/// Paragraphs of lowercase words in lines of at most 72 characters, about `len` bytes; with
/// `marker`, the search word is in the first paragraph.
fn paragraphs(rng: &mut fastrand::Rng, words: &[String], len: usize, marker: bool) -> String {
    let mut text = String::with_capacity(len + 100);
    let mut line = 0;
    let mut in_paragraph = 0;
    let mut marker_at = marker.then(|| rng.usize(3..15));
    while text.len() < len {
        let word = if marker_at == Some(0) {
            MARKER
        } else {
            words[rng.usize(..words.len())].as_str()
        };
        marker_at = marker_at
            .map(|n| n.saturating_sub(1))
            .filter(|_| word != MARKER);
        if line + word.len() + 1 > 72 {
            text.push('\n');
            line = 0;
            in_paragraph += 1;
            if in_paragraph >= rng.usize(4..10) {
                text.push('\n');
                in_paragraph = 0;
            }
        } else if line > 0 {
            text.push(' ');
            line += 1;
        }
        text.push_str(word);
        line += word.len();
    }
    text
}

// ---------------------------------------------------------------------------------------
// The servers

/// The scratch directory, the running agent and the Dovecot instance.
#[derive(Debug)]
struct Lab {
    dir: PathBuf,
    hamail_port: u16,
    dovecot_port: u16,
    users: Vec<String>,
    agent: Option<Process>,
    dovecot_up: bool,
}

fn scratch_dir(dir: Option<&Path>) -> Result<PathBuf> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir().join(format!("imapbench-{}", std::process::id())),
    };
    if dir.exists() {
        ensure!(
            std::fs::read_dir(&dir)?.next().is_none(),
            "{} is not empty",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir)?;
    // Dovecot's mail processes (unprivileged) must traverse it.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

impl Lab {
    /// Write the passwd file and hamail.toml.
    fn new(dir: PathBuf, args: &Args, plan: Plan) -> Result<Lab> {
        let mut users = vec![Server::Hamail.big_user(), Server::Hamail.shared_user()];
        users.extend((0..plan.clients).map(|i| Server::Hamail.user(i)));
        let lab = Lab {
            dir,
            hamail_port: args.hamail_port,
            dovecot_port: args.dovecot_port,
            users,
            agent: None,
            dovecot_up: false,
        };
        let passwd: String = lab
            .users
            .iter()
            .map(|u| format!("{u}:{{PLAIN}}{PASSWORD}:1000:1000::/nonexistent:/bin/false\n"))
            .collect();
        std::fs::write(lab.dir.join("passwd"), passwd)?;
        std::fs::write(lab.config(), lab.hamail_toml())?;
        Ok(lab)
    }

    /// Generate the mbox and copy it to every user of both servers; returns the size of the
    /// big one.
    fn write_mailboxes(&self, plan: Plan) -> Result<usize> {
        let t0 = Instant::now();
        let (mbox, prefix) = generate_mbox(plan.messages, plan.user_messages);
        eprintln!(
            "generated {} messages ({:.1} MB) in {:.1} s",
            plan.messages,
            mbox.len() as f64 / 1e6,
            t0.elapsed().as_secs_f64()
        );
        let hamail = super::inbox_dir(&self.spool())?;
        let dovecot = self.dovecot_mail();
        for (server, dir) in [(Server::Hamail, &hamail), (Server::Dovecot, &dovecot)] {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join(server.big_user()), &mbox)?;
            std::fs::write(dir.join(server.shared_user()), &mbox[..prefix])?;
            for i in 0..plan.clients {
                std::fs::write(dir.join(server.user(i)), &mbox[..prefix])?;
            }
        }
        Ok(mbox.len())
    }

    fn spool(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// Dovecot's INBOXes (`mail_location = mbox:~/mail:INBOX=<this>/%u`).
    fn dovecot_mail(&self) -> PathBuf {
        self.dir.join("dovecot-mail")
    }

    fn config(&self) -> PathBuf {
        self.dir.join("hamail.toml")
    }

    fn health_port(&self) -> u16 {
        self.hamail_port + 1
    }

    fn addr(&self, server: Server) -> std::net::SocketAddr {
        let port = match server {
            Server::Hamail => self.hamail_port,
            Server::Dovecot => self.dovecot_port,
        };
        ([127, 0, 0, 1], port).into()
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
smtp = 0
submission = 0
submissions = 0
imap = {imap}
imaps = 0
pop3 = 0
pop3s = 0
health = {health}

[limits]
max_connections = 200
max_connections_per_ip = 200
max_sessions_per_user = 100
"#,
            spool = self.spool().display(),
            dir = self.dir.display(),
            imap = self.hamail_port,
            health = self.health_port(),
        )
    }

    /// Start the release agent and wait for `/healthz` = 200.
    fn start_agent(&mut self) -> Result<()> {
        let health = ([127, 0, 0, 1], self.health_port()).into();
        let agent = Process::agent(&self.dir, &self.config(), health)?;
        eprintln!(
            "hamail-agent pid {} on {}",
            agent.pid(),
            self.addr(Server::Hamail)
        );
        self.agent = Some(agent);
        Ok(())
    }

    fn start_dovecot(&mut self) -> Result<()> {
        self.dovecot_up = true;
        let (dir, mail) = (self.dir.join("dovecot"), self.dovecot_mail());
        let port = self.dovecot_port.to_string();
        super::peer_script(
            DOVECOT_SCRIPT,
            "dovecot-peer.sh",
            "up",
            &[dir.as_os_str(), mail.as_os_str(), port.as_ref()],
        )?;
        Ok(())
    }

    /// Stop the agent (SIGTERM, then SIGKILL) and Dovecot.
    fn stop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.stop();
        }
        if std::mem::take(&mut self.dovecot_up) {
            let dir = self.dir.join("dovecot");
            let _ = super::peer_script(
                DOVECOT_SCRIPT,
                "dovecot-peer.sh",
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
