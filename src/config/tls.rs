//! A `tls` block (`upstream.tls` or `oauth2.tls`): extra trust anchors and the mTLS identity.
//!
//! Invariant: a client certificate is never configured without its key (and vice versa), and a
//! returned `TlsConfig` holds an identity that passed every check of `certs::load`.

use std::path::Path;
use std::time::SystemTime;

use crate::certs::{load_ca_file, load_client_identity_detailed, IdentityFile};

use super::errors::{join, Problems};
use super::fields::file_path;
use super::model::TlsConfig;
use super::raw::RawTls;

pub(crate) fn tls(
    p: &mut Problems,
    path: &str,
    raw: &RawTls,
    now: SystemTime,
) -> Option<TlsConfig> {
    let before = p.len();
    let allow_long_validity = raw.allow_long_validity.unwrap_or(false);
    let ca_key = join(path, "ca_file");
    let cert_key = join(path, "client_cert_file");
    let key_key = join(path, "client_key_file");
    let ca_file = file_path(p, &ca_key, &raw.ca_file).flatten();
    let cert_file = file_path(p, &cert_key, &raw.client_cert_file).flatten();
    let key_file = file_path(p, &key_key, &raw.client_key_file).flatten();

    let extra_roots = match &ca_file {
        Some(f) => load_ca_file(f).unwrap_or_else(|e| {
            p.add(&ca_key, e);
            Vec::new()
        }),
        None => Vec::new(),
    };
    let client_identity = match (&cert_file, &key_file) {
        (Some(c), Some(k)) => identity(p, (&cert_key, &key_key), c, k, allow_long_validity, now),
        (Some(_), None) => {
            p.add(
                &key_key,
                "is required with client_cert_file (mTLS needs both)",
            );
            None
        }
        (None, Some(_)) => {
            p.add(
                &cert_key,
                "is required with client_key_file (mTLS needs both)",
            );
            None
        }
        (None, None) => None,
    };
    (p.len() == before).then_some(TlsConfig {
        ca_file,
        extra_roots,
        client_identity,
        allow_long_validity,
    })
}

fn identity(
    p: &mut Problems,
    (cert_key, key_key): (&str, &str),
    cert: &Path,
    key: &Path,
    allow_long_validity: bool,
    now: SystemTime,
) -> Option<crate::certs::ClientIdentity> {
    match load_client_identity_detailed(cert, key, allow_long_validity, now) {
        Ok(id) => Some(id),
        Err(problems) => {
            for prob in problems {
                let at = match prob.file {
                    IdentityFile::Cert => cert_key,
                    IdentityFile::Key => key_key,
                };
                p.add(at, prob.message);
            }
            None
        }
    }
}
