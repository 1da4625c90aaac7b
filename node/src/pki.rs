//! The cluster's trust material: a CA, one certificate per node (its name is
//! the node id), and the cluster secret that signs API tokens.
//!
//! `concord init` makes whatever is missing and leaves the rest alone, so it
//! is safe to run again; it also writes one bundle per node (CA, the node's
//! certificate and key, the secret) to copy to that node's machine. A node's
//! incarnation ledger is created together with its certificate, so that a
//! node whose store is later wiped comes back as a new actor (see
//! `storage::incarnation`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crdt_core::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::config::ClusterConfig;

/// Why trust material could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("making a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A PEM file holds no usable certificate or key.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The material is missing: run `concord init`.
    #[error("{0} is missing: run `concord init` first")]
    Missing(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a file durably and, for keys and secrets, readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Paths of one cluster's trust material.
#[derive(Clone, Debug)]
pub struct PkiPaths {
    dir: PathBuf,
}

impl PkiPaths {
    /// The material under `dir` (`data_dir/pki`).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA key.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// A node's certificate.
    pub fn node_cert(&self, id: &NodeId) -> PathBuf {
        self.dir.join(format!("{id}.pem"))
    }

    /// A node's key.
    pub fn node_key(&self, id: &NodeId) -> PathBuf {
        self.dir.join(format!("{id}.key"))
    }

    /// The cluster secret (hex) that signs API tokens.
    pub fn secret(&self) -> PathBuf {
        self.dir.join("cluster.secret")
    }

    /// The CA's record of incarnation epochs handed out per node.
    pub fn epochs(&self) -> PathBuf {
        self.dir.join("incarnations")
    }
}

/// Takes the next incarnation epoch of node `id` from the CA's record (see
/// `storage::incarnation`): 0 for a node never seen, one more each time its
/// certificate is made again.
fn take_epoch(paths: &PkiPaths, id: &NodeId) -> Result<u32, PkiError> {
    let path = paths.epochs();
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut epochs: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some((node, n)) = line.split_once('=')
            && let Ok(n) = n.trim().parse::<u32>()
        {
            epochs.insert(node.trim().to_string(), n);
        }
    }
    let epoch = epochs.get(id.as_str()).copied().unwrap_or(0);
    epochs.insert(id.to_string(), epoch.saturating_add(1));
    let out: String = epochs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    write_private(&path, out.as_bytes())?;
    Ok(epoch)
}

/// What `init` made.
#[derive(Debug, Default)]
pub struct InitReport {
    /// Files created (existing ones are listed nowhere: they were kept).
    pub created: Vec<PathBuf>,
    /// One bundle directory per node.
    pub bundles: Vec<PathBuf>,
}

/// Makes whatever is missing of the CA, the node certificates and the secret,
/// and writes a bundle per node. Idempotent.
pub fn init(cfg: &ClusterConfig) -> Result<InitReport, PkiError> {
    let paths = PkiPaths::new(cfg.pki_dir());
    let mut report = InitReport::default();
    let ca_key = if paths.ca_key().exists() && paths.ca_cert().exists() {
        let pem = fs::read_to_string(paths.ca_key()).map_err(io(&paths.ca_key()))?;
        KeyPair::from_pem(&pem)?
    } else {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(
            DnType::CommonName,
            format!("Concord cluster {} CA", cfg.name),
        );
        let cert = params.self_signed(&key)?;
        write_private(&paths.ca_key(), key.serialize_pem().as_bytes())?;
        write_private(&paths.ca_cert(), cert.pem().as_bytes())?;
        report.created.extend([paths.ca_key(), paths.ca_cert()]);
        key
    };
    let ca_pem = fs::read_to_string(paths.ca_cert()).map_err(io(&paths.ca_cert()))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    if !paths.secret().exists() {
        let secret: [u8; 32] = rand::random();
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&paths.secret(), hex.as_bytes())?;
        report.created.push(paths.secret());
    }
    for node in &cfg.nodes {
        let (cert_path, key_path) = (paths.node_cert(&node.id), paths.node_key(&node.id));
        if !(cert_path.exists() && key_path.exists()) {
            let (cert, key) = node_certificate(&node.id, &issuer)?;
            write_private(&key_path, key.as_bytes())?;
            write_private(&cert_path, cert.as_bytes())?;
            report.created.extend([key_path.clone(), cert_path.clone()]);
            // A new certificate: a new incarnation epoch, so a node made
            // again after its directory was deleted never reuses the
            // incarnations (and dots) of its earlier lives.
            let epoch = take_epoch(&paths, &node.id)?;
            crate::storage::incarnation::create_ledger(&cfg.node_dir(&node.id), epoch).map_err(
                |source| PkiError::Io {
                    path: cfg.node_dir(&node.id),
                    source,
                },
            )?;
        }
        let bundle = cfg.data_dir.join("bundles").join(node.id.as_str());
        for (from, name) in [
            (paths.ca_cert(), "ca.pem".to_string()),
            (cert_path, format!("{}.pem", node.id)),
            (key_path, format!("{}.key", node.id)),
            (paths.secret(), "cluster.secret".to_string()),
        ] {
            let bytes = fs::read(&from).map_err(io(&from))?;
            write_private(&bundle.join("pki").join(name), &bytes)?;
        }
        report.bundles.push(bundle);
    }
    Ok(report)
}

/// A certificate for one node: SAN = node id, for both server and client
/// authentication, signed by the cluster CA. Returns (cert PEM, key PEM).
pub fn node_certificate(
    id: &NodeId,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![id.to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, id.to_string());
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A node's TLS material, loaded.
pub struct NodeTls {
    /// The cluster CA's certificate.
    pub ca: CertificateDer<'static>,
    /// The node's certificate chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// The node's key.
    pub key: Arc<PrivateKeyDer<'static>>,
}

/// Loads a node's certificate, key and the CA.
pub fn load_node_tls(pki: &PkiPaths, id: &NodeId) -> Result<NodeTls, PkiError> {
    let read = |p: PathBuf| -> Result<Vec<u8>, PkiError> {
        if !p.exists() {
            return Err(PkiError::Missing(p));
        }
        fs::read(&p).map_err(io(&p))
    };
    let pem_err = |p: PathBuf, m: &str| PkiError::Pem {
        path: p,
        message: m.to_string(),
    };
    let ca = CertificateDer::from_pem_slice(&read(pki.ca_cert())?)
        .map_err(|_| pem_err(pki.ca_cert(), "no certificate in this PEM file"))?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read(pki.node_cert(id))?)
            .collect::<Result<_, _>>()
            .map_err(|_| pem_err(pki.node_cert(id), "unreadable certificate"))?;
    if chain.is_empty() {
        return Err(pem_err(
            pki.node_cert(id),
            "no certificate in this PEM file",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(pki.node_key(id))?)
        .map_err(|_| pem_err(pki.node_key(id), "no private key in this PEM file"))?;
    Ok(NodeTls {
        ca,
        chain,
        key: Arc::new(key),
    })
}

/// Loads the cluster secret (32 bytes, hex on disk).
pub fn load_secret(pki: &PkiPaths) -> Result<Vec<u8>, PkiError> {
    let p = pki.secret();
    if !p.exists() {
        return Err(PkiError::Missing(p));
    }
    let text = fs::read_to_string(&p).map_err(io(&p))?;
    let text = text.trim();
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    match bytes {
        Some(b) if b.len() >= 32 => Ok(b),
        _ => Err(PkiError::Pem {
            path: p,
            message: "the cluster secret must be at least 64 hex digits".into(),
        }),
    }
}
