//! The SMTP client for one outbound connection: banner, EHLO (HELO fallback),
//! opportunistic STARTTLS, MAIL/RCPT/DATA and QUIT, each command under a timeout.
//!
//! The byte-level parts are pure functions ([`Capabilities::parse`], [`needs_8bit`], and
//! the DATA payload from `hamail_storage::wire::to_wire_dot_stuffed`) so they are tested
//! without sockets; the session itself is a thin async loop over them. Every outcome is a [`Reply`], real (from the server) or synthetic (a
//! network error or timeout, said in the server's terms), so the runner and the DSN code
//! treat both alike.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use smtp_proto::response::parser::ResponseReceiver;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest reply we buffer; smtp-proto caps a reply's text at 4 KiB anyway.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// DATA is written in pieces so that the command timeout bounds each piece, not the
/// whole (possibly large) message on a slow link.
const DATA_CHUNK: usize = 64 * 1024;

/// An SMTP reply, or a local failure phrased as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// Enhanced status code (RFC 3463); `[0, 0, 0]` when the server sent none.
    pub status: [u8; 3],
    /// The reply text (lines joined with `\n`), or what went wrong locally.
    pub text: String,
    /// True when a remote server said this (it then goes into `Diagnostic-Code:`).
    pub remote: bool,
}

/// How a reply settles a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Temporary,
    Permanent,
}

impl Reply {
    /// A failure that happened here (network, timeout, policy), not at the server.
    pub fn local(code: u16, status: [u8; 3], text: impl Into<String>) -> Reply {
        Reply {
            code,
            status,
            text: text.into(),
            remote: false,
        }
    }

    pub fn outcome(&self) -> Outcome {
        match self.code {
            200..=399 => Outcome::Delivered,
            500..=599 => Outcome::Permanent,
            // 4xx, and anything nonsensical: keeping the message is the safe side.
            _ => Outcome::Temporary,
        }
    }

    /// The RFC 3463 status for a DSN: the server's own when it sent a consistent one,
    /// else the generic one of the reply's class.
    pub fn status_code(&self) -> String {
        let class = (self.code / 100) as u8;
        if self.status[0] == class && class >= 2 {
            format!("{}.{}.{}", self.status[0], self.status[1], self.status[2])
        } else {
            format!("{}.0.0", class.clamp(2, 5))
        }
    }

    /// One line, for logs and the queue's `last_error`.
    pub fn one_line(&self) -> String {
        self.to_string().replace(['\r', '\n'], " ")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.status != [0, 0, 0] {
            write!(f, "{} {} {}", self.code, self.status_code(), self.text)
        } else {
            write!(f, "{} {}", self.code, self.text)
        }
    }
}

/// Settings of a connection, from `[relay]` and the host's name.
#[derive(Debug, Clone)]
pub struct ClientParams {
    /// Our name in EHLO/HELO.
    pub helo_name: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Fail (temporarily) rather than send in clear text.
    pub require_tls: bool,
}

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub sender: &'a str,
    pub recipients: &'a [String],
    /// The message in the spool's form: LF line endings, not dot-stuffed.
    pub data: &'a [u8],
}

/// The server's EHLO keywords that matter to us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub starttls: bool,
    pub eightbitmime: bool,
    pub smtputf8: bool,
    /// `SIZE` offered; `Some(0)` means no fixed limit.
    pub size: Option<u64>,
}

impl Capabilities {
    /// Parse the text of a 250 EHLO reply (the first line is the server's name).
    pub fn parse(text: &str) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in text.lines().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "STARTTLS" => caps.starttls = true,
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "SIZE" => {
                    caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                _ => {}
            }
        }
        caps
    }
}

/// Whether the message has bytes above 127 (then we announce `BODY=8BITMIME`).
pub fn needs_8bit(data: &[u8]) -> bool {
    data.iter().any(|b| *b >= 0x80)
}

/// A connected byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why a session ended before any recipient was settled.
#[derive(Debug)]
enum SessionError {
    /// Applies to every recipient; `retry_plain` when the TLS handshake itself failed
    /// (opportunistic TLS then tries once more without it, like Postfix).
    Failed { reply: Reply, retry_plain: bool },
}

impl From<Reply> for SessionError {
    fn from(reply: Reply) -> Self {
        SessionError::Failed {
            reply,
            retry_plain: false,
        }
    }
}

/// Deliver `env` over one connection to `addr` (`server_name` is the MX host name, used
/// for SNI and logs). `Err` means the whole transaction failed before recipients were
/// settled (the caller may try the next MX); `Ok` has one reply per recipient, in order.
pub async fn send(
    addr: SocketAddr,
    server_name: &str,
    params: &ClientParams,
    env: &Envelope<'_>,
) -> Result<Vec<Reply>, Reply> {
    match session(addr, server_name, params, env, true).await {
        Err(SessionError::Failed {
            retry_plain: true,
            reply,
        }) if !params.require_tls => {
            tracing::info!(%addr, server = server_name, error = %reply.one_line(),
                "TLS handshake failed, retrying without TLS");
            session(addr, server_name, params, env, false)
                .await
                .map_err(|SessionError::Failed { reply, .. }| reply)
        }
        other => other.map_err(|SessionError::Failed { reply, .. }| reply),
    }
}

async fn session(
    addr: SocketAddr,
    server_name: &str,
    params: &ClientParams,
    env: &Envelope<'_>,
    try_tls: bool,
) -> Result<Vec<Reply>, SessionError> {
    let stream = match tokio::time::timeout(params.connect_timeout, TcpStream::connect(addr)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(
                Reply::local(451, [4, 4, 1], format!("connect to {addr} failed: {e}")).into(),
            )
        }
        Err(_) => {
            return Err(Reply::local(451, [4, 4, 1], format!("connect to {addr} timed out")).into())
        }
    };
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        io: Box::new(stream),
        buf: Vec::new(),
        timeout: params.command_timeout,
        peer: addr,
    };
    let banner = conn.read_reply().await?;
    if banner.code != 220 {
        // A 5xx banner means "no service here", not "this mail is refused": the next MX
        // may take it (Postfix's smtp_skip_5xx_greeting).
        return Err(Reply {
            code: 451,
            ..banner
        }
        .into());
    }
    let mut caps = conn.hello(&params.helo_name).await?;
    if caps.starttls && try_tls {
        let reply = conn.command("STARTTLS\r\n").await?;
        if reply.code == 220 {
            conn.starttls(server_name).await?;
            caps = conn.hello(&params.helo_name).await?;
        } else if params.require_tls {
            return Err(Reply { code: 451, ..reply }.into());
        }
    } else if params.require_tls {
        return Err(Reply::local(
            451,
            [4, 7, 5],
            format!("{server_name} does not offer STARTTLS and TLS is required"),
        )
        .into());
    }
    let result = transaction(&mut conn, &caps, env).await;
    if result.is_ok() {
        // The mail is settled; a failing QUIT changes nothing.
        let _ = conn.command("QUIT\r\n").await;
    }
    result
}

async fn transaction(
    conn: &mut Conn,
    caps: &Capabilities,
    env: &Envelope<'_>,
) -> Result<Vec<Reply>, SessionError> {
    let utf8_needed = |a: &str| !a.is_ascii();
    if utf8_needed(env.sender) && !caps.smtputf8 {
        return Err(Reply::local(
            554,
            [5, 6, 7],
            "the sender address is non-ASCII and the server does not offer SMTPUTF8",
        )
        .into());
    }
    let size = env.data.len() as u64;
    if let Some(limit) = caps.size.filter(|l| *l > 0 && size > *l) {
        return Err(Reply::local(
            552,
            [5, 3, 4],
            format!("message of {size} bytes exceeds the server's limit of {limit}"),
        )
        .into());
    }
    // Recipients that cannot be sent to this server at all are settled up front.
    let mut replies: Vec<Option<Reply>> = env
        .recipients
        .iter()
        .map(|r| {
            (utf8_needed(r) && !caps.smtputf8).then(|| {
                Reply::local(
                    553,
                    [5, 6, 7],
                    "non-ASCII address and the server does not offer SMTPUTF8",
                )
            })
        })
        .collect();
    let use_utf8 = caps.smtputf8
        && (utf8_needed(env.sender)
            || env
                .recipients
                .iter()
                .zip(&replies)
                .any(|(r, settled)| settled.is_none() && utf8_needed(r)));
    if replies.iter().all(Option::is_some) {
        return Ok(replies.into_iter().flatten().collect());
    }
    let mut mail = format!("MAIL FROM:<{}>", env.sender);
    if caps.size.is_some() {
        mail.push_str(&format!(" SIZE={size}"));
    }
    if caps.eightbitmime && needs_8bit(env.data) {
        mail.push_str(" BODY=8BITMIME");
    }
    if use_utf8 {
        mail.push_str(" SMTPUTF8");
    }
    mail.push_str("\r\n");
    let reply = conn.command(&mail).await?;
    if reply.outcome() != Outcome::Delivered {
        return Err(reply.into());
    }
    let mut accepted = 0;
    for (rcpt, slot) in env.recipients.iter().zip(replies.iter_mut()) {
        if slot.is_some() {
            continue;
        }
        // A failure from here on leaves the recipients not yet answered temporary.
        let reply = match conn.command(&format!("RCPT TO:<{rcpt}>\r\n")).await {
            Ok(r) => r,
            Err(SessionError::Failed { reply, .. }) => {
                // No DATA will follow: recipients accepted so far are not delivered.
                return Ok(replies
                    .into_iter()
                    .map(|r| match r {
                        Some(r) if r.outcome() != Outcome::Delivered => r,
                        _ => reply.clone(),
                    })
                    .collect());
            }
        };
        if reply.outcome() == Outcome::Delivered {
            accepted += 1;
        }
        *slot = Some(reply);
    }
    if accepted == 0 {
        let _ = conn.command("RSET\r\n").await;
        return Ok(replies.into_iter().flatten().collect());
    }
    let final_reply = match data(conn, env.data).await {
        Ok(r) => r,
        Err(SessionError::Failed { reply, .. }) => reply,
    };
    // Every accepted recipient shares the final reply; rejected ones keep their own.
    Ok(replies
        .into_iter()
        .map(|r| match r {
            Some(r) if r.outcome() == Outcome::Delivered => final_reply.clone(),
            Some(r) => r,
            None => final_reply.clone(),
        })
        .collect())
}

async fn data(conn: &mut Conn, message: &[u8]) -> Result<Reply, SessionError> {
    let reply = conn.command("DATA\r\n").await?;
    if reply.code != 354 {
        return Ok(match reply.outcome() {
            // A 2xx or 3xx other than 354 is a protocol error; do not call it delivered.
            Outcome::Delivered => Reply { code: 451, ..reply },
            _ => reply,
        });
    }
    // CRLF, dot-stuffed, with the final `.` line (RFC 5321 §4.5.2).
    let payload = hamail_storage::wire::to_wire_dot_stuffed(message, None);
    for chunk in payload.chunks(DATA_CHUNK) {
        conn.write(chunk).await?;
    }
    conn.read_reply().await
}

struct Conn {
    io: Box<dyn Io>,
    /// Bytes read but not yet parsed.
    buf: Vec<u8>,
    timeout: Duration,
    peer: SocketAddr,
}

impl Conn {
    fn network_error(&self, what: &str) -> Reply {
        Reply::local(451, [4, 4, 2], format!("{what} (server {})", self.peer))
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        match tokio::time::timeout(self.timeout, self.io.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.network_error(&format!("write failed: {e}")).into()),
            Err(_) => Err(self.network_error("timed out writing").into()),
        }
    }

    async fn command(&mut self, line: &str) -> Result<Reply, SessionError> {
        self.write(line.as_bytes()).await?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> Result<Reply, SessionError> {
        let mut receiver = ResponseReceiver::default();
        loop {
            let mut iter = self.buf.iter();
            let parsed = receiver.parse(&mut iter);
            let consumed = self.buf.len() - iter.len();
            self.buf.drain(..consumed);
            match parsed {
                Ok(r) => {
                    return Ok(Reply {
                        code: r.code,
                        status: r.esc,
                        text: r.message.trim_end().to_string(),
                        remote: true,
                    })
                }
                Err(smtp_proto::Error::NeedsMoreData { .. }) => {}
                Err(e) => {
                    return Err(self.network_error(&format!("malformed reply: {e}")).into());
                }
            }
            if self.buf.len() > MAX_REPLY_BYTES {
                return Err(self.network_error("reply too long").into());
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout(self.timeout, self.io.read(&mut chunk)).await {
                Ok(Ok(0)) => return Err(self.network_error("connection closed").into()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    return Err(self.network_error(&format!("read failed: {e}")).into());
                }
                Err(_) => return Err(self.network_error("timed out waiting for a reply").into()),
            };
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// EHLO, falling back to HELO (no extensions) when EHLO is refused.
    async fn hello(&mut self, name: &str) -> Result<Capabilities, SessionError> {
        let reply = self.command(&format!("EHLO {name}\r\n")).await?;
        if reply.code == 250 {
            return Ok(Capabilities::parse(&reply.text));
        }
        let reply = self.command(&format!("HELO {name}\r\n")).await?;
        if reply.code == 250 {
            return Ok(Capabilities::default());
        }
        Err(Reply {
            // As for the banner: the next MX may be friendlier.
            code: 451,
            ..reply
        }
        .into())
    }

    async fn starttls(&mut self, server_name: &str) -> Result<(), SessionError> {
        // Anything the server sent after its 220 was not protected: drop it (RFC 3207 §6).
        self.buf.clear();
        let tls_failure = |reply: Reply| SessionError::Failed {
            reply,
            retry_plain: true,
        };
        let connector = tls::connector()
            .map_err(|e| tls_failure(Reply::local(451, [4, 7, 0], format!("TLS setup: {e}"))))?;
        let name = tls::server_name(server_name, self.peer);
        let io = std::mem::replace(&mut self.io, Box::new(tokio::io::empty()));
        match tokio::time::timeout(self.timeout, connector.connect(name, io)).await {
            Ok(Ok(stream)) => {
                self.io = Box::new(stream);
                Ok(())
            }
            Ok(Err(e)) => Err(tls_failure(
                self.network_error(&format!("TLS handshake failed: {e}")),
            )),
            Err(_) => Err(tls_failure(self.network_error("TLS handshake timed out"))),
        }
    }
}

mod tls {
    //! Opportunistic TLS (Postfix `smtp_tls_security_level = may`): encrypt whenever the
    //! server offers it, but accept any certificate, because MX hosts rarely have one
    //! that verifies and refusing would only make us send in clear text instead.

    use std::net::SocketAddr;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct AcceptAny(Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        // The handshake signatures are still checked: they are what binds the session to
        // the key in the (unverified) certificate.
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    pub(super) fn connector() -> Result<tokio_rustls::TlsConnector, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }

    /// SNI name: the MX host name when it is one, else the address.
    pub(super) fn server_name(name: &str, peer: SocketAddr) -> ServerName<'static> {
        ServerName::try_from(name.trim_end_matches('.').to_string())
            .unwrap_or_else(|_| ServerName::IpAddress(peer.ip().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-connection server that answers each command line with the next reply from
    /// `replies` (after its banner) and closes when they run out; it swallows DATA.
    async fn scripted(replies: Vec<&'static str>) -> SocketAddr {
        use tokio::io::AsyncBufReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut io = tokio::io::BufReader::new(stream);
            io.write_all(b"220 test\r\n").await.unwrap();
            let mut in_data = false;
            for reply in replies {
                loop {
                    let mut line = String::new();
                    if io.read_line(&mut line).await.unwrap() == 0 {
                        return;
                    }
                    if !in_data || line == ".\r\n" {
                        in_data = reply.starts_with("354");
                        break;
                    }
                }
                io.write_all(format!("{reply}\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        addr
    }

    fn params(require_tls: bool) -> ClientParams {
        ClientParams {
            helo_name: "host1.example.test".into(),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            require_tls,
        }
    }

    #[tokio::test]
    async fn a_connection_lost_during_rcpt_leaves_accepted_recipients_temporary() {
        let addr = scripted(vec!["250 hi", "250 ok", "250 a ok", "550 5.1.1 b unknown"]).await;
        let rcpts = ["a@x".to_string(), "b@x".to_string(), "c@x".to_string()];
        let env = Envelope {
            sender: "s@y",
            recipients: &rcpts,
            data: b"x\n",
        };
        let replies = send(addr, "mx", &params(false), &env).await.unwrap();
        let outcomes: Vec<_> = replies.iter().map(Reply::outcome).collect();
        assert_eq!(
            outcomes,
            [Outcome::Temporary, Outcome::Permanent, Outcome::Temporary],
            "{replies:?}"
        );
    }

    #[tokio::test]
    async fn utf8_recipients_fail_alone_when_smtputf8_is_missing() {
        let addr = scripted(vec![
            "250 hi",
            "250 ok",
            "250 ok",
            "354 go",
            "250 queued",
            "221 bye",
        ])
        .await;
        let rcpts = ["jörg@x".to_string(), "b@x".to_string()];
        let env = Envelope {
            sender: "s@y",
            recipients: &rcpts,
            data: b"x\n",
        };
        let replies = send(addr, "mx", &params(false), &env).await.unwrap();
        assert_eq!(replies[0].status_code(), "5.6.7");
        assert_eq!(replies[1].outcome(), Outcome::Delivered, "{replies:?}");
    }

    #[tokio::test]
    async fn required_tls_not_offered_is_a_temporary_failure() {
        let addr = scripted(vec!["250 hi"]).await;
        let rcpts = ["b@x".to_string()];
        let env = Envelope {
            sender: "s@y",
            recipients: &rcpts,
            data: b"x\n",
        };
        let err = send(addr, "mx", &params(true), &env).await.unwrap_err();
        assert_eq!(err.outcome(), Outcome::Temporary);
        assert_eq!(err.status_code(), "4.7.5");
    }

    #[test]
    fn ehlo_keywords() {
        let caps = Capabilities::parse(
            "mx.example\nPIPELINING\nsize 1000\nSTARTTLS\n8BITMIME\nSMTPUTF8\nAUTH PLAIN",
        );
        assert_eq!(
            caps,
            Capabilities {
                starttls: true,
                eightbitmime: true,
                smtputf8: true,
                size: Some(1000)
            }
        );
        assert_eq!(Capabilities::parse("mx STARTTLS"), Capabilities::default());
        assert_eq!(Capabilities::parse("mx\nSIZE").size, Some(0));
    }

    #[test]
    fn reply_classes_and_status() {
        let r = |code, status| Reply {
            code,
            status,
            text: "x".into(),
            remote: true,
        };
        assert_eq!(r(250, [2, 0, 0]).outcome(), Outcome::Delivered);
        assert_eq!(r(451, [4, 3, 0]).outcome(), Outcome::Temporary);
        assert_eq!(r(550, [5, 1, 1]).outcome(), Outcome::Permanent);
        assert_eq!(r(550, [5, 1, 1]).status_code(), "5.1.1");
        // Missing or inconsistent enhanced codes fall back to the class.
        assert_eq!(r(550, [0, 0, 0]).status_code(), "5.0.0");
        assert_eq!(r(451, [5, 1, 1]).status_code(), "4.0.0");
        assert_eq!(r(550, [5, 1, 1]).to_string(), "550 5.1.1 x");
        assert!(needs_8bit("é".as_bytes()) && !needs_8bit(b"plain"));
    }
}
