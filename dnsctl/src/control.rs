//! The control API between `dnsctl serve` and the CLI: a Unix socket (mode 0600, so
//! only its owner, normally root, can move traffic), one JSON request line, one JSON
//! response line.
//!
//! Requests: `{"cmd":"status"}`, `{"cmd":"zone"}`, `{"cmd":"failover","host":"h","force":false}`,
//! `{"cmd":"failback"}`, `{"cmd":"drain","host":"h"}`, `{"cmd":"undrain","host":"h"}`.
//! Responses: `{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use crate::controller::Controller;

/// Requests longer than this are refused (they are a few dozen bytes).
const MAX_REQUEST: usize = 4096;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Zone,
    Failover {
        host: String,
        #[serde(default)]
        force: bool,
    },
    Failback,
    Drain {
        host: String,
    },
    Undrain {
        host: String,
    },
}

/// Bind the socket: a stale socket file left by a dead server is replaced, a live
/// server's is not (two controllers would fight over the zone).
pub async fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use: is another dnsctl serve running?",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serve requests until `shutdown` changes.
pub async fn serve(
    listener: UnixListener,
    controller: Arc<Mutex<Controller>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let controller = controller.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, controller).await {
                tracing::debug!(error = %e, "control connection failed");
            }
        });
    }
}

async fn handle(stream: UnixStream, controller: Arc<Mutex<Controller>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    let n = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request timeout"))??;
    let response = if n == 0 || !line.ends_with('\n') {
        json!({"ok": false, "error": "request must be one JSON line"})
    } else {
        match serde_json::from_str::<Request>(&line) {
            Ok(req) => execute(req, &controller).await,
            Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
        }
    };
    let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await
}

async fn execute(req: Request, controller: &Mutex<Controller>) -> Value {
    let mut c = controller.lock().await;
    let result = match req {
        Request::Status => return json!({"ok": true, "result": c.status()}),
        Request::Zone => return json!({"ok": true, "result": c.snapshot().to_master_file()}),
        Request::Failover { host, force } => c.failover(&host, force).await,
        Request::Failback => c.failback().await,
        Request::Drain { host } => c.drain(&host).await,
        Request::Undrain { host } => c.undrain(&host).await,
    };
    match result {
        Ok(event) => json!({"ok": true, "result": event}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}

/// Send one request to a running server; `Err` carries a message for the operator.
pub async fn call(path: &Path, req: &Request) -> Result<Value, String> {
    let stream = UnixStream::connect(path).await.map_err(|e| {
        format!(
            "cannot reach dnsctl serve at {}: {e} (is it running? is dns.control_socket right?)",
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    write.write_all(&line).await.map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(read)
        .read_line(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&answer).map_err(|e| format!("bad answer: {e}"))?;
    if v["ok"] == json!(true) {
        Ok(v["result"].clone())
    } else {
        Err(v["error"].as_str().unwrap_or("request failed").to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json() {
        let r: Request = serde_json::from_str(r#"{"cmd":"failover","host":"host2"}"#).unwrap();
        assert_eq!(
            r,
            Request::Failover {
                host: "host2".into(),
                force: false
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::Drain { host: "h".into() }).unwrap(),
            r#"{"cmd":"drain","host":"h"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
    }
}
