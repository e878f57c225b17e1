//! The YP client over UDP: which server to ask, resends, failover, and the portmapper
//! lookup of each server's ypserv port.
//!
//! There is no ypbind: the configured servers are asked directly, the one that answered
//! last first (sticky, so a dead first server does not cost a timeout on every lookup),
//! then the others in config order. Each server gets `attempts` sends of `timeout_ms`
//! each. ypserv's port comes from the portmapper (UDP 111) and is cached per server; the
//! cache entry is dropped as soon as that server stops answering, since a restarted
//! ypserv usually registers a new port.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::xdr::{self, RpcError, YpRespVal, YpStat};
use crate::auth::AuthError;

/// Big enough for any reply we accept (a 1024-byte value plus headers); a longer
/// datagram is truncated by the kernel and then fails to decode.
const RECV_BUF: usize = 2048;

/// Why one server did not give a usable answer.
#[derive(Debug)]
enum Failure {
    /// Nothing came back (timeouts, ICMP unreachable): the port cache is stale.
    Silent(String),
    /// It answered, but not usefully (RPC error, domain not served).
    Refused(String),
}

#[derive(Debug)]
pub struct YpClient {
    domain: String,
    servers: Vec<IpAddr>,
    timeout: Duration,
    attempts: u32,
    /// Index into `servers` of the server that answered last.
    sticky: AtomicUsize,
    /// ypserv's UDP port per server, from the portmapper.
    ports: Mutex<HashMap<IpAddr, u16>>,
    xid: AtomicU32,
    /// The portmapper's port (111; tests point it elsewhere).
    pub(super) pmap_port: u16,
}

impl YpClient {
    pub fn new(domain: String, servers: Vec<IpAddr>, timeout: Duration, attempts: u32) -> Self {
        YpClient {
            domain,
            servers,
            timeout,
            attempts: attempts.max(1),
            sticky: AtomicUsize::new(0),
            ports: Mutex::new(HashMap::new()),
            // Random start so a restarted agent does not reuse the xids of its last run.
            xid: AtomicU32::new(fastrand::u32(..)),
            pmap_port: xdr::PMAP_PORT,
        }
    }

    /// `YPPROC_MATCH`; the answer of the first server that gives one.
    pub async fn ypmatch(&self, map: &str, key: &[u8]) -> Result<YpRespVal, AuthError> {
        // Encode once up front: a name over the protocol limits is a config problem,
        // not a server one.
        xdr::encode_match(0, &self.domain, map, key).map_err(|e| unavailable(&e))?;
        self.call(
            |xid| xdr::encode_match(xid, &self.domain, map, key).unwrap_or_default(),
            |xid, d| {
                let r = xdr::decode_match_reply(xid, d)?;
                // A server that does not serve the domain is misconfigured: another
                // may, so it counts as a failed server rather than an answer.
                if r.stat == YpStat::NoDom {
                    return Ok(Err(format!("domain {:?} not served", self.domain)));
                }
                Ok(Ok(r))
            },
        )
        .await
    }

    /// `YPPROC_DOMAIN`: Ok once a server says it serves the domain.
    pub async fn check_domain(&self) -> Result<(), AuthError> {
        xdr::encode_domain(0, &self.domain).map_err(|e| unavailable(&e))?;
        self.call(
            |xid| xdr::encode_domain(xid, &self.domain).unwrap_or_default(),
            |xid, d| {
                Ok(match xdr::decode_domain_reply(xid, d)? {
                    true => Ok(()),
                    false => Err(format!("domain {:?} not served", self.domain)),
                })
            },
        )
        .await
    }

    fn next_xid(&self) -> u32 {
        self.xid.fetch_add(1, Ordering::Relaxed)
    }

    /// Ask the servers in turn, sticky one first. `decode` gives `Ok(Err(why))` for an
    /// answer that should make us try the next server.
    async fn call<T>(
        &self,
        encode: impl Fn(u32) -> Vec<u8>,
        decode: impl Fn(u32, &[u8]) -> Result<Result<T, String>, RpcError>,
    ) -> Result<T, AuthError> {
        let n = self.servers.len();
        let first = self.sticky.load(Ordering::Relaxed) % n.max(1);
        let mut failures = Vec::new();
        for i in (0..n).map(|i| (first + i) % n) {
            let server = self.servers[i];
            match self.call_server(server, &encode, &decode).await {
                Ok(v) => {
                    self.sticky.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(f) => {
                    let why = match f {
                        Failure::Silent(why) => {
                            self.forget_port(server);
                            why
                        }
                        Failure::Refused(why) => why,
                    };
                    tracing::warn!(%server, "nis server failed: {why}");
                    failures.push(format!("{server}: {why}"));
                }
            }
        }
        Err(AuthError::Unavailable(format!(
            "nis: no server answered for domain {:?} ({})",
            self.domain,
            failures.join("; ")
        )))
    }

    async fn call_server<T>(
        &self,
        server: IpAddr,
        encode: &impl Fn(u32) -> Vec<u8>,
        decode: &impl Fn(u32, &[u8]) -> Result<Result<T, String>, RpcError>,
    ) -> Result<T, Failure> {
        let port = self.ypserv_port(server).await?;
        let addr = SocketAddr::new(server, port);
        let xid = self.next_xid();
        match self.exchange(addr, &encode(xid), xid, decode).await? {
            Ok(v) => Ok(v),
            Err(why) => Err(Failure::Refused(why)),
        }
    }

    /// ypserv's UDP port on `server`, cached.
    async fn ypserv_port(&self, server: IpAddr) -> Result<u16, Failure> {
        if let Some(p) = self.ports_lock().get(&server) {
            return Ok(*p);
        }
        let addr = SocketAddr::new(server, self.pmap_port);
        let xid = self.next_xid();
        let call = xdr::encode_getport(xid, xdr::YP_PROG, xdr::YP_VERS);
        let port = self
            .exchange(addr, &call, xid, &|x, d| {
                xdr::decode_getport_reply(x, d).map(Ok)
            })
            .await
            .map_err(|f| match f {
                Failure::Silent(why) => Failure::Silent(format!("portmapper: {why}")),
                Failure::Refused(why) => Failure::Refused(format!("portmapper: {why}")),
            })??;
        if port == 0 {
            return Err(Failure::Refused(
                "ypserv not registered with the portmapper".into(),
            ));
        }
        self.ports_lock().insert(server, port);
        Ok(port)
    }

    fn forget_port(&self, server: IpAddr) {
        self.ports_lock().remove(&server);
    }

    fn ports_lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u16>> {
        self.ports.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send `call` to `addr` up to `attempts` times, waiting `timeout` for the reply to
    /// `xid` each time; other datagrams (late replies to earlier calls) are ignored.
    /// Resends keep the xid, so a slow reply to the first send still counts.
    async fn exchange<T>(
        &self,
        addr: SocketAddr,
        call: &[u8],
        xid: u32,
        decode: &impl Fn(u32, &[u8]) -> Result<T, RpcError>,
    ) -> Result<T, Failure> {
        let silent = |e: io::Error| Failure::Silent(e.to_string());
        let local: SocketAddr = match addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let sock = UdpSocket::bind(local).await.map_err(silent)?;
        // Connected: the kernel drops datagrams from anyone else, and an ICMP port
        // unreachable (ypserv gone) surfaces as an error instead of a timeout.
        sock.connect(addr).await.map_err(silent)?;
        let mut buf = vec![0u8; RECV_BUF];
        for _ in 0..self.attempts {
            sock.send(call).await.map_err(silent)?;
            let deadline = Instant::now() + self.timeout;
            loop {
                let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                    Err(_) => break,
                    Ok(r) => r.map_err(silent)?,
                };
                let reply = buf.get(..n).unwrap_or_default();
                if xdr::reply_xid(reply) != Some(xid) {
                    continue;
                }
                return decode(xid, reply).map_err(|e| Failure::Refused(e.to_string()));
            }
        }
        Err(Failure::Silent(format!(
            "no reply from {addr} after {} attempts of {} ms",
            self.attempts,
            self.timeout.as_millis()
        )))
    }
}

fn unavailable(e: &RpcError) -> AuthError {
    AuthError::Unavailable(format!("nis: {e}"))
}

/// A fake portmapper + ypserv for unit tests.
#[cfg(test)]
pub(super) mod fake {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    /// `(map, key)` → `(ypstat, value)`; keys not in it answer `YP_NOKEY`.
    pub type Table = HashMap<(String, Vec<u8>), (i32, Vec<u8>)>;

    /// Both programs on one UDP socket at `ip`. Answers only every `answer_every`th
    /// datagram, each time after a stray reply with another xid. Returns the address
    /// and the count of datagrams received.
    pub async fn server(
        ip: &str,
        answer_every: usize,
        table: Table,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        let sock = UdpSocket::bind((ip, 0)).await.unwrap();
        let addr = sock.local_addr().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let (n, peer) = sock.recv_from(&mut buf).await.unwrap();
                let k = count.fetch_add(1, Ordering::SeqCst) + 1;
                if !k.is_multiple_of(answer_every) {
                    continue;
                }
                let mut d = xdr::Decoder::new(&buf[..n]);
                let xid = d.u32().unwrap();
                let header: Vec<u32> = (0..9).map(|_| d.u32().unwrap()).collect();
                let (prog, proc_) = (header[2], header[4]);
                let mut e = xdr::Encoder::new();
                e.u32(xid).u32(1).u32(0).u32(0).u32(0).u32(0);
                match (prog, proc_) {
                    (xdr::PMAP_PROG, _) => {
                        e.u32(addr.port().into());
                    }
                    (xdr::YP_PROG, xdr::YPPROC_DOMAIN) => {
                        e.u32(1);
                    }
                    _ => {
                        let _dom = d.opaque("d", 64).unwrap();
                        let map = d.opaque("m", 64).unwrap();
                        let key = d.opaque("k", 1024).unwrap();
                        let map = String::from_utf8_lossy(map).into_owned();
                        let (stat, val) = table
                            .get(&(map, key.to_vec()))
                            .cloned()
                            .unwrap_or((-3, Vec::new()));
                        e.u32(stat as u32);
                        e.opaque("v", &val, 1024).unwrap();
                    }
                }
                let mut stray = xdr::Encoder::new();
                stray.u32(xid.wrapping_add(1000)).u32(1);
                sock.send_to(&stray.finish(), peer).await.unwrap();
                sock.send_to(&e.finish(), peer).await.unwrap();
            }
        });
        (addr, seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(key: &str) -> fake::Table {
        [(
            ("map".to_string(), key.as_bytes().to_vec()),
            (1, format!("{key}-value").into_bytes()),
        )]
        .into()
    }

    #[tokio::test]
    async fn fails_over_and_sticks() {
        let (addr, seen) = fake::server("127.0.0.2", 1, table("bob")).await;
        let dead = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut c = YpClient::new(
            "dom".into(),
            vec![dead, addr.ip()],
            Duration::from_millis(200),
            2,
        );
        // Both portmappers are "on" the fake's port: the dead server's is a closed port.
        c.pmap_port = addr.port();
        let start = std::time::Instant::now();
        let r = c.ypmatch("map", b"bob").await.unwrap();
        assert_eq!(r.val, b"bob-value");
        // The closed port answered with ICMP unreachable: no waiting for timeouts.
        assert!(
            start.elapsed() < Duration::from_millis(200),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(c.sticky.load(Ordering::SeqCst), 1);
        // Portmapper, then ypserv.
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        assert_eq!(c.ports_lock().get(&addr.ip()), Some(&addr.port()));
        assert!(!c.ports_lock().contains_key(&dead));
        // Sticky, with the port cached: one datagram.
        c.check_domain().await.unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn answers_after_a_resend_and_ignores_stray_replies() {
        let (addr, seen) = fake::server("127.0.0.1", 2, table("alice")).await;
        let c = YpClient::new("dom".into(), vec![addr.ip()], Duration::from_millis(300), 3);
        c.ports_lock().insert(addr.ip(), addr.port());
        let r = c.ypmatch("map", b"alice").await.unwrap();
        assert_eq!(r.stat, YpStat::True);
        assert_eq!(r.val, b"alice-value");
        // The first send was ignored, the resend answered.
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        c.check_domain().await.unwrap();
    }

    #[tokio::test]
    async fn silence_is_unavailable_and_names_the_servers() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let c = YpClient::new("dom".into(), vec![addr.ip()], Duration::from_millis(50), 2);
        c.ports_lock().insert(addr.ip(), addr.port());
        let start = std::time::Instant::now();
        let err = c.ypmatch("map", b"k").await.unwrap_err().to_string();
        assert!(err.contains("127.0.0.1"), "{err}");
        assert!(start.elapsed() >= Duration::from_millis(100));
        // The server stopped answering: its port is looked up again next time.
        assert!(c.ports_lock().is_empty());
        drop(sock);
    }

    #[tokio::test]
    async fn oversized_names_fail_without_sending() {
        let c = YpClient::new("d".repeat(65), vec![], Duration::from_millis(10), 1);
        assert!(c.check_domain().await.is_err());
        let c = YpClient::new("d".into(), vec![], Duration::from_millis(10), 1);
        assert!(c.ypmatch("m", &[0; 1025]).await.is_err());
        let err = c.ypmatch("m", b"k").await.unwrap_err().to_string();
        assert!(err.contains("no server"), "{err}");
    }
}
