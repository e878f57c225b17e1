//! `dnsctl`: run the DNS server and health controller (`serve`), or talk to a running
//! one over its control socket (`status`, `failover`, `failback`, `drain`, `undrain`,
//! `zone`); `check` probes every host once on its own.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dnsctl::control::{self, Request};
use hamail_storage::cluster::ClusterConfig;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "hamail DNS server, health controller and failover CLI"
)]
struct Cli {
    /// The cluster config.
    #[arg(
        long,
        global = true,
        env = "HAMAIL_CONFIG",
        default_value = "/etc/hamail/hamail.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the zone and probe the hosts until SIGTERM.
    Serve,
    /// Hosts, health, MX order, serial and recent events.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Make HOST the primary (best MX and mail.<domain>) until `failback`.
    Failover {
        host: String,
        /// Even if HOST is down.
        #[arg(long)]
        force: bool,
    },
    /// Clear the override: back to the configured order.
    Failback,
    /// Take HOST out of MX and mail.<domain> for maintenance.
    Drain { host: String },
    /// Put a drained HOST back.
    Undrain { host: String },
    /// The zone being served, in master-file format.
    Zone,
    /// Probe every host once and print the results; exit 1 if any is down.
    Check,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HAMAIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = match ClusterConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dnsctl: {e}");
            return ExitCode::from(78);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dnsctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dnsctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: ClusterConfig) -> anyhow::Result<ExitCode> {
    if let Command::Serve = command {
        dnsctl::serve::serve(config).await?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Check = command {
        return Ok(check(&config).await);
    }
    let Some(dns) = &config.dns else {
        anyhow::bail!("the config has no [dns] section");
    };
    let (request, json) = match command {
        Command::Status { json } => (Request::Status, json),
        Command::Failover { host, force } => (Request::Failover { host, force }, false),
        Command::Failback => (Request::Failback, false),
        Command::Drain { host } => (Request::Drain { host }, false),
        Command::Undrain { host } => (Request::Undrain { host }, false),
        Command::Zone => (Request::Zone, false),
        Command::Serve | Command::Check => return Ok(ExitCode::SUCCESS),
    };
    let result = match control::call(&dns.control_socket, &request).await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("dnsctl: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match (&request, json) {
        (Request::Status, true) => println!("{}", serde_json::to_string_pretty(&result)?),
        (Request::Status, false) => print_status(&result),
        (Request::Zone, _) => print!("{}", result.as_str().unwrap_or_default()),
        _ => println!(
            "{} {}: serial {}",
            result["kind"].as_str().unwrap_or(""),
            result["host"].as_str().unwrap_or(""),
            result["serial"]
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(s: &Value) {
    println!(
        "serial {}  active {}  override {}{}",
        s["serial"],
        s["active"].as_str().unwrap_or("-"),
        s["primary_override"].as_str().unwrap_or("-"),
        if s["publish_pending"] == Value::Bool(true) {
            "  (publish pending)"
        } else {
            ""
        }
    );
    println!(
        "{:<10} {:<16} {:<5} {:<21} {:>4} {:<8} last probe",
        "host", "address", "state", "since", "mx", "flags"
    );
    for h in s["hosts"].as_array().into_iter().flatten() {
        let flags = match (h["drained"].as_bool(), h["primary_override"].as_bool()) {
            (Some(true), _) => "drained",
            (_, Some(true)) => "primary",
            _ => "",
        };
        let probe = &h["last_probe"];
        let last = if probe.is_null() {
            "-".to_string()
        } else {
            format!(
                "{} ({} ms)",
                probe["detail"].as_str().unwrap_or(""),
                probe["latency_ms"]
            )
        };
        println!(
            "{:<10} {:<16} {:<5} {:<21} {:>4} {:<8} {}",
            h["name"].as_str().unwrap_or(""),
            h["address"].as_str().unwrap_or(""),
            if h["up"] == Value::Bool(true) {
                "up"
            } else {
                "DOWN"
            },
            h["since"].as_str().unwrap_or(""),
            h["mx_preference"]
                .as_u64()
                .map_or("-".to_string(), |p| p.to_string()),
            flags,
            last
        );
    }
    println!("recent events:");
    for e in s["events"].as_array().into_iter().flatten() {
        println!(
            "  {} {:<9} {:<8} serial {} {}",
            e["time"].as_str().unwrap_or(""),
            e["kind"].as_str().unwrap_or(""),
            e["host"].as_str().unwrap_or("-"),
            e["serial"],
            e["reason"].as_str().unwrap_or("")
        );
    }
}

async fn check(config: &ClusterConfig) -> ExitCode {
    let timeout = Duration::from_millis(config.dns.as_ref().map_or(1000, |d| d.probe_timeout_ms));
    let results = dnsctl::controller::probe_all(config, timeout).await;
    let mut all_ok = true;
    for (host, p) in &results {
        all_ok &= p.ok;
        println!(
            "{host:<10} {:<4} {:>5} ms  {}",
            if p.ok { "up" } else { "DOWN" },
            p.latency_ms,
            p.detail
        );
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
