//! runner
#[derive(Debug)]
pub struct RelayHandle;
pub fn spawn() {}
