//! Test doubles for the relay tests: an authoritative DNS responder and an SMTP sink.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod dns;
pub mod sink;
