//! The `ldap` backend. (Stub: filled in by issue 5.)

use async_trait::async_trait;
use hamail_storage::cluster::LdapConfig;

use super::{AuthError, AuthSetupError, Authenticator};

#[derive(Debug)]
pub struct LdapAuthenticator {
    _config: LdapConfig,
}

impl LdapAuthenticator {
    pub fn new(config: LdapConfig, _local_domains: Vec<String>) -> Result<Self, AuthSetupError> {
        Ok(LdapAuthenticator { _config: config })
    }
}

#[async_trait]
impl Authenticator for LdapAuthenticator {
    async fn verify(&self, _login: &str, _password: &str) -> Result<Option<String>, AuthError> {
        Err(AuthError::Unavailable("ldap: not implemented".into()))
    }
    async fn user_exists(&self, _user: &str) -> Result<bool, AuthError> {
        Err(AuthError::Unavailable("ldap: not implemented".into()))
    }
    async fn check(&self) -> Result<(), AuthError> {
        Err(AuthError::Unavailable("ldap: not implemented".into()))
    }
    fn name(&self) -> &'static str {
        "ldap"
    }
}
