//! TLS settings (certificates, trusted CAs, client authentication) and the rustls
//! configurations built from them. Only the `ring` provider is compiled in; TLS 1.3 and 1.2
//! are both offered.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::{Error, ErrorKind, Result};

/// Whether a TLS server asks its clients for a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for (the default).
    #[default]
    None,
    /// Asked for; a client without one is served, a client with an invalid one is refused.
    Optional,
    /// A client without a valid certificate is refused during the handshake.
    Required,
}

/// Settings for one side of TLS connections: what a listener presents and whom it trusts
/// (`Context::listen_tls`), or what a client trusts and presents (`Context::connect_tls`).
/// Certificates and keys are parsed when set, so a bad file is reported by the setter.
#[derive(Clone, Default)]
pub struct TlsConfig {
    chain: Vec<CertificateDer<'static>>,
    key: Option<Arc<PrivateKeyDer<'static>>>,
    /// Trusted CAs: a client verifies servers against them (the system's roots when unset);
    /// a server verifies client certificates against them.
    roots: Option<Arc<RootCertStore>>,
    client_auth: ClientAuth,
    server_name: Option<String>,
}

fn tls_error(message: String) -> Error {
    Error::new(ErrorKind::InvalidArgument, message)
}

fn read_file(path: &str, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| tls_error(format!("cannot read the {what} file {path:?}: {e}")))
}

fn parse_certs(pem: &[u8], source: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> =
        CertificateDer::pem_slice_iter(pem).collect::<std::result::Result<_, _>>().map_err(|e| tls_error(format!("{source}: not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(format!("{source}: no CERTIFICATE block found")));
    }
    Ok(certs)
}

/// ring's provider with AES-128-GCM preferred over AES-256-GCM (as Go's crypto/tls does):
/// both are strong, and 128-bit keys encrypt about 20% faster, which bulk transfers feel.
/// The suites are the same; only the order the handshake picks from changes.
fn provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    let rank = |s: &rustls::SupportedCipherSuite| match s.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => 0,
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        _ => 1,
    };
    // A stable sort: otherwise ring's order (TLS 1.3 suites first) is kept.
    provider.cipher_suites.sort_by_key(|s| (s.version() != &rustls::version::TLS13, rank(s)));
    provider
}

impl TlsConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// The certificate chain (leaf first) and its private key, in PEM. A server needs one;
    /// a client presents it when the server asks (mutual TLS).
    pub fn set_certificate_pem(&mut self, chain: &[u8], key: &[u8]) -> Result<()> {
        self.set_certificate_from(chain, key, "certificate", "private key")
    }

    /// `set_certificate_pem` from files.
    pub fn set_certificate_files(&mut self, chain_path: &str, key_path: &str) -> Result<()> {
        let (chain, key) = (read_file(chain_path, "certificate")?, read_file(key_path, "private key")?);
        self.set_certificate_from(&chain, &key, chain_path, key_path)
    }

    fn set_certificate_from(&mut self, chain: &[u8], key: &[u8], chain_source: &str, key_source: &str) -> Result<()> {
        let chain = parse_certs(chain, chain_source)?;
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| tls_error(format!("{key_source}: no usable PRIVATE KEY block: {e}")))?;
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider.key_provider.load_private_key(key.clone_key()).map_err(|e| tls_error(format!("{key_source}: {e}")))?;
        // A key that does not belong to the leaf would only fail in every handshake.
        let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(tls_error(format!("{key_source} is not the key of the certificate in {chain_source}")));
            }
            Err(e) => return Err(tls_error(format!("{chain_source}: {e}"))),
        }
        self.chain = chain;
        self.key = Some(Arc::new(key));
        Ok(())
    }

    /// Trust the CA certificates in `pem` (one or more) instead of the system's roots.
    pub fn set_ca_pem(&mut self, pem: &[u8]) -> Result<()> {
        self.set_ca_from(pem, "CA certificates")
    }

    pub fn set_ca_file(&mut self, path: &str) -> Result<()> {
        let pem = read_file(path, "CA")?;
        self.set_ca_from(&pem, path)
    }

    fn set_ca_from(&mut self, pem: &[u8], source: &str) -> Result<()> {
        let mut roots = RootCertStore::empty();
        for cert in parse_certs(pem, source)? {
            roots.add(cert).map_err(|e| tls_error(format!("{source}: not a usable CA certificate: {e}")))?;
        }
        self.roots = Some(Arc::new(roots));
        Ok(())
    }

    /// Server side: ask clients for certificates, verified against the CA set with
    /// `set_ca_*` (which `Optional` and `Required` need).
    pub fn set_client_auth(&mut self, mode: ClientAuth) {
        self.client_auth = mode;
    }

    /// Client side: the name the server's certificate must carry, instead of the URI's host.
    pub fn set_server_name(&mut self, name: &str) -> Result<()> {
        ServerName::try_from(name.to_string()).map_err(|_| tls_error(format!("{name:?} is not a valid DNS name or IP address")))?;
        self.server_name = Some(name.to_string());
        Ok(())
    }

    pub(crate) fn server_name_for(&self, uri_host: &str) -> Result<ServerName<'static>> {
        let name = self.server_name.as_deref().unwrap_or(uri_host);
        ServerName::try_from(name.to_string())
            .map_err(|_| Error::new(ErrorKind::Address, format!("{name:?} is not a valid TLS server name (set one with the server-name option)")))
    }

    pub(crate) fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let key = self.key.as_ref().ok_or_else(|| tls_error("a TLS listener needs a certificate and its private key".into()))?;
        let provider = Arc::new(provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| tls_error(format!("TLS versions: {e}")))?;
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            mode => {
                let roots =
                    self.roots.clone().ok_or_else(|| tls_error("client certificates need a CA to verify them against (the CA option)".into()))?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = if mode == ClientAuth::Optional { verifier.allow_unauthenticated() } else { verifier };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| tls_error(format!("client certificate verifier: {e}")))?)
            }
        };
        let config = builder.with_single_cert(self.chain.clone(), key.clone_key()).map_err(|e| tls_error(format!("server certificate: {e}")))?;
        Ok(Arc::new(config))
    }

    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let roots = match &self.roots {
            Some(r) => r.clone(),
            None => Arc::new(system_roots()?),
        };
        let provider = Arc::new(provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| tls_error(format!("TLS versions: {e}")))?
            .with_root_certificates(roots);
        let config = match &self.key {
            Some(key) => {
                builder.with_client_auth_cert(self.chain.clone(), key.clone_key()).map_err(|e| tls_error(format!("client certificate: {e}")))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// The operating system's trusted roots (on Linux, the distribution's CA bundle; the
/// SSL_CERT_FILE and SSL_CERT_DIR variables override it).
fn system_roots() -> Result<RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map(|e| format!(": {e}")).unwrap_or_default();
        return Err(tls_error(format!("no trusted CA certificates found on this system{why}; give a CA file")));
    }
    Ok(roots)
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("certificates", &self.chain.len())
            .field("has_key", &self.key.is_some())
            .field("custom_ca", &self.roots.is_some())
            .field("client_auth", &self.client_auth)
            .field("server_name", &self.server_name)
            .finish()
    }
}
