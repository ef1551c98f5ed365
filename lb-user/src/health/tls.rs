//! TLS for `http` checks with `tls = true`: rustls (ring), verifying against
//! the system's roots (/etc/ssl/certs, or SSL_CERT_FILE) unless
//! `tls_verify = false`, which accepts any certificate: the check then
//! proves the backend speaks TLS, not who it is.

use std::{
    net::IpAddr,
    sync::{Arc, OnceLock},
};

use rustls::{
    ClientConfig, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, ring},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio_rustls::TlsConnector;

use super::CheckError;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

pub fn connector(verify: bool) -> TlsConnector {
    static VERIFYING: OnceLock<TlsConnector> = OnceLock::new();
    static TRUSTING: OnceLock<TlsConnector> = OnceLock::new();
    let cell = if verify { &VERIFYING } else { &TRUSTING };
    cell.get_or_init(|| {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions");
        let config = if verify {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "reading system CA certificates");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    "no system CA certificates found (install ca-certificates); TLS checks with tls_verify will fail"
                );
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider())))
                .with_no_client_auth()
        };
        TlsConnector::from(Arc::new(config))
    })
    .clone()
}

/// The name the certificate must carry: the Host header's host, else the address.
pub fn server_name(host: Option<&str>, ip: IpAddr) -> Result<ServerName<'static>, CheckError> {
    match host {
        Some(h) => {
            // Drop a :port, keeping bracketed IPv6 literals whole.
            let name = match h.rsplit_once(':') {
                Some((n, p)) if p.chars().all(|c| c.is_ascii_digit()) && !n.ends_with(':') => n,
                _ => h,
            };
            let name = name.trim_start_matches('[').trim_end_matches(']');
            ServerName::try_from(name.to_string())
                .map_err(|e| CheckError::Tls(format!("bad server name {name:?}: {e}")))
        }
        None => Ok(ServerName::IpAddress(ip.into())),
    }
}

/// Accepts any certificate but still checks the handshake signatures.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
