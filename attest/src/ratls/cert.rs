//! Making self-signed certificates (rcgen) and reading them back (x509-parser).

use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair};

use crate::{AttestError, Evidence, VerifyError};

/// The RA-TLS evidence extension: 2.25.2845268213185027401.1, non-critical,
/// its extnValue holding `Evidence::to_bytes()` (JSON) as is.
///
/// 2845268213185027401 is the low 63 bits of the random UUID
/// 4de75fbc-f6b1-4d1b-a77c-6c5d719a9d49 (rcgen writes OID arcs as u64, so
/// the full 128-bit UUID arc of X.667 cannot be encoded); `.1` is version 1.
pub const EVIDENCE_OID: &[u64] = &[2, 25, 2845268213185027401, 1];
pub const EVIDENCE_OID_STR: &str = "2.25.2845268213185027401.1";

/// A fresh P-256 key made in memory.
pub fn fresh_key() -> Result<KeyPair, AttestError> {
    KeyPair::generate().map_err(|e| AttestError::Other(format!("generating a P-256 key: {e}")))
}

/// A self-signed certificate for `names` (DNS names or IP addresses),
/// carrying `evidence` in the RA-TLS extension when given.
pub fn self_signed(key: &KeyPair, names: &[String], common_name: &str, evidence: Option<&Evidence>) -> Result<Vec<u8>, AttestError> {
    let mut params = CertificateParams::new(names.to_vec()).map_err(|e| AttestError::Other(format!("certificate names {names:?}: {e}")))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    if let Some(ev) = evidence {
        params.custom_extensions.push(CustomExtension::from_oid_content(EVIDENCE_OID, ev.to_bytes()));
    }
    let cert = params.self_signed(key).map_err(|e| AttestError::Other(format!("signing the certificate: {e}")))?;
    Ok(cert.der().to_vec())
}

/// The SubjectPublicKeyInfo (DER) and the evidence extension's bytes, if any.
pub fn parse(cert_der: &[u8]) -> Result<(Vec<u8>, Option<Vec<u8>>), VerifyError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| VerifyError::Malformed(format!("certificate: {e}")))?;
    let spki = cert.public_key().raw.to_vec();
    let evidence = cert.extensions().iter().find(|x| x.oid.to_id_string() == EVIDENCE_OID_STR).map(|x| x.value.to_vec());
    Ok((spki, evidence))
}

/// `der` as one PEM block with `tag` (`CERTIFICATE`, `PRIVATE KEY`).
pub fn pem(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}
