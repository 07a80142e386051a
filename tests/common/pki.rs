//! A test PKI made by the tests themselves: a CA, a server certificate for `localhost` and
//! `127.0.0.1` (and `::1`), one for another host name, and a client certificate, as PEM files
//! in a temporary directory that lives as long as the value.

#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::PathBuf;

pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA's certificate: what a client trusts (`keystone.ca_file`, `OS_CACERT`).
    pub ca: PathBuf,
    /// Server certificate and key for localhost, 127.0.0.1 and ::1.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Server certificate and key for `wrong.example` only (a host-name mismatch).
    pub wrong_cert: PathBuf,
    pub wrong_key: PathBuf,
    /// A client certificate the CA signed, for mutual TLS.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A second, unrelated CA (its certificate only): trusting it must not trust `cert`.
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("CA");
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    ips: &[std::net::IpAddr],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("names");
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("client"),
    );
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("leaf");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write PEM");
            p
        };
        let (ca_pem, issuer) = ca("statsgate test CA");
        let ips = [
            std::net::IpAddr::from([127, 0, 0, 1]),
            std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ];
        let (cert, key) = leaf(
            &issuer,
            &["localhost"],
            &ips,
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (wrong_cert, wrong_key) = leaf(
            &issuer,
            &["wrong.example"],
            &[],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            &issuer,
            &["statsd-client"],
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (other_pem, _) = ca("another CA");
        Pki {
            ca: write("ca.pem", &ca_pem),
            cert: write("server.pem", &cert),
            key: write("server.key", &key),
            wrong_cert: write("wrong.pem", &wrong_cert),
            wrong_key: write("wrong.key", &wrong_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client.key", &client_key),
            other_ca: write("other-ca.pem", &other_pem),
            dir,
        }
    }
}
