//! The cluster description, `hamail.toml`: one file, the same on every host, read by the
//! agent, dnsctl and the lab. This module is its only parser (design: "never two
//! hand-written parsers of one file").
//!
//! Unknown keys are errors (with the line, from the TOML parser), and [`ClusterConfig::load`]
//! checks the whole file for consistency and reports every problem at once, so an operator
//! fixes a broken config in one round. Durations are whole seconds in keys ending `_secs`.
//! Tests put configs together with [`ClusterConfig::builder`]; complete examples are in
//! `examples/config/` at the repository root (each parsed by this module's tests).
//!
//! ```toml
//! [cluster]
//! domains = ["example.test"]
//! spool = "/srv/mail"
//!
//! [[host]]
//! name = "host1"
//! address = "10.0.0.11"
//! mx_priority = 10
//!
//! [auth]
//! backend = "file"
//! passwd_file = "/etc/hamail/passwd"
//! ```

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::lock::LockOptions;

mod builder;
pub use builder::ConfigBuilder;

#[cfg(test)]
mod example_files;

/// Why a cluster config could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax error, wrong type or unknown key; the message names the line.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// Parsed, but inconsistent; one line per problem.
    #[error("{path}: invalid configuration:\n  - {}", problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("no host named {name:?} in the config (hosts: {})", known.join(", "))]
    UnknownHost { name: String, known: Vec<String> },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub cluster: Cluster,
    #[serde(rename = "host")]
    pub hosts: Vec<HostConfig>,
    pub auth: AuthConfig,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub listeners: Listeners,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub locking: Locking,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub health: Health,
    #[serde(default)]
    pub relay: Relay,
    /// dnsctl; absent: no bundled DNS (the zone is managed elsewhere).
    #[serde(default)]
    pub dns: Option<DnsConfig>,
}

/// What the cluster serves and where its spool is.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Mail domains served; the first is the primary one (`mail.<domain>`, MX owner).
    pub domains: Vec<String>,
    /// The shared spool: the NFS mount, the same path on every host.
    pub spool: PathBuf,
}

/// One mail host.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub name: String,
    /// The address its listeners bind to and DNS publishes.
    pub address: IpAddr,
    /// MX preference while healthy (lower is preferred).
    pub mx_priority: u16,
    /// Name in SMTP banners and `Received:` headers; default `<name>.<first domain>`.
    #[serde(default)]
    pub fqdn: Option<String>,
}

/// Where accounts come from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub backend: AuthBackend,
    /// `file` backend: Dovecot passwd-file format.
    #[serde(default)]
    pub passwd_file: Option<PathBuf>,
    /// Aliases in `/etc/aliases` syntax (any backend).
    #[serde(default)]
    pub aliases_file: Option<PathBuf>,
    /// `ldap` backend settings.
    #[serde(default)]
    pub ldap: Option<LdapConfig>,
    /// `nis` backend settings.
    #[serde(default)]
    pub nis: Option<NisConfig>,
}

/// `[auth.ldap]`: search the user with the service account, then bind as the found DN.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://` or `ldaps://` URLs, tried in order; a server that fails is skipped for
    /// a while unless all have failed.
    pub urls: Vec<String>,
    /// Upgrade `ldap://` connections with StartTLS (required unless the lab allows
    /// plaintext; `ldaps://` is TLS from the start).
    #[serde(default)]
    pub starttls: bool,
    /// PEM CA certificates for `ldaps://` and StartTLS; default: the system's CA store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Service account for searches; anonymous searches if absent.
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// Its password, inline (prefer `bind_password_file`, which can be mode 0600).
    #[serde(default)]
    pub bind_password: Option<String>,
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// Subtree searched for users.
    pub base_dn: String,
    /// `%u` is the login as typed, `%n` its local part, `%d` its domain; every value is
    /// escaped (RFC 4515) before it goes into the filter.
    #[serde(default = "default_ldap_user_filter")]
    pub user_filter: String,
    /// Attribute holding the spool user name.
    #[serde(default = "default_ldap_user_attr")]
    pub user_attr: String,
    /// Attributes holding the addresses a user receives mail for (RCPT validation).
    #[serde(default = "default_ldap_mail_attrs")]
    pub mail_attrs: Vec<String>,
    /// Read `userPassword` with the service account and verify the hash locally instead
    /// of binding as the user (needs read access to `userPassword`; off by default).
    #[serde(default)]
    pub compare_hashes: bool,
    #[serde(default = "default_ldap_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Per LDAP operation.
    #[serde(default = "default_ldap_timeout")]
    pub timeout_secs: u64,
    /// Idle connections kept per agent.
    #[serde(default = "default_ldap_pool_size")]
    pub pool_size: usize,
    /// How long positive lookups (user found, address found, login accepted) are
    /// reused; 0 disables the cache. Passwords are kept only as a salted hash.
    #[serde(default = "default_ldap_cache")]
    pub cache_secs: u64,
}

fn default_ldap_user_filter() -> String {
    "(&(objectClass=posixAccount)(|(uid=%u)(mail=%u)))".to_string()
}
fn default_ldap_user_attr() -> String {
    "uid".to_string()
}
fn default_ldap_mail_attrs() -> Vec<String> {
    vec!["mail".to_string(), "mailAlternateAddress".to_string()]
}
fn default_ldap_connect_timeout() -> u64 {
    2
}
fn default_ldap_timeout() -> u64 {
    5
}
fn default_ldap_pool_size() -> usize {
    4
}
fn default_ldap_cache() -> u64 {
    60
}

/// `[auth.nis]`: YP over ONC RPC/UDP, straight to the servers (no ypbind).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NisConfig {
    /// The NIS domain name.
    pub domain: String,
    /// Server addresses, tried in order (the portmapper on port 111 of each names the
    /// ypserv port).
    pub servers: Vec<IpAddr>,
    /// Wait this long for each reply before resending.
    #[serde(default = "default_nis_timeout")]
    pub timeout_ms: u64,
    /// Sends per server before trying the next one.
    #[serde(default = "default_nis_attempts")]
    pub attempts: u32,
    #[serde(default = "default_nis_passwd_map")]
    pub passwd_map: String,
    /// Aliases map (sendmail syntax values); a missing map means no aliases.
    #[serde(default = "default_nis_aliases_map")]
    pub aliases_map: String,
}

fn default_nis_timeout() -> u64 {
    700
}
fn default_nis_attempts() -> u32 {
    3
}
fn default_nis_passwd_map() -> String {
    "passwd.byname".to_string()
}
fn default_nis_aliases_map() -> String {
    "mail.aliases".to_string()
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthBackend {
    File,
    Ldap,
    Nis,
    System,
}

/// Certificate and key for STARTTLS and the implicit-TLS ports.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Allow AUTH/LOGIN without TLS (only for labs on loopback).
    #[serde(default)]
    pub allow_plaintext_auth: bool,
}

/// Ports bound on the host's address; 0 disables a listener.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    pub smtp: u16,
    pub submission: u16,
    pub submissions: u16,
    pub imap: u16,
    pub imaps: u16,
    pub pop3: u16,
    pub pop3s: u16,
    /// `/healthz` and `/metrics`.
    pub health: u16,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            smtp: 25,
            submission: 587,
            submissions: 465,
            imap: 143,
            imaps: 993,
            pop3: 110,
            pop3s: 995,
            health: 8025,
        }
    }
}

/// Protocol limits.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_message_size: u64,
    pub max_recipients: u32,
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    /// RFC 5321 §4.5.3.2 recommends at least 5 minutes.
    pub command_timeout_secs: u64,
    /// RFC 5321 §4.5.3.2: 10 minutes for the data block.
    pub data_timeout_secs: u64,
    /// IMAP and POP3 sessions of one user across this host (mail clients open several).
    pub max_sessions_per_user: u32,
    /// RFC 3501 §5.4: at least 30 minutes of inactivity before an IMAP autologout.
    pub imap_idle_timeout_secs: u64,
    /// RFC 1939 §3: at least 10 minutes for POP3.
    pub pop3_idle_timeout_secs: u64,
    /// Failed logins (all protocols) allowed per client address (IPv6: per /64) within
    /// `login_failure_window_secs`; then logins are refused until the window slides.
    pub login_failures_per_ip: u32,
    /// Failed logins allowed per user name within the window.
    pub login_failures_per_user: u32,
    pub login_failure_window_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 50 << 20,
            max_recipients: 100,
            max_connections: 1000,
            max_connections_per_ip: 20,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            max_sessions_per_user: 50,
            imap_idle_timeout_secs: 1800,
            pop3_idle_timeout_secs: 600,
            login_failures_per_ip: 10,
            login_failures_per_user: 5,
            login_failure_window_secs: 300,
        }
    }
}

/// Spool lock settings (see [`LockOptions`]).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Locking {
    pub timeout_secs: u64,
    pub stale_after_secs: u64,
}

impl Default for Locking {
    fn default() -> Self {
        Locking {
            timeout_secs: 30,
            stale_after_secs: 300,
        }
    }
}

/// Outbound queue.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Give up (and bounce) after this long; RFC 5321 §4.5.4.1 suggests 4–5 days.
    pub lifetime_secs: u64,
    pub retry_min_secs: u64,
    pub retry_max_secs: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            lifetime_secs: 5 * 86400,
            retry_min_secs: 300,
            retry_max_secs: 4 * 3600,
        }
    }
}

/// Health probing by dnsctl, and the agent's own checks.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    pub interval_secs: u64,
    pub fail_after: u32,
    pub recover_after: u32,
    /// The spool write + fsync check must finish within this.
    pub spool_deadline_ms: u64,
    /// Where the agent serves `/healthz` and `/metrics`; default the host's address and
    /// `listeners.health`.
    pub listen: Option<std::net::SocketAddr>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            interval_secs: 1,
            fail_after: 3,
            recover_after: 3,
            spool_deadline_ms: 2000,
            listen: None,
        }
    }
}

/// Outbound delivery of relayed mail (the queue runner on every host).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Relay {
    /// DNS server for MX lookups (`"127.0.0.1:5353"`); default: the system's resolv.conf.
    pub resolver: Option<std::net::SocketAddr>,
    /// TCP port of remote mail servers (25; tests point it at a local sink).
    pub port: u16,
    /// Send everything through this host instead of looking up MX (`"host"` or
    /// `"host:port"`).
    pub smarthost: Option<String>,
    pub connect_timeout_secs: u64,
    /// Per SMTP command while sending (RFC 5321 §4.5.3.2 client timeouts are 5–10 min).
    pub command_timeout_secs: u64,
    /// How often each host scans the queue for due entries.
    pub scan_interval_secs: u64,
    /// Refuse to send without STARTTLS (default: opportunistic TLS, like most MTAs).
    pub require_tls: bool,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            resolver: None,
            port: 25,
            smarthost: None,
            connect_timeout_secs: 30,
            command_timeout_secs: 300,
            scan_interval_secs: 10,
            require_tls: false,
        }
    }
}

/// `[dns]`: dnsctl, the authoritative DNS server for the mail domains and the health
/// controller that moves MX and `mail.<domain>` away from failed hosts. Probing uses
/// `[health]` (interval, fail_after, recover_after) and each host's `listeners.smtp` and
/// `listeners.health` ports.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Where `dnsctl serve` answers, UDP and TCP (`"10.0.0.14:53"`).
    pub listen: std::net::SocketAddr,
    /// The name server's own name (NS record); default `ns.<primary domain>`.
    #[serde(default)]
    pub ns_name: Option<String>,
    /// Its address (the NS name's A/AAAA record); default the `listen` address.
    #[serde(default)]
    pub ns_address: Option<IpAddr>,
    /// SOA RNAME as a domain name; default `hostmaster.<primary domain>`.
    #[serde(default)]
    pub hostmaster: Option<String>,
    /// TTL of every record; short, so a failover reaches resolvers quickly.
    #[serde(default = "default_dns_ttl")]
    pub ttl_secs: u32,
    /// SOA minimum (negative-caching TTL, RFC 2308); default `ttl_secs`.
    #[serde(default)]
    pub soa_minimum_secs: Option<u32>,
    /// Secondary name servers: the only addresses allowed AXFR, and sent NOTIFY on
    /// every change.
    #[serde(default)]
    pub secondaries: Vec<IpAddr>,
    /// Port NOTIFY is sent to on the secondaries.
    #[serde(default = "default_notify_port")]
    pub notify_port: u16,
    /// Persistent state (serial, host states, overrides) and the event log.
    #[serde(default = "default_dns_state_dir")]
    pub state_dir: PathBuf,
    /// The control socket the CLI talks to (created mode 0600).
    #[serde(default = "default_dns_control_socket")]
    pub control_socket: PathBuf,
    /// `/metrics` (Prometheus); absent: not served.
    #[serde(default)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Each probe (SMTP banner, `/healthz`) must finish within this.
    #[serde(default = "default_probe_timeout")]
    pub probe_timeout_ms: u64,
    /// Extra static records served as they are.
    #[serde(default)]
    pub records: Vec<StaticRecord>,
    /// Drive an existing primary server with RFC 2136 updates instead of serving.
    #[serde(default)]
    pub rfc2136: Option<Rfc2136Config>,
}

/// One extra record: `{ name = "www.example.test", type = "A", value = "10.0.0.80" }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticRecord {
    /// Absolute, or relative to the primary domain (`"www"`, `"@"`).
    pub name: String,
    /// A, AAAA, CNAME, TXT, MX (`"10 mx.example.org."`), SRV, ...
    #[serde(rename = "type")]
    pub rtype: String,
    pub value: String,
    /// Default `ttl_secs`.
    #[serde(default)]
    pub ttl_secs: Option<u32>,
}

/// `[dns.rfc2136]`: TSIG-signed dynamic updates (RFC 2136, RFC 8945) to a primary.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rfc2136Config {
    /// The primary server (`"10.0.0.53:53"`).
    pub server: std::net::SocketAddr,
    /// TSIG key name, as in `tsig-keygen NAME`.
    pub key_name: String,
    /// `hmac-sha256` (default), `hmac-sha384`, `hmac-sha512`.
    #[serde(default = "default_tsig_algorithm")]
    pub algorithm: String,
    /// File holding the base64 secret, or a BIND `key { ... secret "..."; };` clause.
    pub secret_file: PathBuf,
}

fn default_dns_ttl() -> u32 {
    30
}
fn default_notify_port() -> u16 {
    53
}
fn default_dns_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/hamail/dnsctl")
}
fn default_dns_control_socket() -> PathBuf {
    PathBuf::from("/run/hamail/dnsctl.sock")
}
fn default_probe_timeout() -> u64 {
    1000
}
fn default_tsig_algorithm() -> String {
    "hmac-sha256".to_string()
}

impl ClusterConfig {
    /// Read, parse and check the file.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ClusterConfig::parse(&text, path)
    }

    /// Parse and check `text`; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<ClusterConfig, ConfigError> {
        let config: ClusterConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }

    fn dns_problems(&self, p: &mut Vec<String>) {
        let Some(d) = &self.dns else { return };
        if d.ttl_secs == 0 {
            p.push("dns.ttl_secs: must be above 0".to_string());
        }
        let interval_ms = self.health.interval_secs.saturating_mul(1000);
        if d.probe_timeout_ms == 0 || d.probe_timeout_ms > interval_ms.max(1) {
            p.push(format!(
                "dns.probe_timeout_ms: must be between 1 and health.interval_secs ({interval_ms} ms)"
            ));
        }
        for name in [&d.ns_name, &d.hostmaster].into_iter().flatten() {
            if !is_domain(name.trim_end_matches('.')) {
                p.push(format!("dns: {name:?} is not a domain name"));
            }
        }
        for r in &d.records {
            if r.name.is_empty() || r.value.is_empty() || r.rtype.is_empty() {
                p.push(format!("dns.records: {r:?} needs name, type and value"));
            }
        }
        if let Some(u) = &d.rfc2136 {
            if !["hmac-sha256", "hmac-sha384", "hmac-sha512"].contains(&u.algorithm.as_str()) {
                p.push(format!(
                    "dns.rfc2136.algorithm: {:?} is not hmac-sha256, hmac-sha384 or hmac-sha512",
                    u.algorithm
                ));
            }
        }
        if self.health.fail_after == 0 || self.health.recover_after == 0 {
            p.push("health: fail_after and recover_after must be at least 1".to_string());
        }
    }

    fn auth_problems(&self, p: &mut Vec<String>) {
        let a = &self.auth;
        if a.backend == AuthBackend::File && a.passwd_file.is_none() {
            p.push("auth: backend \"file\" needs passwd_file".to_string());
        }
        match (&a.ldap, a.backend) {
            (None, AuthBackend::Ldap) => {
                p.push("auth: backend \"ldap\" needs an [auth.ldap] section".to_string())
            }
            (Some(l), _) => {
                if l.urls.is_empty() {
                    p.push("auth.ldap.urls: at least one server URL is needed".to_string());
                }
                for u in &l.urls {
                    if !(u.starts_with("ldap://") || u.starts_with("ldaps://")) {
                        p.push(format!(
                            "auth.ldap.urls: {u:?} is not an ldap:// or ldaps:// URL"
                        ));
                    }
                }
                if l.bind_password.is_some() && l.bind_password_file.is_some() {
                    p.push(
                        "auth.ldap: set bind_password or bind_password_file, not both".to_string(),
                    );
                }
                if l.bind_dn.is_none()
                    && (l.bind_password.is_some() || l.bind_password_file.is_some())
                {
                    p.push("auth.ldap: a bind password needs bind_dn".to_string());
                }
                if !l.user_filter.starts_with('(') || !l.user_filter.ends_with(')') {
                    p.push(format!(
                        "auth.ldap.user_filter: {:?} must be a parenthesised LDAP filter",
                        l.user_filter
                    ));
                }
                if l.pool_size == 0 {
                    p.push("auth.ldap.pool_size: must be at least 1".to_string());
                }
            }
            (None, _) => {}
        }
        match (&a.nis, a.backend) {
            (None, AuthBackend::Nis) => {
                p.push("auth: backend \"nis\" needs an [auth.nis] section".to_string())
            }
            (Some(n), _) => {
                if n.servers.is_empty() {
                    p.push("auth.nis.servers: at least one server is needed".to_string());
                }
                if n.domain.is_empty() || n.domain.len() > 64 {
                    p.push("auth.nis.domain: 1 to 64 characters".to_string());
                }
                if n.attempts == 0 || n.timeout_ms == 0 {
                    p.push("auth.nis: attempts and timeout_ms must be above 0".to_string());
                }
            }
            (None, _) => {}
        }
    }

    /// Every inconsistency in the file.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.cluster.domains.is_empty() {
            p.push("cluster.domains: at least one mail domain is needed".to_string());
        }
        for d in &self.cluster.domains {
            if !is_domain(d) {
                p.push(format!(
                    "cluster.domains: {d:?} is not a valid lower-case domain name"
                ));
            }
        }
        if !self.cluster.spool.is_absolute() {
            p.push(format!(
                "cluster.spool: {} must be an absolute path (the same mount on every host)",
                self.cluster.spool.display()
            ));
        }
        if self.hosts.is_empty() {
            p.push("host: at least one [[host]] is needed".to_string());
        }
        let (mut names, mut addrs, mut prios) = (HashSet::new(), HashSet::new(), HashSet::new());
        for h in &self.hosts {
            if crate::spool::validate_user(&h.name).is_err() || h.name.contains('+') {
                p.push(format!(
                    "host {:?}: names are letters, digits, '.', '_', '-'",
                    h.name
                ));
            }
            if !names.insert(&h.name) {
                p.push(format!("host {:?}: the name is used twice", h.name));
            }
            if !addrs.insert(h.address) {
                p.push(format!(
                    "host {:?}: address {} is used twice",
                    h.name, h.address
                ));
            }
            if !prios.insert(h.mx_priority) {
                p.push(format!(
                    "host {:?}: mx_priority {} is used twice (the MX order must be clear)",
                    h.name, h.mx_priority
                ));
            }
        }
        self.auth_problems(&mut p);
        self.dns_problems(&mut p);
        let l = &self.listeners;
        if self.tls.is_none() {
            for (name, port) in [
                ("submissions", l.submissions),
                ("imaps", l.imaps),
                ("pop3s", l.pop3s),
            ] {
                if port != 0 {
                    p.push(format!(
                        "listeners.{name}: implicit TLS needs a [tls] section (or set it to 0)"
                    ));
                }
            }
        }
        let ports = [
            l.smtp,
            l.submission,
            l.submissions,
            l.imap,
            l.imaps,
            l.pop3,
            l.pop3s,
            l.health,
        ];
        let mut seen = HashSet::new();
        for port in ports.into_iter().filter(|p| *p != 0) {
            if !seen.insert(port) {
                p.push(format!("listeners: port {port} is used by two listeners"));
            }
        }
        let m = &self.limits;
        for (name, v) in [
            ("max_message_size", m.max_message_size),
            ("max_recipients", m.max_recipients as u64),
            ("max_connections", m.max_connections as u64),
            ("max_connections_per_ip", m.max_connections_per_ip as u64),
            ("command_timeout_secs", m.command_timeout_secs),
            ("data_timeout_secs", m.data_timeout_secs),
            ("max_sessions_per_user", m.max_sessions_per_user as u64),
            ("imap_idle_timeout_secs", m.imap_idle_timeout_secs),
            ("pop3_idle_timeout_secs", m.pop3_idle_timeout_secs),
        ] {
            if v == 0 {
                p.push(format!("limits.{name} must be greater than 0"));
            }
        }
        if m.max_connections_per_ip > m.max_connections {
            p.push("limits.max_connections_per_ip exceeds max_connections".to_string());
        }
        if self.locking.timeout_secs == 0
            || self.locking.stale_after_secs <= self.locking.timeout_secs
        {
            p.push(
                "locking: timeout_secs must be > 0 and stale_after_secs longer than it \
                 (a waiting lock must not look stale)"
                    .to_string(),
            );
        }
        let q = &self.queue;
        if q.retry_min_secs == 0
            || q.retry_min_secs > q.retry_max_secs
            || q.retry_max_secs > q.lifetime_secs
        {
            p.push("queue: need 0 < retry_min_secs <= retry_max_secs <= lifetime_secs".to_string());
        }
        let h = &self.health;
        if h.interval_secs == 0
            || h.fail_after == 0
            || h.recover_after == 0
            || h.spool_deadline_ms == 0
        {
            p.push("health: interval_secs, fail_after, recover_after and spool_deadline_ms must be > 0".to_string());
        }
        let r = &self.relay;
        if r.port == 0
            || r.connect_timeout_secs == 0
            || r.command_timeout_secs == 0
            || r.scan_interval_secs == 0
        {
            p.push("relay: port and the timeouts/intervals must be > 0".to_string());
        }
        for h in &self.hosts {
            if let Some(f) = &h.fqdn {
                if !is_domain(f) {
                    p.push(format!(
                        "host {:?}: fqdn {f:?} is not a valid lower-case domain name",
                        h.name
                    ));
                }
            }
        }
        p
    }

    /// The name host `host` uses in banners and `Received:` headers.
    pub fn fqdn(&self, host: &HostConfig) -> String {
        match (&host.fqdn, self.cluster.domains.first()) {
            (Some(f), _) => f.clone(),
            (None, Some(d)) => format!("{}.{d}", host.name),
            (None, None) => host.name.clone(),
        }
    }

    /// The entry of the host named `name` (each agent is started with `--host NAME`).
    pub fn host(&self, name: &str) -> Result<&HostConfig, ConfigError> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| ConfigError::UnknownHost {
                name: name.to_string(),
                known: self.hosts.iter().map(|h| h.name.clone()).collect(),
            })
    }

    /// Lock settings for the spool as host `host` (its name goes into lock files).
    pub fn lock_options(&self, host: &HostConfig) -> LockOptions {
        LockOptions {
            timeout: Duration::from_secs(self.locking.timeout_secs),
            stale_after: Duration::from_secs(self.locking.stale_after_secs),
            hostname: host.name.clone(),
            ..LockOptions::default()
        }
    }

    /// Whether `domain` is one of ours (case-insensitive).
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.cluster
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain.trim_end_matches('.')))
    }
}

fn is_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[cluster]
domains = ["example.test", "other.test"]
spool = "/srv/mail"

[[host]]
name = "host1"
address = "10.0.0.11"
mx_priority = 10

[[host]]
name = "host2"
address = "10.0.0.12"
mx_priority = 20

[auth]
backend = "file"
passwd_file = "/etc/hamail/passwd"
aliases_file = "/etc/hamail/aliases"

[tls]
cert = "/etc/hamail/cert.pem"
key = "/etc/hamail/key.pem"

[limits]
max_recipients = 50
"#;

    fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::parse(text, Path::new("hamail.toml"))
    }

    #[test]
    fn example_parses_with_defaults_and_finds_hosts() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.hosts.len(), 2);
        assert_eq!(c.limits.max_recipients, 50);
        assert_eq!(c.limits.data_timeout_secs, 600, "default kept");
        assert_eq!(c.listeners.submission, 587);
        let h2 = c.host("host2").unwrap();
        assert_eq!(h2.address, "10.0.0.12".parse::<IpAddr>().unwrap());
        assert_eq!(c.lock_options(h2).hostname, "host2");
        assert!(c.is_local_domain("Example.TEST."));
        assert!(!c.is_local_domain("example.org"));
        let err = c.host("host9").unwrap_err().to_string();
        assert!(err.contains("host1, host2"), "{err}");
    }

    #[test]
    fn ldap_and_nis_sections_parse_with_defaults_and_are_checked() {
        let auth = |section: &str| {
            let (head, tail) = EXAMPLE.split_once("[auth]").unwrap();
            let tail = tail.split_once("[tls]").unwrap().1;
            format!("{head}{section}\n[tls]{tail}")
        };
        let c = parse(&auth(
            "[auth]\nbackend = \"ldap\"\n\
             [auth.ldap]\nurls = [\"ldap://10.0.0.5\", \"ldaps://10.0.0.6\"]\n\
             base_dn = \"dc=example,dc=test\"\n\
             [auth.nis]\ndomain = \"corp\"\nservers = [\"10.0.0.7\"]\n",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let l = c.auth.ldap.as_ref().unwrap();
        assert_eq!(l.user_attr, "uid");
        assert_eq!(l.mail_attrs, ["mail", "mailAlternateAddress"]);
        assert!(l.user_filter.contains("%u"));
        assert_eq!((l.cache_secs, l.pool_size), (60, 4));
        let n = c.auth.nis.as_ref().unwrap();
        assert_eq!((n.passwd_map.as_str(), n.attempts), ("passwd.byname", 3));

        let err = parse(&auth("[auth]\nbackend = \"nis\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs an [auth.nis] section"), "{err}");
        let err = parse(&auth(
            "[auth]\nbackend = \"ldap\"\n[auth.ldap]\nurls = [\"http://x\"]\n\
             base_dn = \"dc=x\"\nbind_password = \"p\"\nuser_filter = \"uid=%u\"\n",
        ))
        .unwrap_err()
        .to_string();
        for want in ["not an ldap://", "needs bind_dn", "parenthesised"] {
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn dns_section_parses_with_defaults_and_is_checked() {
        let text = format!(
            "{EXAMPLE}\n[dns]\nlisten = \"10.0.0.14:53\"\nsecondaries = [\"10.0.0.15\"]\n\
             records = [{{ name = \"www\", type = \"A\", value = \"10.0.0.80\" }}]\n\
             [dns.rfc2136]\nserver = \"10.0.0.53:53\"\nkey_name = \"hamail\"\n\
             secret_file = \"/etc/hamail/tsig.key\"\n"
        );
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let d = c.dns.as_ref().unwrap();
        assert_eq!(
            (d.ttl_secs, d.probe_timeout_ms, d.notify_port),
            (30, 1000, 53)
        );
        assert_eq!(d.records[0].rtype, "A");
        assert_eq!(d.rfc2136.as_ref().unwrap().algorithm, "hmac-sha256");
        assert!(parse(EXAMPLE).unwrap().dns.is_none());

        let bad = text
            .replace(
                "listen = ",
                "ttl_secs = 0\nprobe_timeout_ms = 5000\nlisten = ",
            )
            .replace("key_name = ", "algorithm = \"hmac-md5\"\nkey_name = ");
        let err = parse(&bad).unwrap_err().to_string();
        for want in ["dns.ttl_secs", "dns.probe_timeout_ms", "hmac-md5"] {
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_errors_with_the_line() {
        let text = EXAMPLE.replace(
            "max_recipients = 50",
            "max_recipients = 50\nmax_recipeints = 5",
        );
        let line = text
            .lines()
            .position(|l| l.starts_with("max_recipeints"))
            .unwrap()
            + 1;
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("unknown field `max_recipeints`"), "{err}");
        assert!(err.contains(&format!("line {line}")), "{err}");
        let err = parse(&EXAMPLE.replace("[tls]", "[tsl]"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tsl"), "{err}");
    }

    #[test]
    fn every_inconsistency_is_reported_at_once() {
        let text = EXAMPLE
            .replace("\"/srv/mail\"", "\"srv/mail\"")
            .replace("10.0.0.12", "10.0.0.11")
            .replace("mx_priority = 20", "mx_priority = 10")
            .replace("passwd_file = \"/etc/hamail/passwd\"\n", "")
            .replace("\"other.test\"", "\"Bad_Domain\"");
        let Err(ConfigError::Invalid { problems, .. }) = parse(&text) else {
            panic!("expected Invalid");
        };
        let all = problems.join("\n");
        for needle in [
            "absolute path",
            "address 10.0.0.11 is used twice",
            "mx_priority 10",
            "passwd_file",
            "Bad_Domain",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert_eq!(problems.len(), 5, "{all}");
    }

    #[test]
    fn implicit_tls_without_certificates_is_refused() {
        let start = EXAMPLE.find("[tls]").unwrap();
        let end = EXAMPLE.find("[limits]").unwrap();
        let text = format!("{}{}", &EXAMPLE[..start], &EXAMPLE[end..]);
        let Err(ConfigError::Invalid { problems, .. }) = parse(&text) else {
            panic!("expected Invalid");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        let ok = format!("{text}\n[listeners]\nsubmissions = 0\nimaps = 0\npop3s = 0\n");
        assert!(parse(&ok).is_ok());
    }
}
