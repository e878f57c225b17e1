//! How long from a host's death to the new zone being served: a three-host lab (real
//! agents and `dnsctl serve`, health interval 1 s, fail_after 3, recover_after 3, as
//! `hamail-lab up` configures them); host1's agent is SIGKILLed at a random point of the
//! probe cycle, and `mail.<domain>` is queried every 20 ms until it names host2. Then host1
//! is started again and the next trial waits until `mail.` names it once more. Repeated
//! `TRIALS` times (20); prints min/median/max.
//!
//! `cargo run --release -p hamail-lab -- bench failover [TRIALS]`

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use hamail_lab::{dns, LabInfo, Options, DOMAIN};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of trials.
    #[arg(default_value_t = 20)]
    trials: usize,
    /// The lab's dnsctl address; its hosts take the next three.
    #[arg(long, default_value = "127.0.4.10")]
    base: Ipv4Addr,
    /// The lab's directory (default: a new one under /tmp, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The lab, taken down (and its directory removed unless it was given) when dropped.
struct Lab {
    info: LabInfo,
    dir: PathBuf,
    remove: bool,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = hamail_lab::down(&self.dir);
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Lab {
    /// `mail.<domain>` A, from dnsctl.
    fn mail(&self) -> Option<String> {
        let name = format!("mail.{DOMAIN}");
        dns::query(self.info.dns_addr(), &name, dns::A)?
            .into_iter()
            .next()
    }

    /// Poll every 20 ms until `mail.` names host `i`; how long that took.
    fn wait_mail(&self, i: usize, timeout: Duration) -> Option<Duration> {
        let want = self.info.hosts[i].address.to_string();
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if self.mail().as_deref() == Some(want.as_str()) {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

pub fn main(args: Args) -> Result<()> {
    super::binaries()?;
    let (dir, remove) = match args.dir {
        Some(d) => (d, false),
        None => (
            std::env::temp_dir().join(format!("failbench-{}", std::process::id())),
            true,
        ),
    };
    let info = hamail_lab::up(&Options {
        dir: dir.clone(),
        hosts: 3,
        base: args.base,
        ..Options::default()
    })
    .context("hamail-lab up")?;
    let lab = Lab { info, dir, remove };
    // dnsctl's first probes may have found agents still starting; a few good rounds
    // reset those failures, so the first trial needs fail_after new ones like the rest.
    std::thread::sleep(Duration::from_secs(3));
    let mut times = Vec::new();
    for trial in 0..args.trials.max(1) {
        ensure!(
            lab.wait_mail(0, Duration::from_secs(15)).is_some(),
            "trial {trial}: mail. does not name host1"
        );
        // Start at a random point of the probe cycle, as a real failure would.
        std::thread::sleep(Duration::from_millis(fastrand::u64(..1000)));
        hamail_lab::stop_host(&lab.dir, "host1", true)?;
        let took = lab.wait_mail(1, Duration::from_secs(15));
        let took = took.with_context(|| {
            format!(
                "trial {trial}: no failover; see {}",
                lab.dir.join("logs/dnsctl.log").display()
            )
        })?;
        times.push(took);
        eprintln!("trial {:>2}: {:.2} s", trial + 1, took.as_secs_f64());
        hamail_lab::start_host(&lab.dir, "host1")?;
    }
    times.sort();
    let secs = |d: Duration| d.as_secs_f64();
    println!(
        "host death -> new zone served, {} trials (interval 1 s, fail_after 3): min {:.2} s, median {:.2} s, max {:.2} s",
        times.len(),
        secs(times[0]),
        secs(times[times.len() / 2]),
        secs(times[times.len() - 1])
    );
    Ok(())
}
