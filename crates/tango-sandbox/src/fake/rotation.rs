//! Credential rotation on the fake, as Tango does it: a new secret is accepted next to the
//! old one, then the old one is revoked. Tests rotate the gateway's files in between and
//! check that no request fails.

use std::sync::PoisonError;

use secrecy::SecretString;

use super::{BasicCredentials, FakeTango};

impl FakeTango {
    /// Accepts `password` for `username` too (Basic). No effect when Basic is off.
    pub fn accept_basic(&self, username: &str, password: &str) {
        if let Some(accepted) = &self.shared.basic_auth {
            accepted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(BasicCredentials {
                    username: username.to_owned(),
                    password: SecretString::from(password),
                });
        }
    }

    /// Stops accepting `password` (Basic), whoever it belonged to.
    pub fn revoke_basic(&self, password: &str) {
        use secrecy::ExposeSecret;
        if let Some(accepted) = &self.shared.basic_auth {
            accepted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|c| c.password.expose_secret() != password);
        }
    }

    /// Accepts `secret` for the OAuth client `client_id` too. No effect without OAuth.
    pub fn accept_client_secret(&self, client_id: &str, secret: &str) {
        if let Some(server) = self.shared.lock().oauth.as_mut() {
            server.accept_client_secret(client_id, secret);
        }
    }

    /// Stops accepting the OAuth client secret `secret`.
    pub fn revoke_client_secret(&self, secret: &str) {
        if let Some(server) = self.shared.lock().oauth.as_mut() {
            server.revoke_client_secret(secret);
        }
    }
}
