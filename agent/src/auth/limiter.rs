//! TEMPORARY stub (replaced on merge).
use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct LoginLimiter {}

impl LoginLimiter {
    pub fn new() -> LoginLimiter {
        LoginLimiter {}
    }
    pub fn check(&self, _ip: IpAddr, _user: &str) -> Result<(), Duration> {
        Ok(())
    }
    pub fn failure(&self, _ip: IpAddr, _user: &str) {}
    pub fn success(&self, _ip: IpAddr, _user: &str) {}
}
