//! hamail-lab: a complete cluster on one machine, and the end-to-end tests that drive it.
//!
//! - this module: [`up`], [`down`], [`stop_host`], [`start_host`], [`write_config`], and
//!   [`LabInfo`], the `lab.json` contract scripts and tests read.
//! - [`files`]: the lab's files: `hamail.toml`, CA and certificate, demo users, aliases.
//! - [`procs`]: finding (or building) the binaries, starting and stopping the processes.
//! - [`dns`]: a minimal blocking DNS client to wait for and read the lab's zone.
//!
//! `up` writes a config for N hosts on loopback addresses sharing one spool directory, a
//! CA and certificate, demo users, then starts N `hamail-agent` processes and `dnsctl
//! serve` in the background and records everything in `lab.json`.
//!
//! The lab runs the real binaries, never links them: they are looked up next to this
//! program, and built with cargo when it was started by cargo and they are missing. The
//! lab, the test suite and the VM lab are described in `tests/README.md`.

pub mod dns;
pub mod files;
pub mod procs;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

/// Ports every host uses on its own address (all above 1024, so the lab runs as a normal
/// user too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    pub smtp: u16,
    pub submission: u16,
    pub smtps: u16,
    pub imap: u16,
    pub imaps: u16,
    pub pop3: u16,
    pub pop3s: u16,
    pub health: u16,
}

pub const PORTS: Ports = Ports {
    smtp: 2525,
    submission: 2587,
    smtps: 2465,
    imap: 2143,
    imaps: 2993,
    pop3: 2110,
    pop3s: 2995,
    health: 2080,
};

/// The DNS port of `dnsctl serve` in the lab.
pub const DNS_PORT: u16 = 5353;

pub const DOMAIN: &str = "example.test";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsInfo {
    pub address: IpAddr,
    pub port: u16,
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub name: String,
    pub address: IpAddr,
    pub pid: Option<u32>,
    pub mx_priority: u16,
    pub ports: Ports,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub login: String,
    pub password: String,
    pub address: String,
}

/// `DIR/lab.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabInfo {
    pub domain: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub spool: PathBuf,
    pub ca_cert: PathBuf,
    pub dns: DnsInfo,
    pub hosts: Vec<HostInfo>,
    pub users: Vec<User>,
}

/// What `up` builds.
#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    pub hosts: usize,
    /// dnsctl's address; hosts take the next ones (`127.0.0.10` → hosts on .11, .12, ...).
    pub base: Ipv4Addr,
    /// Where the files will live when they are used somewhere else (the VM lab copies
    /// them to `/etc/hamail` in each guest); paths in `hamail.toml` point there. Default:
    /// `dir`.
    pub install_dir: Option<PathBuf>,
    /// The spool path in `hamail.toml`; default `<install_dir>/spool`.
    pub spool: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dir: PathBuf::from("lab"),
            hosts: 3,
            base: Ipv4Addr::new(127, 0, 0, 10),
            install_dir: None,
            spool: None,
        }
    }
}

impl LabInfo {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    pub fn load(dir: &Path) -> anyhow::Result<LabInfo> {
        let path = Self::path(dir);
        let text = std::fs::read(&path)
            .with_context(|| format!("{}: no lab here (run hamail-lab up)", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("{}: not a lab.json", path.display()))
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        let path = Self::path(&self.dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// The position of host `name` in `hosts`; the error lists the lab's hosts.
    pub fn host_index(&self, name: &str) -> anyhow::Result<usize> {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .with_context(|| {
                let names: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
                format!("no host {name:?} in the lab (hosts: {})", names.join(", "))
            })
    }

    pub fn host(&self, name: &str) -> anyhow::Result<&HostInfo> {
        Ok(&self.hosts[self.host_index(name)?])
    }

    pub fn addr(&self, host: usize, port: u16) -> SocketAddr {
        SocketAddr::new(self.hosts[host].address, port)
    }

    pub fn dns_addr(&self) -> SocketAddr {
        SocketAddr::new(self.dns.address, self.dns.port)
    }
}

/// Only write the lab's files into `opts.dir`, for a cluster run elsewhere (the VM lab):
/// `lab.json` there describes it, with paths as installed (`opts.install_dir`).
pub fn write_config(opts: &Options) -> anyhow::Result<LabInfo> {
    if opts.hosts == 0 || opts.hosts > 200 {
        bail!("--hosts must be between 1 and 200");
    }
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("cannot create {}", opts.dir.display()))?;
    let info = files::write_all(&opts.dir, opts)?;
    std::fs::write(
        LabInfo::path(&opts.dir),
        serde_json::to_string_pretty(&info)?,
    )?;
    Ok(info)
}

/// Bring a lab up in `opts.dir` (created; an existing running lab there is an error).
pub fn up(opts: &Options) -> anyhow::Result<LabInfo> {
    if opts.hosts == 0 || opts.hosts > 200 {
        bail!("--hosts must be between 1 and 200");
    }
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("cannot create {}", opts.dir.display()))?;
    let dir = std::fs::canonicalize(&opts.dir)?;
    if let Ok(old) = LabInfo::load(&dir) {
        if procs::any_running(&old) {
            bail!(
                "a lab is already running in {} (hamail-lab down --dir {} first)",
                dir.display(),
                dir.display()
            );
        }
    }
    let bins = procs::Binaries::find()?;
    let mut info = files::write_all(&dir, opts)?;
    for i in 0..info.hosts.len() {
        let pid = procs::start_agent(&bins, &info, i)?;
        info.hosts[i].pid = Some(pid);
    }
    info.dns.pid = Some(procs::start_dnsctl(&bins, &info)?);
    info.save()?;
    wait_ready(&info, Duration::from_secs(30))?;
    Ok(info)
}

/// Wait until every host's `/healthz` says 200 and DNS answers with an MX.
pub fn wait_ready(info: &LabInfo, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    for i in 0..info.hosts.len() {
        wait_healthy(info, i, deadline)?;
    }
    while dns::query(info.dns_addr(), DOMAIN, dns::MX).is_none_or(|a| a.is_empty()) {
        if Instant::now() > deadline {
            bail!(
                "dnsctl did not answer; see {}",
                info.dir.join("logs/dnsctl.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Wait until host `i`'s `/healthz` says 200; the error points at its log.
fn wait_healthy(info: &LabInfo, i: usize, deadline: Instant) -> anyhow::Result<()> {
    while !procs::healthy(info.addr(i, PORTS.health)) {
        if Instant::now() > deadline {
            let name = &info.hosts[i].name;
            bail!(
                "{name} did not become healthy; see {}",
                info.dir.join("logs").join(format!("{name}.log")).display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Stop everything the lab started (by pid), leaving the spool.
pub fn down(dir: &Path) -> anyhow::Result<LabInfo> {
    let mut info = LabInfo::load(dir)?;
    for h in &mut info.hosts {
        if let Some(pid) = h.pid.take() {
            procs::stop(pid, &info.config, false);
        }
    }
    if let Some(pid) = info.dns.pid.take() {
        procs::stop(pid, &info.config, false);
    }
    info.save()?;
    Ok(info)
}

/// Stop one agent (SIGTERM, or SIGKILL with `kill`).
pub fn stop_host(dir: &Path, name: &str, kill: bool) -> anyhow::Result<LabInfo> {
    let mut info = LabInfo::load(dir)?;
    let i = info.host_index(name)?;
    match info.hosts[i].pid.take() {
        Some(pid) => procs::stop(pid, &info.config, kill),
        None => bail!("{name} is not running"),
    }
    info.save()?;
    Ok(info)
}

/// Start one agent again and wait until it is healthy.
pub fn start_host(dir: &Path, name: &str) -> anyhow::Result<LabInfo> {
    let mut info = LabInfo::load(dir)?;
    let i = info.host_index(name)?;
    if let Some(pid) = info.hosts[i].pid {
        if procs::alive(pid, &info.config) {
            bail!("{name} is already running (pid {pid})");
        }
    }
    let bins = procs::Binaries::find()?;
    info.hosts[i].pid = Some(procs::start_agent(&bins, &info, i)?);
    info.save()?;
    wait_healthy(&info, i, Instant::now() + Duration::from_secs(30))?;
    Ok(info)
}
