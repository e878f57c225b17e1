//! Zone policy: which host is published first. A pure function of the configured hosts,
//! their health, drains and the operator's override, so every rule is unit-tested and
//! the controller only decides *when* to apply it.
//!
//! Rules, in order:
//! 1. Drained hosts are left out (unless every host is drained: then none is, since an
//!    empty MX set would bounce mail).
//! 2. Healthy hosts come first in configured `mx_priority` order; the override host, if
//!    any, goes before them, but only while it is healthy (the best MX must always name a
//!    healthy host while one exists).
//! 3. Down hosts are kept, after all healthy ones, in configured order ("demote", not
//!    "remove"): senders still have somewhere to queue to if the health check is wrong.
//! 4. When no host is healthy, the configured order is served (override first).
//!
//! Published preferences are 10, 20, 30, ... in the resulting order, so the order is
//! unambiguous whatever the configured numbers were.

use std::collections::BTreeSet;

use hamail_storage::cluster::HostConfig;
use serde::Serialize;

/// The published order: `mx[0]` is the best MX and the `mail.<domain>` target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// (preference, host name), best first.
    pub mx: Vec<(u16, String)>,
}

impl Plan {
    /// The host `mail.<domain>` points at.
    pub fn active(&self) -> Option<&str> {
        self.mx.first().map(|(_, h)| h.as_str())
    }

    /// The published preference of `host`, if it is published.
    pub fn preference(&self, host: &str) -> Option<u16> {
        self.mx.iter().find(|(_, h)| h == host).map(|(p, _)| *p)
    }
}

/// Compute the plan. `is_up(name)` tells a host's current health.
pub fn plan(
    hosts: &[HostConfig],
    is_up: impl Fn(&str) -> bool,
    drained: &BTreeSet<String>,
    primary: Option<&str>,
) -> Plan {
    let mut configured: Vec<&HostConfig> = hosts.iter().collect();
    configured.sort_by_key(|h| (h.mx_priority, h.name.clone()));
    let mut candidates: Vec<&HostConfig> = configured
        .iter()
        .copied()
        .filter(|h| !drained.contains(&h.name))
        .collect();
    if candidates.is_empty() {
        candidates = configured;
    }
    // The override goes first among its peers (healthy ones, or all when none is).
    let first_if_override = |list: &mut Vec<&HostConfig>| {
        if let Some(pos) = primary.and_then(|p| list.iter().position(|h| h.name == p)) {
            let h = list.remove(pos);
            list.insert(0, h);
        }
    };
    let (mut healthy, down): (Vec<&HostConfig>, Vec<&HostConfig>) =
        candidates.iter().partition(|h| is_up(&h.name));
    let order: Vec<&HostConfig> = if healthy.is_empty() {
        let mut all = candidates;
        first_if_override(&mut all);
        all
    } else {
        first_if_override(&mut healthy);
        healthy.into_iter().chain(down).collect()
    };
    Plan {
        mx: order
            .iter()
            .enumerate()
            .map(|(i, h)| {
                (
                    u16::try_from(10 * (i + 1)).unwrap_or(u16::MAX),
                    h.name.clone(),
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<HostConfig> {
        [("host1", 10), ("host2", 20), ("host3", 30)]
            .iter()
            .enumerate()
            .map(|(i, (n, p))| HostConfig {
                name: n.to_string(),
                address: format!("10.0.0.{}", 11 + i).parse().unwrap(),
                mx_priority: *p,
                fqdn: None,
            })
            .collect()
    }

    fn order(up: &[&str], drained: &[&str], primary: Option<&str>) -> Vec<String> {
        let drained = drained.iter().map(|s| s.to_string()).collect();
        plan(&hosts(), |h| up.contains(&h), &drained, primary)
            .mx
            .into_iter()
            .map(|(_, h)| h)
            .collect()
    }

    #[test]
    fn configured_order_while_all_are_healthy() {
        let all = ["host1", "host2", "host3"];
        let p = plan(&hosts(), |h| all.contains(&h), &BTreeSet::new(), None);
        assert_eq!(
            p.mx,
            [
                (10, "host1".into()),
                (20, "host2".into()),
                (30, "host3".into())
            ]
        );
        assert_eq!(p.active(), Some("host1"));
        assert_eq!(p.preference("host3"), Some(30));
    }

    #[test]
    fn down_hosts_are_demoted_after_every_healthy_one() {
        assert_eq!(
            order(&["host2", "host3"], &[], None),
            ["host2", "host3", "host1"]
        );
        assert_eq!(order(&["host3"], &[], None), ["host3", "host1", "host2"]);
    }

    #[test]
    fn all_down_serves_the_configured_order() {
        assert_eq!(order(&[], &[], None), ["host1", "host2", "host3"]);
        assert_eq!(order(&[], &[], Some("host3")), ["host3", "host1", "host2"]);
    }

    #[test]
    fn override_first_only_while_it_is_healthy() {
        let all = ["host1", "host2", "host3"];
        assert_eq!(order(&all, &[], Some("host2")), ["host2", "host1", "host3"]);
        assert_eq!(
            order(&["host1", "host3"], &[], Some("host2")),
            ["host1", "host3", "host2"]
        );
        assert_eq!(
            order(&all, &[], Some("nosuch")),
            ["host1", "host2", "host3"]
        );
    }

    #[test]
    fn drained_hosts_are_left_out_unless_all_are() {
        let all = ["host1", "host2", "host3"];
        assert_eq!(order(&all, &["host1"], None), ["host2", "host3"]);
        assert_eq!(order(&all, &["host1"], Some("host1")), ["host2", "host3"]);
        assert_eq!(
            order(&all, &["host1", "host2", "host3"], None),
            ["host1", "host2", "host3"]
        );
        // A drained host stays out even when the others are down.
        assert_eq!(order(&[], &["host1"], None), ["host2", "host3"]);
    }
}
