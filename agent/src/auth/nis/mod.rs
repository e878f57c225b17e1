//! The `nis` backend: YP over ONC RPC/UDP straight to the configured servers (no
//! ypbind), hashes verified locally. (Stub: filled in by issue 5.)

use async_trait::async_trait;
use hamail_storage::cluster::NisConfig;

use super::{AuthError, Authenticator};

#[derive(Debug)]
pub struct NisAuthenticator {
    _config: NisConfig,
    _domains: Vec<String>,
}

impl NisAuthenticator {
    pub fn new(config: NisConfig, local_domains: Vec<String>) -> Self {
        NisAuthenticator {
            _config: config,
            _domains: local_domains,
        }
    }
}

#[async_trait]
impl Authenticator for NisAuthenticator {
    async fn verify(&self, _login: &str, _password: &str) -> Result<Option<String>, AuthError> {
        Err(AuthError::Unavailable("nis: not implemented".into()))
    }
    async fn user_exists(&self, _user: &str) -> Result<bool, AuthError> {
        Err(AuthError::Unavailable("nis: not implemented".into()))
    }
    async fn check(&self) -> Result<(), AuthError> {
        Err(AuthError::Unavailable("nis: not implemented".into()))
    }
    fn name(&self) -> &'static str {
        "nis"
    }
}
