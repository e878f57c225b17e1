//! A scripted SMTP server for tests: records every accepted transaction byte for byte
//! (the DATA payload as received: CRLF and dot-stuffed) and answers RCPT and the end of
//! DATA as the test's script says.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Where the script is asked for a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    Rcpt(String),
    DataEnd,
}

/// `(stage, connection number from 0)` → reply line without CRLF; `None` means 250.
pub type Script = Arc<dyn Fn(&Stage, usize) -> Option<String> + Send + Sync>;

/// One transaction the sink accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    /// Everything between `354` and the terminating `.` line, as sent.
    pub data: Vec<u8>,
    pub tls: bool,
    pub at: Instant,
}

#[derive(Clone)]
pub struct Sink {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub connections: Arc<AtomicUsize>,
}

impl Sink {
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// TLS for the sink's STARTTLS (a self-signed certificate, as most MX hosts have).
pub fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let key = rcgen::generate_simple_self_signed(vec!["mx.remote.test".to_string()]).unwrap();
    let cert = key.cert.der().clone();
    let pkey = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], pkey)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

pub async fn start(script: Script, tls: Option<tokio_rustls::TlsAcceptor>) -> Sink {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink = Sink {
        port: listener.local_addr().unwrap().port(),
        received: Arc::default(),
        connections: Arc::default(),
    };
    let s = sink.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let n = s.connections.fetch_add(1, Ordering::SeqCst);
            let (s, script, tls) = (s.clone(), script.clone(), tls.clone());
            tokio::spawn(async move {
                let _ = session(stream, n, &s, &script, tls).await;
            });
        }
    });
    sink
}

async fn session(
    stream: TcpStream,
    n: usize,
    sink: &Sink,
    script: &Script,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let mut io = BufReader::new(stream);
    io.write_all(b"220 mx.remote.test ESMTP sink\r\n").await?;
    let starttls = dialog(&mut io, n, sink, script, tls.is_some(), false).await?;
    if let (Some(()), Some(acceptor)) = (starttls, tls) {
        let stream = acceptor.accept(io.into_inner()).await?;
        let mut io = BufReader::new(stream);
        dialog(&mut io, n, sink, script, false, true).await?;
    }
    Ok(())
}

/// Serve commands; `Ok(Some(()))` when STARTTLS was accepted and TLS must begin.
async fn dialog<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    n: usize,
    sink: &Sink,
    script: &Script,
    offer_tls: bool,
    tls: bool,
) -> std::io::Result<Option<()>> {
    let mut mail_from = String::new();
    let mut rcpts = Vec::new();
    loop {
        let mut line = Vec::new();
        if io.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        let cmd = String::from_utf8_lossy(&line).trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            let tls_line = if offer_tls { "250-STARTTLS\r\n" } else { "" };
            format!("250-mx.remote.test\r\n{tls_line}250-8BITMIME\r\n250 SIZE 10000000")
        } else if upper == "STARTTLS" && offer_tls {
            io.write_all(b"220 2.0.0 go ahead\r\n").await?;
            return Ok(Some(()));
        } else if upper.starts_with("MAIL FROM:") {
            mail_from = between_brackets(&cmd);
            rcpts.clear();
            "250 2.1.0 ok".to_string()
        } else if upper.starts_with("RCPT TO:") {
            let rcpt = between_brackets(&cmd);
            let reply =
                script(&Stage::Rcpt(rcpt.clone()), n).unwrap_or_else(|| "250 2.1.5 ok".to_string());
            if reply.starts_with('2') {
                rcpts.push(rcpt);
            }
            reply
        } else if upper == "DATA" {
            io.write_all(b"354 go on\r\n").await?;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if io.read_until(b'\n', &mut l).await? == 0 {
                    return Ok(None);
                }
                if l == b".\r\n" {
                    break;
                }
                data.extend_from_slice(&l);
            }
            let reply =
                script(&Stage::DataEnd, n).unwrap_or_else(|| "250 2.0.0 queued".to_string());
            if reply.starts_with('2') {
                sink.received.lock().unwrap().push(Received {
                    mail_from: mail_from.clone(),
                    rcpts: rcpts.clone(),
                    data,
                    tls,
                    at: Instant::now(),
                });
            }
            reply
        } else if upper == "QUIT" {
            io.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(None);
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 ok".to_string()
        } else {
            "502 5.5.2 not implemented".to_string()
        };
        io.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

fn between_brackets(cmd: &str) -> String {
    let start = cmd.find('<').map_or(0, |i| i + 1);
    let end = cmd[start..].find('>').map_or(cmd.len(), |i| start + i);
    cmd[start..end].to_string()
}
