//! What the bench programs share: starting the release `hamail-agent` that sits next to
//! the example binary, waiting for its `/healthz`, and reading its log.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// Start `hamail-agent --config config --host host1` with its log in `dir/agent.log`;
/// returns once `/healthz` on 127.0.0.1:`health_port` answers 200.
pub fn start_agent(dir: &Path, config: &Path, health_port: u16) -> Result<Child> {
    let exe = std::env::current_exe()?;
    let agent = exe
        .parent()
        .and_then(Path::parent)
        .context("example path")?
        .join("hamail-agent");
    ensure!(
        agent.exists(),
        "{} missing: cargo build --release -p hamail-agent --bins",
        agent.display()
    );
    let log = std::fs::File::create(dir.join("agent.log"))?;
    let mut child = Command::new(&agent)
        .arg("--config")
        .arg(config)
        .arg("--host")
        .arg("host1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {}", agent.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !healthy(health_port) {
        if let Some(status) = child.try_wait().ok().flatten() {
            bail!("agent exited: {status}\n{}", agent_log(dir));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            bail!("agent not healthy after 20 s\n{}", agent_log(dir));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

pub fn agent_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
}

/// `GET /healthz` on 127.0.0.1:`port` answered 200.
pub fn healthy(port: u16) -> bool {
    let addr = ([127, 0, 0, 1], port).into();
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.starts_with("HTTP/1.1 200")
}
