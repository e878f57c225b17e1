//! A client connection: the socket (plain or TLS, upgradable in place for STARTTLS/STLS)
//! with a read buffer for line framing and a write buffer, so pipelined commands are
//! answered in one write (RFC 2920) and nothing is read past what a command owns.
//! Shared by every protocol server.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The transport under a connection.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Why no line came.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("line longer than {0} bytes")]
    TooLong(usize),
    #[error("timeout")]
    Timeout,
    #[error("connection closed")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Buffered framing over a [`Stream`].
#[derive(Debug)]
pub struct Connection {
    stream: Option<Stream>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

impl Connection {
    pub fn new(stream: Stream) -> Connection {
        Connection {
            stream: Some(stream),
            rbuf: Vec::new(),
            wbuf: Vec::new(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Some(Stream::Tls(_)))
    }

    fn stream(&mut self) -> io::Result<&mut Stream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "TLS handshake failed"))
    }

    /// Queue bytes for the next [`flush`](Self::flush).
    pub fn queue(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.wbuf);
        let stream = self.stream()?;
        stream.write_all(&buf).await?;
        stream.flush().await?;
        self.wbuf = buf;
        self.wbuf.clear();
        if self.wbuf.capacity() > 16 * 1024 {
            self.wbuf = Vec::new();
        }
        Ok(())
    }

    /// A complete line is already buffered (so replies can wait: pipelining).
    pub fn has_line(&self) -> bool {
        memchr::memchr(b'\n', &self.rbuf).is_some()
    }

    /// The next line without its CRLF (or bare LF). A line longer than `max` is read to
    /// its end and thrown away, and reported as [`ReadError::TooLong`].
    pub async fn read_line(&mut self, max: usize, timeout: Duration) -> Result<Vec<u8>, ReadError> {
        let mut scanned = 0;
        let mut too_long = false;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.rbuf[scanned..]) {
                let end = scanned + i;
                let mut line: Vec<u8> = self.rbuf.drain(..=end).collect();
                if too_long {
                    return Err(ReadError::TooLong(max));
                }
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > max {
                    return Err(ReadError::TooLong(max));
                }
                return Ok(line);
            }
            if self.rbuf.len() > max {
                // Keep memory bounded: drop what we have, remember to refuse the line.
                too_long = true;
                self.rbuf.clear();
            }
            scanned = self.rbuf.len();
            self.fill(timeout).await?;
        }
    }

    /// Read more bytes into the buffer.
    async fn fill(&mut self, timeout: Duration) -> Result<usize, ReadError> {
        let mut rbuf = std::mem::take(&mut self.rbuf);
        rbuf.reserve(4096);
        let result = match self.stream() {
            Ok(stream) => tokio::time::timeout(timeout, stream.read_buf(&mut rbuf)).await,
            Err(e) => Ok(Err(e)),
        };
        self.rbuf = rbuf;
        match result {
            Err(_) => Err(ReadError::Timeout),
            Ok(Ok(0)) => Err(ReadError::Closed),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(ReadError::Io(e)),
        }
    }

    /// Give buffered bytes to `consume`, which returns how many it used; read more while
    /// it wants more (`None`). Used for DATA, where the decoder finds the end itself.
    pub async fn read_with<F>(&mut self, timeout: Duration, mut consume: F) -> Result<(), ReadError>
    where
        F: FnMut(&[u8]) -> Option<usize>,
    {
        loop {
            if !self.rbuf.is_empty() {
                match consume(&self.rbuf) {
                    Some(used) => {
                        self.rbuf.drain(..used);
                        self.shrink();
                        return Ok(());
                    }
                    None => self.rbuf.clear(),
                }
            }
            if self.rbuf.capacity() < 64 * 1024 {
                self.rbuf.reserve(64 * 1024);
            }
            self.fill(timeout).await?;
        }
    }

    /// Idle connections should not keep a large buffer.
    fn shrink(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 8 * 1024 {
            self.rbuf = Vec::new();
        }
    }

    /// Drop unread input: after STARTTLS, plaintext sent before the handshake must never
    /// be taken as a command inside TLS (CVE-2011-0411 style injection).
    pub fn discard_input(&mut self) -> usize {
        let n = self.rbuf.len();
        self.rbuf = Vec::new();
        n
    }

    /// Run the server side of a TLS handshake on this connection.
    pub async fn upgrade(&mut self, acceptor: &TlsAcceptor, timeout: Duration) -> io::Result<()> {
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Err(io::Error::other("TLS already active"));
        };
        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                self.stream = Some(Stream::Tls(Box::new(tls)));
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timeout",
            )),
        }
    }

    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        if let Ok(s) = self.stream() {
            let _ = s.shutdown().await;
        }
    }
}

impl Connection {
    /// Whatever bytes are available (buffered first, else one read), for protocols that
    /// frame their input themselves (IMAP literals).
    pub async fn read_chunk(&mut self, timeout: Duration) -> Result<Vec<u8>, ReadError> {
        if self.rbuf.is_empty() {
            self.fill(timeout).await?;
        }
        let chunk = std::mem::take(&mut self.rbuf);
        Ok(chunk)
    }
}

/// How long a client may take for the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

impl Connection {
    /// A new connection on an accepted socket; on an implicit-TLS port (`tls` given) the
    /// handshake is done first. `None` if it fails (logged at debug).
    pub async fn open(
        socket: TcpStream,
        peer: std::net::SocketAddr,
        tls: Option<&TlsAcceptor>,
    ) -> Option<Connection> {
        let mut conn = Connection::new(Stream::Plain(socket));
        if let Some(acceptor) = tls {
            if let Err(e) = conn.upgrade(acceptor, TLS_HANDSHAKE_TIMEOUT).await {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return None;
            }
        }
        Some(conn)
    }
}
