//! Placeholder for the authoritative server (being written on branch wt-dns); same
//! interface, serves nothing.

use std::sync::{Arc, Mutex, PoisonError};

use crate::zone::Snapshot;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneError {
    #[error("bad record: {0}")]
    Record(String),
}

#[derive(Debug, Clone)]
pub struct DnsServer {
    serial: Arc<Mutex<u32>>,
}

impl DnsServer {
    pub fn new(
        snapshot: &Snapshot,
        _secondaries: Vec<std::net::IpAddr>,
    ) -> Result<DnsServer, ZoneError> {
        Ok(DnsServer {
            serial: Arc::new(Mutex::new(snapshot.serial)),
        })
    }
    pub fn publish(&self, snapshot: &Snapshot) -> Result<(), ZoneError> {
        *self.serial.lock().unwrap_or_else(PoisonError::into_inner) = snapshot.serial;
        Ok(())
    }
    pub fn serial(&self) -> u32 {
        *self.serial.lock().unwrap_or_else(PoisonError::into_inner)
    }
    pub async fn serve(
        &self,
        _listen: std::net::SocketAddr,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        shutdown.await;
        Ok(())
    }
}
