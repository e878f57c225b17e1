//! Starting and stopping the lab's processes. Each runs in its own process group (a
//! Ctrl-C in the terminal that ran `up` does not reach them), with its log in
//! `DIR/logs/`, and is stopped by pid, after checking that the pid still belongs to a
//! process started with this lab's config (pids are reused).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::LabInfo;

/// Paths of the two programs the lab runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub agent: PathBuf,
    pub dnsctl: PathBuf,
}

impl Binaries {
    /// `HAMAIL_BIN_DIR`, else next to this program (or one level up, for test binaries
    /// in `target/*/deps`). When they are missing and cargo started us, build them with
    /// the same profile first, so `cargo run -p hamail-lab -- up` is the whole story.
    pub fn find() -> anyhow::Result<Binaries> {
        Self::locate(false)
    }

    /// Like [`find`](Self::find), but when cargo started us, always run `cargo build` for
    /// them first (a no-op when they are up to date): the benchmarks must measure the
    /// code as it is, not a binary left from an older build.
    pub fn find_fresh() -> anyhow::Result<Binaries> {
        Self::locate(true)
    }

    fn locate(always_build: bool) -> anyhow::Result<Binaries> {
        let mut dirs = Vec::new();
        if let Some(d) = std::env::var_os("HAMAIL_BIN_DIR") {
            dirs.push(PathBuf::from(d));
        }
        let exe = std::env::current_exe()?;
        if let Some(d) = exe.parent() {
            dirs.push(d.to_path_buf());
            if let Some(up) = d.parent() {
                dirs.push(up.to_path_buf());
            }
        }
        let cargo = std::env::var_os("CARGO");
        // HAMAIL_BIN_DIR names binaries to use as they are.
        let rebuild =
            always_build && cargo.is_some() && std::env::var_os("HAMAIL_BIN_DIR").is_none();
        if !rebuild {
            if let Some(b) = Self::look(&dirs) {
                return Ok(b);
            }
        }
        if let Some(cargo) = cargo {
            let release = dirs.iter().any(|d| d.ends_with("release"));
            eprintln!("hamail-lab: building hamail-agent and dnsctl first");
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "hamail-agent", "-p", "dnsctl", "--bins"]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().context("cannot run cargo build")?;
            if !status.success() {
                bail!("cargo build of hamail-agent and dnsctl failed");
            }
            if let Some(b) = Self::look(&dirs) {
                return Ok(b);
            }
        }
        bail!(
            "hamail-agent and dnsctl not found next to {} (build them: cargo build --release, or set HAMAIL_BIN_DIR)",
            exe.display()
        )
    }

    /// Whether the binaries are an optimized build (their directory is `.../release`).
    pub fn is_release(&self) -> bool {
        self.agent.parent().is_some_and(|d| d.ends_with("release"))
    }

    fn look(dirs: &[PathBuf]) -> Option<Binaries> {
        dirs.iter().find_map(|d| {
            let (agent, dnsctl) = (d.join("hamail-agent"), d.join("dnsctl"));
            (agent.is_file() && dnsctl.is_file()).then_some(Binaries { agent, dnsctl })
        })
    }
}

/// Start `program --config CONFIG ARGS...` with `env` added, in a process group of its
/// own, stdout and stderr appended to `log`. The caller decides whether to wait for it.
pub fn spawn(
    program: &Path,
    args: &[&str],
    config: &Path,
    log: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    Command::new(program)
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))
}

/// Start host `i`'s agent; its pid.
pub fn start_agent(bins: &Binaries, info: &LabInfo, i: usize) -> anyhow::Result<u32> {
    let name = &info.hosts[i].name;
    let log = info.dir.join("logs").join(format!("{name}.log"));
    // Not waited for here: the lab outlives this process. `stop` reaps nothing either;
    // when `up` exits, init adopts the children.
    Ok(spawn(
        &bins.agent,
        &["--host", name, "run"],
        &info.config,
        &log,
        &[],
    )?
    .id())
}

/// Start `dnsctl serve`; its pid.
pub fn start_dnsctl(bins: &Binaries, info: &LabInfo) -> anyhow::Result<u32> {
    let log = info.dir.join("logs/dnsctl.log");
    Ok(spawn(&bins.dnsctl, &["serve"], &info.config, &log, &[])?.id())
}

/// Whether `pid` is alive and was started with `config` (so not a reused pid).
pub fn alive(pid: u32, config: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie (exited, not yet reaped) is not running.
        if stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'))
        {
            return false;
        }
    }
    let want = config.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == want)
}

/// Whether any process of the lab is running.
pub fn any_running(info: &LabInfo) -> bool {
    info.hosts
        .iter()
        .filter_map(|h| h.pid)
        .chain(info.dns.pid)
        .any(|pid| alive(pid, &info.config))
}

/// Stop `pid` if it is one of the lab's: SIGKILL at once, or SIGTERM and up to 15 s for
/// a clean exit (agents finish transactions in flight), then SIGKILL.
pub fn stop(pid: u32, config: &Path, hard: bool) {
    if !alive(pid, config) {
        return;
    }
    let Ok(raw) = i32::try_from(pid) else { return };
    let target = Pid::from_raw(raw);
    let _ = kill(
        target,
        if hard {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        },
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(pid, config) {
        if Instant::now() > deadline {
            let _ = kill(target, Signal::SIGKILL);
        }
        if Instant::now() > deadline + Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `GET /healthz` answers 200.
pub fn healthy(addr: SocketAddr) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
