//! [`ConfigBuilder`]: a `hamail.toml` put together from parts, for tests and tools that
//! need a valid cluster description without writing one out by hand. It only writes
//! TOML; [`ConfigBuilder::build`] parses the text with the real parser
//! ([`ClusterConfig::parse`]), so a built config is checked exactly like a file, and
//! [`ConfigBuilder::toml`] is the text to give to a program (`--config`).
//!
//! ```
//! use hamail_storage::cluster::ClusterConfig;
//!
//! let config = ClusterConfig::builder("/srv/mail")
//!     .domains(&["example.test", "example.org"])
//!     .hosts(["10.0.0.11", "10.0.0.12"]) // host1 (MX 10), host2 (MX 20)
//!     .section("dns", "listen = \"10.0.0.14:53\"")
//!     .build()
//!     .unwrap();
//! assert_eq!(config.hosts[1].mx_priority, 20);
//! assert_eq!(config.listeners.imaps, 0, "no [tls]: the implicit-TLS ports are off");
//! ```

use std::fmt::Display;
use std::path::{Path, PathBuf};

use super::{ClusterConfig, ConfigError};

/// Where a built config says it came from in error messages.
const LABEL: &str = "<ConfigBuilder>";

/// A `hamail.toml` under construction; see the [module documentation](self).
///
/// Unless replaced with [`section`](Self::section) or dropped with
/// [`without`](Self::without), it has `domains = ["example.test"]`, the `file` backend
/// (`[auth]` with `passwd_file = "/etc/hamail/passwd"`), no `[tls]`, and `[listeners]`
/// with the implicit-TLS ports (`submissions`, `imaps`, `pop3s`) set to 0 (a config
/// without `[tls]` must not listen on them); every other key has its default.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    spool: PathBuf,
    domains: Vec<String>,
    /// Each `[[host]]` table's keys.
    hosts: Vec<String>,
    /// `(table name, keys)`, written in this order after the hosts.
    sections: Vec<(String, String)>,
}

impl ClusterConfig {
    /// Start a config whose spool is `spool` (see [`ConfigBuilder`] for the defaults).
    pub fn builder(spool: impl AsRef<Path>) -> ConfigBuilder {
        ConfigBuilder {
            spool: spool.as_ref().to_path_buf(),
            domains: vec!["example.test".to_string()],
            hosts: Vec::new(),
            sections: vec![
                (
                    "auth".to_string(),
                    "backend = \"file\"\npasswd_file = \"/etc/hamail/passwd\"".to_string(),
                ),
                (
                    "listeners".to_string(),
                    "submissions = 0\nimaps = 0\npop3s = 0".to_string(),
                ),
            ],
        }
    }
}

/// `s` as a TOML basic string, quoted and escaped.
fn quoted(s: impl Display) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl ConfigBuilder {
    /// The mail domains, the primary one first (default `["example.test"]`).
    pub fn domains(mut self, domains: &[&str]) -> Self {
        self.domains = domains.iter().map(|d| d.to_string()).collect();
        self
    }

    /// Add a `[[host]]` named `name` listening on `address`, with MX priority 10 times
    /// its position (10 for the first host, 20 for the second, ...).
    pub fn host(mut self, name: &str, address: impl Display) -> Self {
        let mx = 10 * (self.hosts.len() + 1);
        self.hosts.push(format!(
            "name = {}\naddress = {}\nmx_priority = {mx}",
            quoted(name),
            quoted(address)
        ));
        self
    }

    /// Add one host per address, named `host1`, `host2`, ... after their position in
    /// the whole list (see [`host`](Self::host)).
    pub fn hosts<A: Display>(mut self, addresses: impl IntoIterator<Item = A>) -> Self {
        for address in addresses {
            let name = format!("host{}", self.hosts.len() + 1);
            self = self.host(&name, address);
        }
        self
    }

    /// More keys (TOML lines) for the host added last, e.g. `fqdn = "mx2.example.org"`.
    ///
    /// # Panics
    /// When no host has been added yet.
    #[allow(clippy::expect_used)]
    pub fn host_keys(mut self, keys: &str) -> Self {
        let host = self
            .hosts
            .last_mut()
            .expect("ConfigBuilder::host_keys before any host");
        host.push('\n');
        host.push_str(keys.trim());
        self
    }

    /// Set table `[name]` (e.g. `"tls"`, `"limits"`, `"dns"`, `"dns.rfc2136"`) to
    /// `keys`, replacing what the builder had for it. `keys` are TOML lines; they may
    /// end with sub-tables of their own (`[auth.ldap]` after the `[auth]` keys).
    pub fn section(mut self, name: &str, keys: &str) -> Self {
        let keys = keys.trim().to_string();
        match self.sections.iter_mut().find(|(n, _)| n == name) {
            Some(s) => s.1 = keys,
            None => self.sections.push((name.to_string(), keys)),
        }
        self
    }

    /// Leave table `[name]` out (then every key in it has its default; or the text is
    /// going to get the table from somewhere else).
    pub fn without(mut self, name: &str) -> Self {
        self.sections.retain(|(n, _)| n != name);
        self
    }

    /// The `hamail.toml` text: `[cluster]`, the hosts, then the sections in the order
    /// they were first set.
    pub fn toml(&self) -> String {
        let domains: Vec<String> = self.domains.iter().map(quoted).collect();
        let mut text = format!(
            "[cluster]\ndomains = [{}]\nspool = {}\n",
            domains.join(", "),
            quoted(self.spool.display())
        );
        for host in &self.hosts {
            text.push_str(&format!("\n[[host]]\n{host}\n"));
        }
        for (name, keys) in &self.sections {
            text.push_str(&format!("\n[{name}]\n{keys}\n"));
        }
        text
    }

    /// Parse [`toml`](Self::toml) and check it, as [`ClusterConfig::parse`] does a file.
    pub fn build(&self) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::parse(&self.toml(), Path::new(LABEL))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{AuthBackend, Listeners};

    #[test]
    fn defaults_make_a_valid_config_with_the_hosts_in_order() {
        let c = ClusterConfig::builder("/srv/mail")
            .host("a", "10.0.0.11")
            .hosts(["10.0.0.12", "fd00::13"])
            .host_keys("fqdn = \"mx3.example.test\"")
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let hosts: Vec<(&str, String, u16)> = c
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.address.to_string(), h.mx_priority))
            .collect();
        assert_eq!(
            hosts,
            [
                ("a", "10.0.0.11".to_string(), 10),
                ("host2", "10.0.0.12".to_string(), 20),
                ("host3", "fd00::13".to_string(), 30)
            ]
        );
        assert_eq!(c.fqdn(&c.hosts[2]), "mx3.example.test");
        assert_eq!(c.fqdn(&c.hosts[0]), "a.example.test");
        assert_eq!(c.cluster.domains, ["example.test"]);
        assert_eq!(c.cluster.spool, Path::new("/srv/mail"));
        assert_eq!(c.auth.backend, AuthBackend::File);
        assert!(c.tls.is_none());
        let l = &c.listeners;
        assert_eq!((l.submissions, l.imaps, l.pop3s), (0, 0, 0));
        assert_eq!((l.smtp, l.imap, l.health), (25, 143, 8025));
    }

    #[test]
    fn sections_replace_the_defaults_and_are_checked_by_the_real_parser() {
        let b = ClusterConfig::builder("/srv/mail")
            .hosts(["10.0.0.11"])
            .section("tls", "cert = \"/c.pem\"\nkey = \"/k.pem\"")
            .without("listeners")
            .section("auth", "backend = \"system\"")
            .section("limits", "max_recipients = 5");
        let c = b.build().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.listeners, Listeners::default());
        assert_eq!(c.auth.backend, AuthBackend::System);
        assert_eq!(c.limits.max_recipients, 5);
        assert_eq!(b.toml().matches("[auth]").count(), 1);

        // The real checks run: unknown keys, and a config that is inconsistent.
        let err = b.clone().section("limits", "max_recipeints = 5").build();
        assert!(matches!(err, Err(ConfigError::Parse { .. })), "{err:?}");
        let err = b.without("tls").build().unwrap_err().to_string();
        assert!(err.contains("implicit TLS needs a [tls] section"), "{err}");
        let err = ClusterConfig::builder("relative")
            .hosts(["10.0.0.11", "10.0.0.11"])
            .build()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("absolute path") && err.contains("address 10.0.0.11 is used twice"),
            "{err}"
        );
        let err = ClusterConfig::builder("/srv/mail").build().unwrap_err();
        assert!(err.to_string().contains("missing field `host`"), "{err}");
    }

    #[test]
    fn strings_are_quoted_for_toml() {
        let spool = "/tmp/a \"quoted\" \\ dir";
        let c = ClusterConfig::builder(spool)
            .hosts(["127.0.0.1"])
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.cluster.spool, Path::new(spool));
    }
}
