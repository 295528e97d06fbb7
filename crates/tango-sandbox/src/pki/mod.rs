//! Certificate material made with rcgen (aws-lc-rs backend): a throwaway CA, server and client
//! certificates for the demo, the tests and the `certs dev` / `certs client` commands.
//!
//! Invariant: private keys never show in a `Debug` print (`CertifiedMaterial` redacts them), and
//! everything issued by default is valid for at most 365 days (Tango refuses longer client
//! certificates); deliberately bad material (expired, long-lived, foreign CA) is only made on
//! explicit request through [`ClientSpec`].

mod files;
mod subject;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, RsaKeySize,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::SecretString;

pub use files::{
    write_new_file, write_new_files, NewFile, CERT_FILE_MODE, DEV_FILE_NAMES, KEY_FILE_MODE,
};
pub use subject::{Subject, SubjectAttr, SubjectError};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
/// Back-dating `not_before` by an hour tolerates clock skew between machines.
pub const DEFAULT_BACKDATE: Duration = HOUR;
/// 364 days plus the back-dated hour stays within Tango's one-year limit.
pub const DEFAULT_VALIDITY_DAYS: u64 = 364;
/// Common name of the client certificate in [`DevPki`].
pub const DEV_CLIENT_CN: &str = "tango-gateway-dev-client";
/// Names the dev server certificate covers.
pub const DEV_SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why certificate material could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: refusing to overwrite an existing file (use --force)")]
    Exists { path: std::path::PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The key algorithm of an issued certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyKind {
    #[default]
    EcdsaP256,
    Rsa2048,
}

impl KeyKind {
    fn generate(self) -> Result<KeyPair, rcgen::Error> {
        match self {
            KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            // Only the aws-lc-rs backend of rcgen can generate RSA keys (ring cannot).
            KeyKind::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048)
            }
        }
    }
}

/// A certificate with its private key, in both PEM and DER forms.
pub struct CertifiedMaterial {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    /// PKCS#8 PEM; a secret (redacted `Debug`).
    pub key_pem: SecretString,
    key_der: PrivateKeyDer<'static>,
}

impl CertifiedMaterial {
    fn new(cert: rcgen::Certificate, key: &KeyPair) -> Self {
        CertifiedMaterial {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: SecretString::from(key.serialize_pem()),
            key_der: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// The private key (PKCS#8 DER), e.g. for a rustls config.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        self.key_der.clone_key()
    }
}

impl Clone for CertifiedMaterial {
    fn clone(&self) -> Self {
        CertifiedMaterial {
            cert_pem: self.cert_pem.clone(),
            cert_der: self.cert_der.clone(),
            key_pem: self.key_pem.clone(),
            key_der: self.key_der.clone_key(),
        }
    }
}

impl fmt::Debug for CertifiedMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedMaterial")
            .field("cert_der_len", &self.cert_der.len())
            .field("key", &"[redacted]")
            .finish()
    }
}

/// What a client certificate should look like; the defaults are what Tango accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub common_name: String,
    /// A full subject DN; when set it is used instead of `common_name`.
    pub subject: Option<Subject>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub key: KeyKind,
}

impl ClientSpec {
    /// ECDSA P-256, valid from an hour ago for [`DEFAULT_VALIDITY_DAYS`].
    pub fn new(common_name: impl Into<String>) -> Self {
        let now = SystemTime::now();
        ClientSpec {
            common_name: common_name.into(),
            subject: None,
            not_before: now - DEFAULT_BACKDATE,
            not_after: now + DAY * DEFAULT_VALIDITY_DAYS as u32,
            key: KeyKind::EcdsaP256,
        }
    }

    /// As [`ClientSpec::new`], named by a full subject (its CN is also `common_name`).
    pub fn for_subject(subject: Subject) -> Self {
        let mut spec = ClientSpec::new(subject.common_name().unwrap_or_default());
        spec.subject = Some(subject);
        spec
    }

    /// Valid from an hour ago until `days` days from now (e.g. 730 for a too-long certificate).
    pub fn valid_for_days(mut self, days: u32) -> Self {
        self.not_after = SystemTime::now() + DAY * days;
        self
    }

    /// Valid for exactly `days` days counted from `not_before`, the back-dated hour included,
    /// so the whole window never exceeds `days` (what a "≤ 365 days" rule measures).
    pub fn valid_for_total_days(mut self, days: u32) -> Self {
        self.not_after = self.not_before + DAY * days;
        self
    }

    /// Expired yesterday (valid for the 30 days before).
    pub fn expired(mut self) -> Self {
        let now = SystemTime::now();
        self.not_before = now - DAY * 31;
        self.not_after = now - DAY;
        self
    }

    pub fn key_kind(mut self, key: KeyKind) -> Self {
        self.key = key;
        self
    }

    fn params(&self) -> Result<CertificateParams, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = match &self.subject {
            Some(subject) => subject.to_distinguished_name(),
            None => common_name(&self.common_name),
        };
        params.not_before = self.not_before.into();
        params.not_after = self.not_after.into();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Ok(params)
    }
}

/// A certificate authority that can issue server and client certificates.
pub struct Ca {
    material: CertifiedMaterial,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca").field("cert", &self.material).finish()
    }
}

impl Ca {
    /// A new self-signed ECDSA P-256 CA named `name`, valid for [`DEFAULT_VALIDITY_DAYS`].
    pub fn new(name: &str) -> Result<Ca, PkiError> {
        let key = KeyKind::EcdsaP256.generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = common_name(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_default_validity(&mut params);
        let cert = params.self_signed(&key)?;
        let material = CertifiedMaterial::new(cert, &key);
        Ok(Ca {
            material,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate and key.
    pub fn cert(&self) -> &CertifiedMaterial {
        &self.material
    }

    /// A server certificate for `names` (DNS names or IP addresses, the first is also the CN).
    pub fn issue_server(&self, names: &[&str]) -> Result<CertifiedMaterial, PkiError> {
        let key = KeyKind::EcdsaP256.generate()?;
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name = common_name(names.first().copied().unwrap_or("server"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        set_default_validity(&mut params);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedMaterial::new(cert, &key))
    }

    /// A client certificate as `spec` describes it (no SANs, EKU clientAuth).
    pub fn issue_client(&self, spec: &ClientSpec) -> Result<CertifiedMaterial, PkiError> {
        let key = spec.key.generate()?;
        let mut params = spec.params()?;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedMaterial::new(cert, &key))
    }
}

/// A self-signed client certificate and a CSR for the same key (what Tango asks for when
/// enabling mTLS); returns the material and the CSR in PEM.
pub fn self_signed_client(spec: &ClientSpec) -> Result<(CertifiedMaterial, String), PkiError> {
    let key = spec.key.generate()?;
    let params = spec.params()?;
    let csr = params.serialize_request(&key)?.pem()?;
    let cert = params.self_signed(&key)?;
    Ok((CertifiedMaterial::new(cert, &key), csr))
}

/// A complete throwaway PKI: CA, a server certificate for localhost, a client certificate.
#[derive(Debug)]
pub struct DevPki {
    pub ca: Ca,
    pub server: CertifiedMaterial,
    pub client: CertifiedMaterial,
}

impl DevPki {
    pub fn generate() -> Result<DevPki, PkiError> {
        let ca = Ca::new("tango-gateway dev CA")?;
        let server = ca.issue_server(&DEV_SERVER_NAMES)?;
        let client = ca.issue_client(&ClientSpec::new(DEV_CLIENT_CN))?;
        Ok(DevPki { ca, server, client })
    }
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn set_default_validity(params: &mut CertificateParams) {
    let now = SystemTime::now();
    params.not_before = (now - DEFAULT_BACKDATE).into();
    params.not_after = (now + DAY * DEFAULT_VALIDITY_DAYS as u32).into();
}
