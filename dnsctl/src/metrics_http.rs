//! `/metrics` for Prometheus: probe results, transitions, operator commands and the
//! serial, rendered by metrics-exporter-prometheus on a minimal HTTP/1.1 listener (one
//! request per connection, like the agent's).

use std::net::SocketAddr;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Install the recorder (once per process) and return the handle that renders it.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    Ok(handle)
}

/// Serve `GET /metrics` until `shutdown` changes.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let mut stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                stream.read(&mut buf),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let (status, body) = if buf[..n].starts_with(b"GET /metrics ") {
                ("200 OK", handle.render())
            } else {
                ("404 Not Found", "not found\n".to_string())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}

/// Bind the metrics listener (an error names the address).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for /metrics on {addr}: {e}"))
}
