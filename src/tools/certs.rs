//! `certs client` (a key, a CSR and a self-signed certificate to hand to Tango for mTLS) and
//! `certs dev` (a throwaway CA, server and client certificates for local testing).
//!
//! Invariant: `--days` and `--subject` are checked before any key is made or any file
//! touched, and every certificate written is valid for at most [`MAX_CLIENT_DAYS`] days in
//! all (the back-dated hour included).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use secrecy::ExposeSecret;
use tango_sandbox::pki::{
    self_signed_client, write_new_files, ClientSpec, DevPki, KeyKind, NewFile, Subject,
    DEFAULT_VALIDITY_DAYS, DEV_CLIENT_CN, DEV_SERVER_NAMES,
};

use super::{create_out_dir, key_label, ToolError};

/// Tango refuses client certificates valid for longer than a year.
pub const MAX_CLIENT_DAYS: u32 = 365;
pub const CLIENT_KEY_FILE: &str = "client.key";
pub const CLIENT_CSR_FILE: &str = "client.csr";
pub const CLIENT_CERT_FILE: &str = "client.pem";

/// The arguments of `certs client`.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    pub key: KeyKind,
    /// A common name, or a full DN when it contains `=`.
    pub subject: String,
    pub days: u32,
    pub out: PathBuf,
    pub force: bool,
}

/// What `certs client` wrote.
#[derive(Debug, Clone)]
pub struct ClientOutcome {
    /// `client.key`, `client.csr`, `client.pem`, in that order.
    pub written: Vec<PathBuf>,
    pub subject: Subject,
    pub key: KeyKind,
    pub days: u32,
    pub not_after: SystemTime,
}

/// Makes the key, CSR and self-signed certificate and writes them into `req.out`.
pub fn client(req: &ClientRequest) -> Result<ClientOutcome, ToolError> {
    let days = check_days(req.days)?;
    let subject = Subject::parse(&req.subject).map_err(|reason| ToolError::Subject {
        given: req.subject.clone(),
        reason,
    })?;
    let spec = ClientSpec::for_subject(subject.clone())
        .key_kind(req.key)
        .valid_for_total_days(days);
    let (material, csr_pem) = self_signed_client(&spec)?;
    create_out_dir(&req.out)?;
    let files = [
        NewFile::key(CLIENT_KEY_FILE, material.key_pem.expose_secret().as_bytes()),
        NewFile::cert(CLIENT_CSR_FILE, csr_pem.as_bytes()),
        NewFile::cert(CLIENT_CERT_FILE, material.cert_pem.as_bytes()),
    ];
    let written = write_new_files(&req.out, &files, req.force)?;
    Ok(ClientOutcome {
        written,
        subject,
        key: req.key,
        days,
        not_after: spec.not_after,
    })
}

fn check_days(days: u32) -> Result<u32, ToolError> {
    match days {
        0 => Err(ToolError::NoDays),
        d if d > MAX_CLIENT_DAYS => Err(ToolError::TooLong { days: d }),
        d => Ok(d),
    }
}

impl fmt::Display for ClientOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "made a client key ({}) and a self-signed certificate for {} \
             (valid {} days, until {})",
            key_label(self.key),
            self.subject,
            self.days,
            humantime::format_rfc3339_seconds(self.not_after),
        )?;
        for path in &self.written {
            writeln!(f, "  wrote {}  {}", path.display(), describe_client(path))?;
        }
        writeln!(
            f,
            "next: send {CLIENT_CSR_FILE} (or {CLIENT_CERT_FILE}, if Tango asks for a \
             certificate) to Tango to enable mTLS; never send {CLIENT_KEY_FILE}."
        )?;
        writeln!(
            f,
            "      Then set upstream.tls.client_cert_file to {CLIENT_CERT_FILE} (or the \
             certificate Tango returns) and upstream.tls.client_key_file to {CLIENT_KEY_FILE}, \
             and run `tango-gateway check`."
        )
    }
}

/// What `certs dev` wrote.
#[derive(Debug, Clone)]
pub struct DevOutcome {
    /// [`tango_sandbox::pki::DEV_FILE_NAMES`] in `out`, in that order.
    pub written: Vec<PathBuf>,
}

/// Makes a throwaway CA, a localhost server certificate and a client certificate in `out`.
pub fn dev(out: &Path, force: bool) -> Result<DevOutcome, ToolError> {
    let pki = DevPki::generate()?;
    create_out_dir(out)?;
    let written = pki.write_to(out, force)?;
    Ok(DevOutcome { written })
}

impl fmt::Display for DevOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "made a throwaway CA, server and client certificates for local testing only \
             (ECDSA P-256, valid {DEFAULT_VALIDITY_DAYS} days)"
        )?;
        for path in &self.written {
            writeln!(f, "  wrote {}  {}", path.display(), describe_dev(path))?;
        }
        writeln!(
            f,
            "next: serve a local stand-in for Tango with server.pem and server.key; point the \
             gateway's upstream.tls.ca_file at ca.pem, and upstream.tls.client_cert_file / \
             client_key_file at client.pem / client.key. Never send these to Tango."
        )
    }
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

fn describe_client(path: &Path) -> &'static str {
    match file_name(path) {
        CLIENT_KEY_FILE => "private key (mode 0600): keep it here, never send it",
        CLIENT_CSR_FILE => "certificate signing request",
        CLIENT_CERT_FILE => "self-signed client certificate",
        _ => "",
    }
}

fn describe_dev(path: &Path) -> String {
    match file_name(path) {
        "ca.pem" => "CA certificate, the trust anchor of the two below".to_string(),
        "server.pem" => format!("server certificate for {}", DEV_SERVER_NAMES.join(", ")),
        "client.pem" => format!("client certificate, CN={DEV_CLIENT_CN}"),
        name if name.ends_with(".key") => "private key (mode 0600)".to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_must_be_between_one_and_365() {
        assert!(matches!(check_days(0), Err(ToolError::NoDays)));
        assert!(matches!(check_days(1), Ok(1)));
        assert!(matches!(check_days(365), Ok(365)));
        assert!(matches!(
            check_days(366),
            Err(ToolError::TooLong { days: 366 })
        ));
    }

    #[test]
    fn bad_arguments_are_usage_errors_and_write_nothing() {
        let dir = std::env::temp_dir().join(format!("tools-certs-{}", std::process::id()));
        let req = |subject: &str, days| ClientRequest {
            key: KeyKind::EcdsaP256,
            subject: subject.to_string(),
            days,
            out: dir.clone(),
            force: false,
        };
        for bad in [
            req("svc", 400),
            req("svc", 0),
            req("CN=svc,Acme", 30),
            req("", 30),
        ] {
            assert!(client(&bad).is_err_and(|e| e.is_usage()), "{bad:?}");
        }
        assert!(!dir.exists());
    }
}
