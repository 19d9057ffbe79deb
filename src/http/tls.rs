//! TLS for `https://` listeners, with rustls: TorchServe's `private_key_file` and
//! `certificate_file` (PEM); without them, a self-signed certificate made at start-up, as
//! TorchServe makes one. (TorchServe's `keystore`, PKCS#12, is refused by the configuration's key table,
//! with the way to convert it.)

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSettings;

/// The TLS configuration every `https://` listener serves with.
pub fn server_config(settings: &TlsSettings, host: &str) -> Result<Arc<ServerConfig>, String> {
    let (chain, key) = match (&settings.private_key_file, &settings.certificate_file) {
        (Some(key), Some(certificates)) => {
            let chain = CertificateDer::pem_file_iter(certificates)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read certificate_file {}: {e}", certificates.display()))?;
            if chain.is_empty() {
                return Err(format!("certificate_file {} holds no certificate", certificates.display()));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("cannot read private_key_file {}: {e}", key.display()))?;
            (chain, key)
        }
        (None, None) => self_signed(host)?,
        _ => return Err("TLS needs both private_key_file and certificate_file".into()),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| format!("invalid TLS key or certificate: {e}"))?;
    Ok(Arc::new(config))
}

/// A certificate for `localhost` and the listener's host, made now.
fn self_signed(host: &str) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    log::warn!("https without private_key_file and certificate_file: serving a self-signed certificate for localhost and {host}");
    let names = vec!["localhost".to_string(), host.to_string()];
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| format!("cannot make a certificate: {e}"))?;
    let key = PrivateKeyDer::try_from(certified.key_pair.serialize_der()).map_err(|e| e.to_string())?;
    Ok((vec![certified.cert.der().clone()], key))
}
