//! The `system` backend: accounts from NSS (`getpwnam_r` / `getspnam_r`), for hosts
//! already joined to NIS or LDAP through nss-nis or sssd. (Stub: filled in by issue 5.)

use async_trait::async_trait;

use super::{AuthError, Authenticator};

#[derive(Debug)]
pub struct SystemAuthenticator {
    _domains: Vec<String>,
}

impl SystemAuthenticator {
    pub fn new(local_domains: Vec<String>) -> Self {
        SystemAuthenticator {
            _domains: local_domains,
        }
    }
}

#[async_trait]
impl Authenticator for SystemAuthenticator {
    async fn verify(&self, _login: &str, _password: &str) -> Result<Option<String>, AuthError> {
        Err(AuthError::Unavailable("system: not implemented".into()))
    }
    async fn user_exists(&self, _user: &str) -> Result<bool, AuthError> {
        Err(AuthError::Unavailable("system: not implemented".into()))
    }
    async fn check(&self) -> Result<(), AuthError> {
        Err(AuthError::Unavailable("system: not implemented".into()))
    }
    fn name(&self) -> &'static str {
        "system"
    }
}
