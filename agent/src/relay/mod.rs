//! Relay out: the queue runner that every host runs over the shared queue.

// TEMPORARY stub until the queue runner lands.
use std::sync::Arc;

use hamail_storage::cluster::{ClusterConfig, HostConfig};
use hamail_storage::Spool;

use crate::shutdown::Shutdown;

#[derive(Debug, Clone)]
pub struct RelayHandle;

impl RelayHandle {
    pub fn kick(&self) {}
}

pub fn start(
    _config: Arc<ClusterConfig>,
    _host: HostConfig,
    _spool: Spool,
    _shutdown: Shutdown,
) -> (RelayHandle, tokio::task::JoinHandle<()>) {
    (RelayHandle, tokio::spawn(async {}))
}
