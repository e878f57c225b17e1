//! TEMPORARY stub (replaced by the real directory on merge).
use std::sync::Arc;

use super::{AuthError, Authenticator};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    pub users: Vec<String>,
    pub remote: Vec<String>,
}

#[derive(Debug)]
pub struct Directory {
    backend: Arc<dyn Authenticator>,
}

impl Directory {
    pub fn new(backend: Arc<dyn Authenticator>) -> Directory {
        Directory { backend }
    }
    pub async fn resolve(&self, local_part: &str) -> Result<Option<Targets>, AuthError> {
        let user = local_part.to_ascii_lowercase();
        if user == "postmaster" || self.backend.user_exists(&user).await? {
            return Ok(Some(Targets {
                users: vec![user],
                remote: vec![],
            }));
        }
        Ok(None)
    }
    pub async fn verify(&self, login: &str, password: &str) -> Result<Option<String>, AuthError> {
        self.backend.verify(login, password).await
    }
    pub fn backend(&self) -> &Arc<dyn Authenticator> {
        &self.backend
    }
}
