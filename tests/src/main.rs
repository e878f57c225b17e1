//! `hamail-lab`: bring a whole cluster up on this machine (`up`), look at it (`status`),
//! stop and start single hosts (`stop-host`, `start-host`), take it down (`down`), and
//! run the benchmarks (`bench smtp|imap|dns|spool|failover`).

mod bench;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hamail_lab::{LabInfo, Options};

#[derive(Debug, Parser)]
#[command(version, about = "hamail: the whole cluster on one machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the lab's files go and what cluster they describe.
#[derive(Debug, Args)]
struct ClusterArgs {
    #[arg(long, default_value = "lab")]
    dir: PathBuf,
    #[arg(long, default_value_t = 3)]
    hosts: usize,
    /// dnsctl's address; hosts use the following ones.
    #[arg(long, default_value = "127.0.0.10")]
    base: Ipv4Addr,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the config, certificates and demo users, start every agent and dnsctl.
    Up {
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Only write the files (config, certificates, users, `lab.json`) for a cluster that
    /// runs elsewhere: the VM lab uses this, with `--install-dir /etc/hamail`.
    Config {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Where the files will be installed (paths in hamail.toml point there).
        #[arg(long)]
        install_dir: Option<PathBuf>,
        /// The spool path (default INSTALL_DIR/spool).
        #[arg(long)]
        spool: Option<PathBuf>,
    },
    /// Stop everything the lab started; the spool stays.
    Down {
        #[arg(long, default_value = "lab")]
        dir: PathBuf,
    },
    /// Hosts, pids, and dnsctl's view.
    Status {
        #[arg(long, default_value = "lab")]
        dir: PathBuf,
    },
    /// Stop one host's agent (SIGTERM, or SIGKILL with --kill).
    StopHost {
        #[arg(long, default_value = "lab")]
        dir: PathBuf,
        #[arg(long)]
        kill: bool,
        host: String,
    },
    /// Start one host's agent again.
    StartHost {
        #[arg(long, default_value = "lab")]
        dir: PathBuf,
        host: String,
    },
    /// Run a benchmark (release binaries: cargo run --release -p hamail-lab -- bench ...).
    Bench {
        #[command(subcommand)]
        bench: bench::Bench,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hamail-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up {
            cluster: ClusterArgs { dir, hosts, base },
        } => {
            let info = hamail_lab::up(&Options {
                dir,
                hosts,
                base,
                ..Options::default()
            })?;
            print_tour(&info);
        }
        Command::Config {
            cluster: ClusterArgs { dir, hosts, base },
            install_dir,
            spool,
        } => {
            let info = hamail_lab::write_config(&Options {
                dir,
                hosts,
                base,
                install_dir,
                spool,
            })?;
            println!(
                "wrote the lab files (paths as installed in {})",
                info.dir.display()
            );
        }
        Command::Down { dir } => {
            let info = hamail_lab::down(&dir)?;
            println!(
                "lab in {} stopped; the spool is kept in {}",
                info.dir.display(),
                info.spool.display()
            );
        }
        Command::Status { dir } => {
            let info = LabInfo::load(&dir)?;
            status(&info);
        }
        Command::StopHost { dir, kill, host } => {
            hamail_lab::stop_host(&dir, &host, kill)?;
            println!("{host} stopped{}", if kill { " (SIGKILL)" } else { "" });
        }
        Command::StartHost { dir, host } => {
            let info = hamail_lab::start_host(&dir, &host)?;
            let pid = info.host(&host)?.pid.unwrap_or(0);
            println!("{host} started (pid {pid})");
        }
        Command::Bench { bench } => bench::run(bench)?,
    }
    Ok(())
}

fn status(info: &LabInfo) {
    println!("lab {} ({})", info.dir.display(), info.domain);
    for h in &info.hosts {
        let state = match h.pid {
            Some(pid) if hamail_lab::procs::alive(pid, &info.config) => {
                format!("running, pid {pid}")
            }
            Some(pid) => format!("NOT running (pid {pid} gone)"),
            None => "stopped".to_string(),
        };
        println!(
            "  {:<8} {:<15} mx {:<4} {state}",
            h.name, h.address, h.mx_priority
        );
    }
    let dns = match info.dns.pid {
        Some(pid) if hamail_lab::procs::alive(pid, &info.config) => format!("running, pid {pid}"),
        _ => "not running".to_string(),
    };
    println!("  dnsctl   {}:{} {dns}", info.dns.address, info.dns.port);
    if let Ok(bins) = hamail_lab::procs::Binaries::find() {
        println!();
        let _ = std::process::Command::new(bins.dnsctl)
            .arg("--config")
            .arg(&info.config)
            .arg("status")
            .status();
    }
}

fn print_tour(info: &LabInfo) {
    let h = |i: usize| {
        info.hosts
            .get(i)
            .map_or(info.hosts[0].address, |h| h.address)
    };
    let p = hamail_lab::PORTS;
    let alice = &info.users[0];
    let dir = info.dir.display();
    println!(
        "hamail lab is up in {dir}: {} hosts, dnsctl on {}:{}.

  users:      {}",
        info.hosts.len(),
        info.dns.address,
        info.dns.port,
        info.users
            .iter()
            .map(|u| format!("{} / {}", u.address, u.password))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "
  send:       swaks --server {}:{} --to {} --from you@example.org
  read:       python3 -c \"import imaplib; m=imaplib.IMAP4('{}', {}); m.login('{}', '{}'); print(m.select())\"
  DNS:        dig @{} -p {} MX {}
  fail over:  hamail-lab stop-host --dir {dir} --kill host1   (then dig again after ~3 s)
              dnsctl --config {} failover host2 / failback / status
  lab.json:   {dir}/lab.json    logs: {dir}/logs/
  stop:       hamail-lab down --dir {dir}",
        h(0),
        p.smtp,
        alice.address,
        h(1),
        p.imap,
        alice.login,
        alice.password,
        info.dns.address,
        info.dns.port,
        info.domain,
        info.config.display(),
    );
}
