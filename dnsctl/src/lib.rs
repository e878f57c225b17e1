//! dnsctl: the bundled authoritative DNS server for the mail domains, the health
//! controller that keeps MX and `mail.<domain>` on healthy hosts, and the operator CLI.
//!
//! Pure parts (policy, hysteresis, state, zone contents) are separate from the I/O
//! (probes, the DNS server, RFC 2136 updates, the control socket) so each rule is tested
//! on its own.

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
