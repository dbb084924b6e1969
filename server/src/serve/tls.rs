//! The server's RA-TLS identity: a key made in memory at start (it never
//! touches disk), evidence bound to it, and a certificate carrying that
//! evidence, for the names clients will use.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use talaria_attest::ratls::AttestedIdentity;
use talaria_attest::{Attester, TeeKind};

use super::args::ServeArgs;
use super::attestation::AttestationService;

/// What TLS termination needs: the rustls config for the accept loop and
/// the attestation endpoint's state.
pub struct TlsEdge {
    pub config: Arc<rustls::ServerConfig>,
    pub attestation: AttestationService,
}

/// The names the certificate is valid for: loopback, `--host`, and every
/// `--tls-name`, without repeats. An unspecified address (0.0.0.0, ::) is
/// nobody's name and is left out.
pub fn certificate_names(host: &str, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let host_is_unspecified = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
    let candidates = (!host_is_unspecified).then_some(host).into_iter().chain(extra.iter().map(String::as_str));
    for n in candidates {
        let n = n.trim().trim_start_matches('[').trim_end_matches(']');
        if !n.is_empty() && !names.iter().any(|m| m.eq_ignore_ascii_case(n)) {
            names.push(n.to_string());
        }
    }
    names
}

/// Builds the attester and the identity, logs what a client should expect
/// (key hash, attestation kind), and writes the certificate to
/// `--cert-out`.
pub fn prepare(args: &ServeArgs) -> anyhow::Result<TlsEdge> {
    let attester: Arc<dyn Attester> = Arc::from(args.backend.attestation.build().context("starting the attester")?);
    let names = certificate_names(&args.host, &args.edge.tls_names);
    let identity = AttestedIdentity::generate(attester.as_ref(), &names).context("making the RA-TLS certificate")?;
    let cert_pem = identity.cert_pem();
    let attestation = AttestationService::new(attester.clone(), cert_pem.clone(), identity.spki_der());
    tracing::info!(
        "TLS: fresh in-memory key, SPKI sha256 {} | attestation {} | certificate names {}",
        attestation.key_sha256,
        kind_name(attester.kind()),
        names.join(", ")
    );
    if attester.kind() == TeeKind::Simulated {
        tracing::warn!("{}", SIMULATED_BANNER);
    }
    if let Some(path) = &args.edge.cert_out {
        std::fs::write(path, &cert_pem).with_context(|| format!("writing the certificate to {}", path.display()))?;
    }
    // The accept loop speaks HTTP/1.1 only: say so in ALPN, so clients
    // that prefer h2 (curl) do not try it.
    let mut config = (*identity.server_config()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsEdge { config: Arc::new(config), attestation })
}

fn kind_name(k: TeeKind) -> &'static str {
    match k {
        TeeKind::SevSnp => "SEV-SNP",
        TeeKind::Tdx => "TDX",
        TeeKind::Simulated => "simulated",
    }
}

const SIMULATED_BANNER: &str = "
################################################################
#  INSECURE: SIMULATED ATTESTATION                             #
#  This server is not running in a verified TEE. Its evidence  #
#  is signed by a published test key and proves nothing: any   #
#  host can forge it. Verifiers refuse it unless given         #
#  --allow-simulated. Development and CI only.                 #
################################################################";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_loopback_host_and_extras_once() {
        assert_eq!(certificate_names("127.0.0.1", &[]), ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(certificate_names("0.0.0.0", &["api.example".into()]), ["localhost", "127.0.0.1", "::1", "api.example"]);
        assert_eq!(
            certificate_names("10.0.0.5", &["LOCALHOST".into(), "[fd00::1]".into(), "10.0.0.5".into()]),
            ["localhost", "127.0.0.1", "::1", "10.0.0.5", "fd00::1"]
        );
    }
}
