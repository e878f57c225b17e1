//! dnsctl: the bundled authoritative DNS server for the mail domains, the health
//! controller that keeps MX and `mail.<domain>` on healthy hosts, and the operator CLI.
//!
//! - [`serve`]: `dnsctl serve`: wires the controller, its publisher, the probe loop, the
//!   control socket and `/metrics`.
//! - [`controller`]: probes each interval, applies operator commands, publishes changes.
//! - [`health`]: one probe (SMTP banner + `/healthz`) and the hysteresis.
//! - [`policy`]: which host is published first (pure).
//! - [`zone`]: the zone contents for one plan and serial (pure).
//! - [`server`]: the authoritative server over UDP and TCP, atomic snapshot swaps, AXFR.
//! - [`notify`]: RFC 1996 NOTIFY to the secondaries.
//! - [`rfc2136`]: TSIG-signed RFC 2136 updates to an existing primary.
//! - [`state`]: what survives a restart, saved atomically.
//! - [`events`]: the event log (`events.jsonl`).
//! - [`control`]: the control socket protocol between `serve` and the CLI.
//! - [`metrics_http`]: `/metrics` for Prometheus.
//!
//! Pure parts (policy, hysteresis, state, zone contents) are separate from the I/O
//! (probes, the DNS server, RFC 2136 updates, the control socket) so each rule is tested
//! on its own. See `dnsctl/README.md`.

pub mod control;
pub mod controller;
pub mod events;
pub mod health;
pub mod metrics_http;
pub mod notify;
pub mod policy;
pub mod rfc2136;
pub mod serve;
pub mod server;
pub mod state;
pub mod zone;
