//! The zone contents for one [`Plan`] and serial, in presentation form (owner names
//! absolute, values as in a master file). Pure: the DNS server turns these into wire
//! records, RFC 2136 mode sends the dynamic ones as updates, and `dnsctl zone` prints
//! them.
//!
//! One zone per mail domain. Each has SOA and NS; MX (the plan's order, targets the
//! hosts' FQDNs) and `mail.<domain>` (A or AAAA of the plan's first host) are the
//! *dynamic* records; host, name server and static records are the rest.

use std::fmt::Write as _;
use std::net::IpAddr;

use hamail_storage::cluster::{ClusterConfig, DnsConfig};
use serde::Serialize;

use crate::policy::Plan;

/// SOA timers other than the serial and minimum: refresh, retry, expire. Short refresh
/// and retry, as NOTIFY does the fast path and these are only the fallback.
const SOA_REFRESH: u32 = 300;
const SOA_RETRY: u32 = 60;
const SOA_EXPIRE: u32 = 1_209_600;

/// One resource record in presentation form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rec {
    /// Absolute, lower-case, without the trailing dot.
    pub name: String,
    pub ttl: u32,
    /// `A`, `AAAA`, `MX`, `NS`, `SOA`, `CNAME`, `TXT`, ...
    pub rtype: String,
    /// Master-file presentation (`10 host1.example.test.`).
    pub value: String,
    /// MX and `mail.` records, which the controller changes.
    pub dynamic: bool,
}

/// One zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Zone {
    /// Lower-case, without the trailing dot.
    pub origin: String,
    pub serial: u32,
    /// SOA first, then NS, then the rest in a stable order.
    pub records: Vec<Rec>,
}

/// Everything served at one serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub serial: u32,
    pub zones: Vec<Zone>,
}

fn rtype_for(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "A"
    } else {
        "AAAA"
    }
}

fn absolute(name: &str, origin: &str) -> String {
    let name = name.to_ascii_lowercase();
    if let Some(abs) = name.strip_suffix('.') {
        abs.to_string()
    } else if name == "@" {
        origin.to_string()
    } else if name == origin || name.ends_with(&format!(".{origin}")) {
        name
    } else {
        format!("{name}.{origin}")
    }
}

fn in_zone(name: &str, origin: &str) -> bool {
    name == origin || name.ends_with(&format!(".{origin}"))
}

/// The name server's name: `dns.ns_name` or `ns.<primary domain>`.
pub fn ns_name(config: &ClusterConfig, dns: &DnsConfig) -> String {
    let primary = config.cluster.domains.first().map_or("", String::as_str);
    match &dns.ns_name {
        Some(n) => n.trim_end_matches('.').to_ascii_lowercase(),
        None => format!("ns.{primary}"),
    }
}

/// Build every zone for `plan` at `serial`.
pub fn build(config: &ClusterConfig, dns: &DnsConfig, plan: &Plan, serial: u32) -> Snapshot {
    let ttl = dns.ttl_secs;
    let primary = config.cluster.domains.first().map_or("", String::as_str);
    let ns = ns_name(config, dns);
    let ns_addr = dns.ns_address.unwrap_or(dns.listen.ip());
    let hostmaster = match &dns.hostmaster {
        Some(h) => h.trim_end_matches('.').to_ascii_lowercase(),
        None => format!("hostmaster.{primary}"),
    };
    let minimum = dns.soa_minimum_secs.unwrap_or(ttl);
    let active = plan
        .active()
        .and_then(|name| config.hosts.iter().find(|h| h.name == name));
    let zones = config
        .cluster
        .domains
        .iter()
        .map(|domain| {
            let origin = domain.trim_end_matches('.').to_ascii_lowercase();
            let rec = |name: String, rtype: &str, value: String, dynamic: bool| Rec {
                name,
                ttl,
                rtype: rtype.to_string(),
                value,
                dynamic,
            };
            let mut records = vec![
                rec(
                    origin.clone(),
                    "SOA",
                    format!(
                        "{ns}. {hostmaster}. {serial} {SOA_REFRESH} {SOA_RETRY} {SOA_EXPIRE} {minimum}"
                    ),
                    false,
                ),
                rec(origin.clone(), "NS", format!("{ns}."), false),
            ];
            for (pref, host) in &plan.mx {
                if let Some(h) = config.hosts.iter().find(|h| &h.name == host) {
                    let target = config.fqdn(h).trim_end_matches('.').to_ascii_lowercase();
                    records.push(rec(origin.clone(), "MX", format!("{pref} {target}."), true));
                }
            }
            if let Some(h) = active {
                records.push(rec(
                    format!("mail.{origin}"),
                    rtype_for(h.address),
                    h.address.to_string(),
                    true,
                ));
            }
            if in_zone(&ns, &origin) {
                records.push(rec(ns.clone(), rtype_for(ns_addr), ns_addr.to_string(), false));
            }
            for h in &config.hosts {
                let fqdn = config.fqdn(h).trim_end_matches('.').to_ascii_lowercase();
                if in_zone(&fqdn, &origin) {
                    records.push(rec(fqdn, rtype_for(h.address), h.address.to_string(), false));
                }
            }
            for r in &dns.records {
                let name = absolute(&r.name, primary);
                if in_zone(&name, &origin) {
                    records.push(Rec {
                        name,
                        ttl: r.ttl_secs.unwrap_or(ttl),
                        rtype: r.rtype.to_ascii_uppercase(),
                        value: r.value.clone(),
                        dynamic: false,
                    });
                }
            }
            Zone {
                origin,
                serial,
                records,
            }
        })
        .collect();
    Snapshot { serial, zones }
}

impl Snapshot {
    /// Every zone as master-file text (RFC 1035 §5), `$ORIGIN` per zone, names absolute.
    pub fn to_master_file(&self) -> String {
        let mut out = String::new();
        for z in &self.zones {
            let _ = writeln!(out, "$ORIGIN {}.", z.origin);
            for r in &z.records {
                let _ = writeln!(out, "{}.\t{}\tIN\t{}\t{}", r.name, r.ttl, r.rtype, r.value);
            }
            out.push('\n');
        }
        out
    }

    /// The zone whose origin is `origin` (lower-case, no trailing dot).
    pub fn zone(&self, origin: &str) -> Option<&Zone> {
        self.zones.iter().find(|z| z.origin == origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn config() -> ClusterConfig {
        ClusterConfig::builder("/srv/mail")
            .domains(&["example.test", "example.org"])
            .hosts(["10.0.0.11", "fd00::12"])
            .host_keys("fqdn = \"mx2.example.org\"")
            .section(
                "dns",
                r#"listen = "10.0.0.14:53"
records = [{ name = "www", type = "a", value = "10.0.0.80" },
           { name = "_dmarc.example.org.", type = "TXT", value = "\"v=DMARC1; p=none\"", ttl_secs = 3600 }]"#,
            )
            .build()
            .unwrap()
    }

    #[test]
    fn zones_follow_the_plan() {
        let c = config();
        let dns = c.dns.clone().unwrap();
        let plan = crate::policy::plan(&c.hosts, |h| h == "host2", &BTreeSet::new(), None);
        let snap = build(&c, &dns, &plan, 42);
        let z = snap.zone("example.test").unwrap();
        let text: Vec<String> = z
            .records
            .iter()
            .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.rtype, r.value))
            .collect();
        assert_eq!(
            text,
            [
                "example.test 30 SOA ns.example.test. hostmaster.example.test. 42 300 60 1209600 30",
                "example.test 30 NS ns.example.test.",
                "example.test 30 MX 10 mx2.example.org.",
                "example.test 30 MX 20 host1.example.test.",
                "mail.example.test 30 AAAA fd00::12",
                "ns.example.test 30 A 10.0.0.14",
                "host1.example.test 30 A 10.0.0.11",
                "www.example.test 30 A 10.0.0.80",
            ]
        );
        let org = snap.zone("example.org").unwrap();
        assert!(org
            .records
            .iter()
            .any(|r| r.name == "mx2.example.org" && r.rtype == "AAAA"));
        assert!(org
            .records
            .iter()
            .any(|r| r.name == "_dmarc.example.org" && r.ttl == 3600));
        let dynamic: Vec<&str> = org
            .records
            .iter()
            .filter(|r| r.dynamic)
            .map(|r| r.rtype.as_str())
            .collect();
        assert_eq!(dynamic, ["MX", "MX", "AAAA"]);
        let master = snap.to_master_file();
        assert!(master.contains("$ORIGIN example.org.\n"));
        assert!(master.contains("mail.example.org.\t30\tIN\tAAAA\tfd00::12\n"));
    }
}
