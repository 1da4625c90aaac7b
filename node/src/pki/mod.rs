//! The cluster's trust material: a CA, one certificate per node (its name is
//! the node id), the cluster secrets that sign API tokens (`secrets`), and a
//! revocation list (`revocation`).
//!
//! `concord init` makes whatever is missing and leaves the rest alone, so it
//! is safe to run again; it also writes one bundle per node (CA, the node's
//! certificate and key, the secret, the CRL) to copy to that node's machine.
//! `--renew` issues every node a new certificate (they are valid for a
//! year), `--revoke <id>` revokes a node's certificate and issues it a new
//! one, `--rotate-secret` starts signing tokens with a new key. A node's
//! incarnation ledger is created together with its first certificate, so
//! that a node whose store is later wiped comes back as a new actor (see
//! `storage::incarnation`).
//!
//! Keys and secrets are readable by their owner only: `init` makes every
//! one it finds so (and says it did), and a node refuses to start on a key
//! or secret that group or others may read.

pub mod revocation;
pub mod secrets;

pub use secrets::{load_keys, load_secret, load_token_key};

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
    /// A key or secret that others may read.
    #[error(
        "{path} may be read by group or others (mode {mode:o}): run `chmod 600 {path}` (or `concord init`, which does)"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// `--revoke` named a node that is not in the configuration.
    #[error("no node {0} in the configuration to revoke")]
    UnknownNode(String),
}

/// Refuses a key or secret file that group or others may read.
pub fn check_private(path: &Path) -> Result<(), PkiError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path).map_err(io(path))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(PkiError::Permissions {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
    }
    Ok(())
}

/// Makes an existing key or secret readable by its owner only; true when
/// it had to.
fn tighten(path: &Path) -> Result<bool, PkiError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if !path.exists() {
            return Ok(false);
        }
        let mode = fs::metadata(path).map_err(io(path))?.permissions().mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io(path))?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// The civil date (y, m, d) of a day count since 1970-01-01 (Howard
/// Hinnant's algorithm).
fn civil(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

/// The date `days` days from today (UTC), as rcgen wants it.
pub(crate) fn ymd_after(days: i64) -> (i32, u8, u8) {
    civil((crate::clock::now_secs() / 86_400) as i64 + days)
}

/// How long a node certificate is valid.
pub const NODE_CERT_DAYS: i64 = 365;
/// How long the CA is valid.
pub const CA_DAYS: i64 = 3_650;

/// What `concord init` is asked to do besides making what is missing.
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    /// Issue every node a new certificate.
    pub renew: bool,
    /// Revoke these nodes' certificates and issue them new ones.
    pub revoke: Vec<String>,
    /// Sign tokens with a new key from now on.
    pub rotate_secret: bool,
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

    /// The certificate revocation list (PEM), signed by the CA.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("revoked.crl")
    }

    /// The revoked serials behind the CRL.
    pub fn revoked_list(&self) -> PathBuf {
        self.dir.join("revoked")
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
    /// Existing keys and secrets made readable by their owner only.
    pub tightened: Vec<PathBuf>,
    /// Nodes whose certificates were revoked.
    pub revoked: Vec<String>,
    /// The id of the new token key, when the secret was rotated.
    pub rotated: Option<String>,
    /// One bundle directory per node.
    pub bundles: Vec<PathBuf>,
}

/// Makes whatever is missing of the CA, the node certificates and the secret,
/// does what `opts` asks (renew, revoke, rotate), tightens the permissions of
/// existing keys and secrets, and writes a bundle per node. Idempotent
/// without options.
pub fn init(cfg: &ClusterConfig, opts: &InitOptions) -> Result<InitReport, PkiError> {
    let paths = PkiPaths::new(cfg.pki_dir());
    let mut report = InitReport::default();
    for id in &opts.revoke {
        if !cfg.nodes.iter().any(|n| n.id.as_str() == id) {
            return Err(PkiError::UnknownNode(id.clone()));
        }
    }
    // Keys and secrets from an earlier run (or copied in) keep their
    // permissions unless made private here.
    let mut private = vec![paths.ca_key(), paths.secret()];
    private.extend(cfg.nodes.iter().map(|n| paths.node_key(&n.id)));
    for p in private {
        if tighten(&p)? {
            report.tightened.push(p);
        }
    }
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
        let (y, m, d) = ymd_after(-1);
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = ymd_after(CA_DAYS);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let cert = params.self_signed(&key)?;
        write_private(&paths.ca_key(), key.serialize_pem().as_bytes())?;
        write_private(&paths.ca_cert(), cert.pem().as_bytes())?;
        report.created.extend([paths.ca_key(), paths.ca_cert()]);
        key
    };
    let ca_pem = fs::read_to_string(paths.ca_cert()).map_err(io(&paths.ca_cert()))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    if secrets::create(&paths)? {
        report.created.push(paths.secret());
    } else if opts.rotate_secret {
        let kid = secrets::rotate(&paths)?;
        report.rotated = Some(kid);
    }
    for id in &opts.revoke {
        let node = cfg.nodes.iter().find(|n| n.id.as_str() == id).map(|n| n.id);
        let Some(node) = node else { continue };
        let cert_path = paths.node_cert(&node);
        if let Ok(pem) = fs::read(&cert_path)
            && let Some(serial) = revocation::serial_of(&pem)
        {
            revocation::revoke(&paths, id, &serial, &issuer)?;
            report.revoked.push(id.clone());
        }
        // A new certificate below, for the node's new key.
        let _ = fs::remove_file(&cert_path);
        let _ = fs::remove_file(paths.node_key(&node));
    }
    for node in &cfg.nodes {
        let (cert_path, key_path) = (paths.node_cert(&node.id), paths.node_key(&node.id));
        let has_ledger = cfg
            .node_dir(&node.id)
            .join(crate::storage::incarnation::LEDGER)
            .exists();
        let has_cert = cert_path.exists() && key_path.exists();
        let first = !has_ledger && !has_cert;
        if opts.renew || !(cert_path.exists() && key_path.exists()) {
            let (cert, key) = node_certificate(&node.id, &issuer)?;
            write_private(&key_path, key.as_bytes())?;
            write_private(&cert_path, cert.as_bytes())?;
            report.created.extend([key_path.clone(), cert_path.clone()]);
        }
        if first {
            // A node made for the first time (or again, after its
            // directory was deleted): a new incarnation epoch, so it never
            // reuses the incarnations (and dots) of earlier lives.
            let epoch = take_epoch(&paths, &node.id)?;
            crate::storage::incarnation::create_ledger(&cfg.node_dir(&node.id), epoch).map_err(
                |source| PkiError::Io {
                    path: cfg.node_dir(&node.id),
                    source,
                },
            )?;
        }
        let bundle = cfg.data_dir.join("bundles").join(node.id.as_str());
        let mut files = vec![
            (paths.ca_cert(), "ca.pem".to_string()),
            (cert_path, format!("{}.pem", node.id)),
            (key_path, format!("{}.key", node.id)),
            (paths.secret(), "cluster.secret".to_string()),
        ];
        if paths.crl().exists() {
            files.push((paths.crl(), "revoked.crl".to_string()));
        }
        for (from, name) in files {
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
    // A random serial (to revoke it by) and a year of validity: a stolen
    // key stops working by itself, and `concord init --renew` replaces it.
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let (y, m, d) = ymd_after(-1);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd_after(NODE_CERT_DAYS);
    params.not_after = rcgen::date_time_ymd(y, m, d);
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
    /// The cluster's revocation list (empty: nothing revoked).
    pub crls: Vec<rustls::pki_types::CertificateRevocationListDer<'static>>,
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
    let key_bytes = read(pki.node_key(id))?;
    check_private(&pki.node_key(id))?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|_| pem_err(pki.node_key(id), "no private key in this PEM file"))?;
    Ok(NodeTls {
        ca,
        chain,
        key: Arc::new(key),
        crls: revocation::load_crls(pki)?,
    })
}
