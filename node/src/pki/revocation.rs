//! Certificate revocation: `concord init --revoke <id>` puts the node's
//! certificate on the cluster's revocation list (a CRL signed by the CA,
//! `data_dir/pki/revoked.crl`) and issues the node a new certificate. Every
//! node loads the CRL at start, and its peer verifiers — as server and as
//! client — refuse a certificate on it at the TLS handshake.
//!
//! The list of revoked serials is kept beside it (`revoked`, one
//! `<serial hex> <node> <unix seconds>` per line) so the CRL can be signed
//! again with every entry. Copy `revoked.crl` to every node and restart them
//! (one by one) to make a revocation take effect cluster-wide.

use std::fs;

use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, pem::PemObject};

use super::{PkiError, PkiPaths, io, write_private, ymd_after};

/// The serial number of a PEM certificate.
pub fn serial_of(pem: &[u8]) -> Option<Vec<u8>> {
    let der = CertificateDer::from_pem_slice(pem).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(cert.tbs_certificate.raw_serial().to_vec())
}

/// Whole days until a PEM certificate expires (negative once expired).
pub fn days_left(pem: &[u8]) -> Option<i64> {
    let der = CertificateDer::from_pem_slice(pem).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let end = cert.validity().not_after.timestamp();
    Some((end - crate::clock::now_secs() as i64).div_euclid(86_400))
}

fn parse_hex(t: &str) -> Option<Vec<u8>> {
    (0..t.len())
        .step_by(2)
        .map(|i| t.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Adds a serial to the list and signs the CRL again with the CA.
pub fn revoke(
    pki: &PkiPaths,
    node: &str,
    serial: &[u8],
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(), PkiError> {
    let list = pki.revoked_list();
    let mut text = fs::read_to_string(&list).unwrap_or_default();
    let hex: String = serial.iter().map(|b| format!("{b:02x}")).collect();
    if !text
        .lines()
        .any(|l| l.split(' ').next() == Some(hex.as_str()))
    {
        text.push_str(&format!("{hex} {node} {}\n", crate::clock::now_secs()));
    }
    write_private(&list, text.as_bytes())?;
    let date_after = |days: i64| {
        let (y, m, d) = ymd_after(days);
        rcgen::date_time_ymd(y, m, d)
    };
    let revoked: Vec<RevokedCertParams> = text
        .lines()
        .filter_map(|l| parse_hex(l.split(' ').next()?))
        .map(|s| RevokedCertParams {
            serial_number: SerialNumber::from_slice(&s),
            revocation_time: date_after(0),
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        })
        .collect();
    let crl = CertificateRevocationListParams {
        this_update: date_after(0),
        next_update: date_after(3650),
        crl_number: SerialNumber::from_slice(&crate::clock::now_secs().to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)?;
    write_private(&pki.crl(), crl.pem()?.as_bytes())?;
    Ok(())
}

/// The cluster's CRL, when there is one.
pub fn load_crls(pki: &PkiPaths) -> Result<Vec<CertificateRevocationListDer<'static>>, PkiError> {
    let p = pki.crl();
    if !p.exists() {
        return Ok(Vec::new());
    }
    let bytes = fs::read(&p).map_err(io(&p))?;
    let crl = CertificateRevocationListDer::from_pem_slice(&bytes).map_err(|_| PkiError::Pem {
        path: p,
        message: "no CRL in this PEM file".into(),
    })?;
    Ok(vec![crl])
}
