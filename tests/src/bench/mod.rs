//! `hamail-lab bench smtp|imap|dns|spool|failover`: the benchmarks whose numbers the README
//! quotes, each side by side with its reference peer where there is one (Postfix, Dovecot,
//! nsd). They run the release binaries next to this program, like the lab does (when
//! started by `cargo run`, `cargo build` runs first so they are current):
//!
//! ```text
//! cargo run --release -p hamail-lab -- bench imap --quick
//! ```

mod dns;
mod failover;
mod imap;
mod smtp;
mod spool;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Subcommand;
use hamail_lab::procs::{self, Binaries};

#[derive(Debug, Subcommand)]
pub enum Bench {
    /// SMTP throughput and memory: hamail-agent vs a private Postfix on one spool (root).
    Smtp(smtp::Args),
    /// IMAP latency and throughput: hamail-agent vs a private Dovecot on one mbox (root).
    Imap(imap::Args),
    /// DNS queries per second: dnsctl vs nsd, measured with dnsperf.
    Dns(dns::Args),
    /// Storage: raw and locked appends, opening and scanning a big mailbox.
    Spool(spool::Args),
    /// Host death to new zone: a three-host lab, host1 SIGKILLed, until `mail.` moves.
    Failover(failover::Args),
}

pub fn run(bench: Bench) -> Result<()> {
    match bench {
        Bench::Smtp(args) => smtp::main(args),
        Bench::Imap(args) => imap::main(args),
        Bench::Dns(args) => dns::main(args),
        Bench::Spool(args) => spool::main(args),
        Bench::Failover(args) => failover::main(args),
    }
}

/// The agent and dnsctl to measure, built first when cargo started us; a warning when
/// they are not an optimized build.
fn binaries() -> Result<Binaries> {
    let bins = Binaries::find_fresh()?;
    if !bins.is_release() {
        eprintln!(
            "WARNING: {} is not a release build; the numbers mean little \
             (cargo run --release -p hamail-lab -- bench ...)",
            bins.agent.display()
        );
    }
    Ok(bins)
}

/// A server process a bench started (its own child, in a process group of its own),
/// stopped with SIGTERM (then SIGKILL) and reaped when dropped.
#[derive(Debug)]
struct Process {
    child: Option<Child>,
    config: PathBuf,
}

impl Process {
    /// `program --config config args...`, its output in `log`.
    fn start(
        program: &Path,
        args: &[&str],
        config: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Result<Process> {
        let child = procs::spawn(program, args, config, log, env)?;
        Ok(Process {
            child: Some(child),
            config: config.to_path_buf(),
        })
    }

    /// `hamail-agent --config config --host host1 run`, its log in `dir/agent.log`;
    /// returns once `/healthz` at `health` answers 200.
    fn agent(dir: &Path, config: &Path, health: SocketAddr) -> Result<Process> {
        let bins = binaries()?;
        let log = dir.join("agent.log");
        let mut agent =
            Process::start(&bins.agent, &["--host", "host1", "run"], config, &log, &[])?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !procs::healthy(health) {
            let tail = || std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(status) = agent.exited() {
                bail!("agent exited: {status}\n{}", tail());
            }
            if Instant::now() >= deadline {
                agent.stop();
                bail!("agent not healthy after 20 s\n{}", tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(agent)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its exit status, if it has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGTERM, up to 15 s for a clean exit, then SIGKILL; reaped.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            procs::stop(child.id(), &self.config, false);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory of the INBOX mboxes of the hamail spool at `spool`, asked of the storage
/// crate (the one owner of the layout): where a bench puts hamail's copy of a mailbox, and
/// where it points a peer that must deliver into the same spool.
pub fn inbox_dir(spool: &Path) -> anyhow::Result<PathBuf> {
    let spool = hamail_storage::Spool::open(spool, hamail_storage::LockOptions::default())?;
    let inbox = spool.inbox("bench")?;
    inbox
        .mbox_path()
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("an INBOX path without a directory"))
}

/// Run a peer's setup script (built into this program) with `action` (`up` or `down`) and
/// its arguments. `up` shows the script's output and fails unless it exits 0; `down` is
/// quiet and best effort (it runs on the way out, after whatever went wrong).
pub fn peer_script(
    script: &str,
    name: &str,
    action: &str,
    args: &[&std::ffi::OsStr],
) -> Result<()> {
    let up = action == "up";
    let status = std::process::Command::new("bash")
        .args(["-c", script, name, action])
        .args(args)
        .stdout(if up {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        })
        .status()
        .map_err(|e| anyhow::anyhow!("run {name}: {e}"))?;
    if up && !status.success() {
        bail!("{name} {action} failed: {status}");
    }
    Ok(())
}
