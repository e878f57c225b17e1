//! dnsctl: the bundled authoritative DNS server for the mail domains, the health
//! controller that keeps MX and `mail.<domain>` on healthy hosts, and the operator CLI.
//!
//! Pure parts (policy, hysteresis, state, zone contents) are separate from the I/O
//! (probes, the DNS server, the control socket) so each rule is tested on its own.

pub mod events;
pub mod health;
pub mod notify;
pub mod policy;
pub mod server;
pub mod state;
pub mod zone;
