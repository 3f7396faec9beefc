//! Throwaway certificate authorities for TLS tests: a CA made on the spot and
//! server certificates it signs for the names a test chooses.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A certificate authority that exists only for one test.
pub struct TestCa {
    /// The CA certificate, PEM: what a client is told to trust.
    pem: String,
    /// Signs server certificates.
    issuer: Issuer<'static, KeyPair>,
}

/// A server certificate and its private key, PEM.
pub struct ServerCertificate {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl TestCa {
    /// A new self-signed CA called `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate valid for `names` (host names or IP addresses).
    pub fn issue(&self, names: &[&str]) -> ServerCertificate {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "redis test server");
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign server");
        ServerCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}
