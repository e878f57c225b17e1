//! Where a domain's mail goes: the MX hosts in preference order (equal preferences
//! shuffled, RFC 5321 §5.1), each with its addresses; the domain itself when it has no MX
//! (implicit MX); nowhere for a null MX (RFC 7505) or a domain that does not exist. A
//! configured smarthost replaces all of this.
//!
//! Lookups go to `relay.resolver` when set (a lab's DNS), else to the system's
//! resolv.conf. Failures come back as [`Reply`]s with the status a DSN needs, so the
//! runner treats "no such domain" like a 5xx from a server.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::Resolver;

use hamail_storage::cluster::Relay;

use super::client::Reply;

/// One server to try: its name (for SNI and logs) and its addresses with the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub addrs: Vec<SocketAddr>,
}

/// Why a resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MxError {
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(#[from] NetError),
}

/// The MX resolver of the relay.
#[derive(Clone)]
pub struct MxResolver {
    resolver: Resolver<TokioRuntimeProvider>,
    port: u16,
    smarthost: Option<(String, u16)>,
}

impl std::fmt::Debug for MxResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MxResolver")
            .field("port", &self.port)
            .field("smarthost", &self.smarthost)
            .finish_non_exhaustive()
    }
}

impl MxResolver {
    /// A resolver for `[relay]`: its `resolver` address (UDP and TCP) or resolv.conf.
    pub fn new(relay: &Relay) -> Result<MxResolver, MxError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = match relay.resolver {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    provider,
                )
            }
            None => Resolver::builder(provider)?,
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        Ok(MxResolver {
            resolver: builder.build()?,
            port: relay.port,
            smarthost: relay
                .smarthost
                .as_deref()
                .map(|s| parse_smarthost(s, relay.port)),
        })
    }

    /// The servers for `domain`, in the order to try them. `Err` is the reply every
    /// recipient in the domain gets (permanent for NXDOMAIN and null MX).
    pub async fn route(&self, domain: &str) -> Result<Vec<Target>, Reply> {
        if let Some((host, port)) = &self.smarthost {
            let addrs = self.addresses(host, *port).await.map_err(|e| {
                // A broken smarthost is our problem, never the sender's: keep the mail.
                Reply::local(451, [4, 4, 3], format!("smarthost {host}: {}", e.text))
            })?;
            return Ok(vec![Target {
                name: host.clone(),
                addrs,
            }]);
        }
        let fqdn = absolute(domain);
        let hosts = match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut records = Vec::new();
                for record in lookup.answers() {
                    if let RData::MX(mx) = &record.data {
                        let host = if mx.exchange.is_root() {
                            ".".to_string()
                        } else {
                            mx.exchange.to_ascii()
                        };
                        records.push((mx.preference, host));
                    }
                }
                if records.is_empty() {
                    // Only CNAMEs or other types answered: as good as no MX.
                    vec![domain.to_string()]
                } else {
                    if records.iter().any(|(_, host)| host == ".") {
                        return Err(Reply::local(
                            556,
                            [5, 1, 10],
                            format!("{domain} does not accept mail (null MX)"),
                        ));
                    }
                    order_mx(records)
                }
            }
            Err(e) if e.is_nx_domain() => {
                return Err(Reply::local(
                    550,
                    [5, 1, 2],
                    format!("domain {domain} does not exist"),
                ));
            }
            // The domain exists but has no MX: it is its own MX (RFC 5321 §5.1).
            Err(e) if e.is_no_records_found() => vec![domain.to_string()],
            Err(e) => {
                return Err(Reply::local(
                    451,
                    [4, 4, 3],
                    format!("MX lookup for {domain} failed: {e}"),
                ));
            }
        };
        let mut targets = Vec::new();
        let mut last = None;
        for host in hosts {
            match self.addresses(&host, self.port).await {
                Ok(addrs) => targets.push(Target { name: host, addrs }),
                Err(e) => {
                    tracing::debug!(domain, host, error = %e.text, "MX host has no usable address");
                    // A temporary lookup failure outweighs "no address" elsewhere: the
                    // mail must not bounce while a host might still resolve.
                    if last.as_ref().is_none_or(|l: &Reply| l.code >= 500) {
                        last = Some(e);
                    }
                }
            }
        }
        match (targets.is_empty(), last) {
            (false, _) => Ok(targets),
            (true, Some(e)) => Err(e),
            (true, None) => Err(Reply::local(
                451,
                [4, 4, 4],
                format!("no route to {domain}"),
            )),
        }
    }

    /// A host's addresses; permanent when it has none (5.4.4), temporary on DNS trouble.
    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Reply> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        match self.resolver.lookup_ip(absolute(host).as_str()).await {
            Ok(ips) => {
                let addrs: Vec<SocketAddr> =
                    ips.iter().map(|ip| SocketAddr::new(ip, port)).collect();
                if addrs.is_empty() {
                    Err(no_address(host))
                } else {
                    Ok(addrs)
                }
            }
            Err(e) if e.is_no_records_found() => Err(no_address(host)),
            Err(e) => Err(Reply::local(
                451,
                [4, 4, 3],
                format!("address lookup for {host} failed: {e}"),
            )),
        }
    }
}

fn no_address(host: &str) -> Reply {
    Reply::local(550, [5, 4, 4], format!("{host} has no address"))
}

/// A fully qualified query name, so no search domain from resolv.conf is appended.
fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// Exchangers by preference, shuffled among equal preferences; names without the root
/// dot; duplicates dropped.
pub fn order_mx(mut records: Vec<(u16, String)>) -> Vec<String> {
    fastrand::shuffle(&mut records);
    // A stable sort keeps the shuffled order within each preference.
    records.sort_by_key(|(pref, _)| *pref);
    let mut out: Vec<String> = Vec::with_capacity(records.len());
    for (_, host) in records {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if !out.contains(&host) {
            out.push(host);
        }
    }
    out
}

/// `"host"`, `"host:port"`, `"[v6]"`, `"[v6]:port"` or a bare IPv6 address.
pub fn parse_smarthost(s: &str, default_port: u16) -> (String, u16) {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            let port = tail
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(default_port);
            return (host.to_string(), port);
        }
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host.to_string(), port),
            Err(_) => (s.to_string(), default_port),
        },
        _ => (s.to_string(), default_port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mx_order_by_preference_with_equal_ones_shuffled() {
        let records = vec![
            (20, "c.example.".to_string()),
            (10, "a.example.".to_string()),
            (10, "b.example.".to_string()),
            (30, "A.example.".to_string()),
        ];
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..200 {
            let order = order_mx(records.clone());
            assert_eq!(order.len(), 3, "{order:?}");
            assert_eq!(order[2], "c.example");
            seen_first.insert(order[0].clone());
        }
        assert_eq!(seen_first.len(), 2, "equal preferences are shuffled");
    }

    #[test]
    fn smarthost_forms() {
        assert_eq!(
            parse_smarthost("relay.example", 25),
            ("relay.example".into(), 25)
        );
        assert_eq!(
            parse_smarthost("relay.example:587", 25),
            ("relay.example".into(), 587)
        );
        assert_eq!(parse_smarthost("[::1]:2525", 25), ("::1".into(), 2525));
        assert_eq!(parse_smarthost("::1", 25), ("::1".into(), 25));
        assert_eq!(parse_smarthost("10.0.0.1", 26), ("10.0.0.1".into(), 26));
    }
}
