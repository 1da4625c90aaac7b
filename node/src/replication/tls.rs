//! Mutual TLS for the cluster link: rustls with the ring provider only,
//! TLS 1.3 only, both sides presenting a certificate of the cluster CA whose
//! name is the node id (the notes' verified recipe).
//!
//! A peer without such a certificate fails the handshake before any stream
//! is read. Because a TLS 1.3 client finishes its handshake before the
//! server has checked the client's certificate, a dialler's `connect` can
//! succeed against a server that then refuses it: a peer counts as connected
//! only after the application-level hello (see `peer.rs`).

use std::sync::Arc;

use crdt_core::NodeId;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;

use crate::pki::NodeTls;

/// ALPN of the cluster protocol.
pub const ALPN: &[u8] = b"concord/1";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the material.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// A verifier could not be built (a malformed revocation list, say).
    #[error("TLS verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// QUIC refused the rustls configuration.
    #[error("QUIC crypto: {0}")]
    Quic(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CertificateDer<'static>) -> Result<RootCertStore, TlsError> {
    let mut r = RootCertStore::empty();
    r.add(ca.clone())?;
    Ok(r)
}

/// The QUIC server and client configurations of a node, with the transport
/// settings both sides share: keep-alive every second, idle timeout after
/// five (a paused or partitioned peer is noticed within seconds).
pub fn quinn_configs(
    tls: &NodeTls,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TlsError> {
    let p = provider();
    // Both directions check the cluster's revocation list: a revoked
    // node's certificate fails the handshake whether it dials or accepts.
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&tls.ca)?), p.clone())
            .with_crls(tls.crls.clone())
            .build()?;
    let server_verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots(&tls.ca)?),
        p.clone(),
    )
    .with_crls(tls.crls.clone())
    .build()?;
    let mut server = rustls::ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(tls.chain.clone(), tls.key.clone_key())?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    let mut client = rustls::ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_webpki_verifier(server_verifier)
        .with_client_auth_cert(tls.chain.clone(), tls.key.clone_key())?;
    client.alpn_protocols = vec![ALPN.to_vec()];

    let transport = Arc::new(transport());
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(server).map_err(|e| TlsError::Quic(e.to_string()))?,
    ));
    sc.transport_config(transport.clone());
    let mut cc = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(client).map_err(|e| TlsError::Quic(e.to_string()))?,
    ));
    cc.transport_config(transport);
    Ok((sc, cc))
}

fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(std::time::Duration::from_millis(1_000)));
    if let Ok(idle) = quinn::IdleTimeout::try_from(std::time::Duration::from_millis(5_000)) {
        t.max_idle_timeout(Some(idle));
    }
    // Every stream is a task and a buffer here: a peer may keep only so
    // many open (pushes are sent one at a time per link; requests are few).
    t.max_concurrent_uni_streams(32u32.into());
    t.max_concurrent_bidi_streams(32u32.into());
    // What a peer may have in flight to us, unread: per stream and in all.
    t.stream_receive_window((4u32 << 20).into());
    t.receive_window((16u32 << 20).into());
    t
}

/// The node id a connected peer's certificate names (its DNS SAN).
pub fn peer_node_id(conn: &quinn::Connection) -> Option<NodeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    let der = certs.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(d) => NodeId::new(d).ok(),
        _ => None,
    })
}
