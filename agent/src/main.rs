//! `hamail-agent`: the mail-host daemon (`run`, the default), `check-config`, and the
//! local delivery agent `deliver`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use hamail_agent::lda;
use hamail_storage::cluster::ClusterConfig;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "hamail mail-host agent: SMTP (MX, submission), IMAP4rev1, POP3, relay queue, \
             passwd-file/system/LDAP/NIS accounts, health and metrics; `deliver` is an LDA"
)]
struct Cli {
    /// The cluster config, the same file on every host.
    #[arg(
        long,
        global = true,
        env = "HAMAIL_CONFIG",
        default_value = "/etc/hamail/hamail.toml"
    )]
    config: PathBuf,
    /// This host's `[[host]]` entry (default: the short system hostname).
    #[arg(long, global = true, env = "HAMAIL_HOST")]
    host: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default).
    Run,
    /// Validate the config (and this host's entry, TLS files, passwd file) and exit.
    CheckConfig,
    /// Deliver a message from standard input to local users (an LDA, sysexits codes).
    Deliver {
        /// Envelope sender (default: $SENDER, as Postfix sets it, else MAILER-DAEMON).
        #[arg(short = 'f', long = "from")]
        from: Option<String>,
        users: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let config = match ClusterConfig::load(&cli.config) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("hamail-agent: {e}");
            return ExitCode::from(lda::EX_CONFIG as u8);
        }
    };
    let host = cli.host.clone().unwrap_or_else(short_hostname);
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => check_config(&config, &cli.config, cli.host.as_deref()),
        Command::Deliver { from, users } => {
            let sender = from
                .or_else(|| std::env::var("SENDER").ok())
                .unwrap_or_else(|| "MAILER-DAEMON".to_string());
            ExitCode::from(lda::main(&config, &host, &sender, &users) as u8)
        }
        Command::Run => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("hamail-agent: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(hamail_agent::run::run(config, &host)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hamail-agent: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Beyond the schema (checked by `load`): files the agent will need at start.
fn check_config(config: &ClusterConfig, path: &std::path::Path, host: Option<&str>) -> ExitCode {
    let mut problems = Vec::new();
    if let Some(h) = host {
        if let Err(e) = config.host(h) {
            problems.push(e.to_string());
        }
    }
    if let Some(t) = &config.tls {
        if let Err(e) = hamail_agent::tls::acceptor(&t.cert, &t.key) {
            problems.push(format!("tls: {e}"));
        }
    }
    if let Some(p) = &config.auth.passwd_file {
        if let Err(e) = std::fs::metadata(p) {
            problems.push(format!("auth.passwd_file {}: {e}", p.display()));
        }
    }
    if let Some(p) = &config.auth.aliases_file {
        if let Err(e) = std::fs::metadata(p) {
            problems.push(format!("auth.aliases_file {}: {e}", p.display()));
        }
    }
    if let Err(e) = hamail_agent::auth::from_config(config) {
        problems.push(format!("auth: {e}"));
    }
    if problems.is_empty() {
        println!(
            "{}: OK ({} host(s): {}; domains: {})",
            path.display(),
            config.hosts.len(),
            config
                .hosts
                .iter()
                .map(|h| h.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            config.cluster.domains.join(", ")
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("{}: problems:", path.display());
        for p in &problems {
            eprintln!("  - {p}");
        }
        ExitCode::from(lda::EX_CONFIG as u8)
    }
}

fn short_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.split('.').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// Logs go to stderr as one `key=value` line per event; `HAMAIL_LOG` filters
/// (`info` by default, e.g. `HAMAIL_LOG=hamail_agent=debug`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HAMAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
