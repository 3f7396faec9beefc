//! A self-contained partner setup for the compose stack: a CA, a server
//! certificate for `mock-suppliers`, a bearer token for GA and an OAuth2
//! client secret for JT, and the provider's suppliers file pointing at them.
//! Made once into a shared directory (kept across restarts), so
//! `docker compose up` needs nothing prepared beforehand.
//!
//! The directory holds demo credentials readable by the stack's services;
//! real partners' secrets belong in a secret store, not here.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use timetable::rng::Rng;

/// The MOCK_* settings the generated files imply.
pub struct PartnerPki {
    /// `MOCK_TLS_CERT_FILE`.
    pub cert_file: String,
    /// `MOCK_TLS_KEY_FILE`.
    pub key_file: String,
    /// `MOCK_BEHAVIOUR`: GA demands the bearer token, JT the OAuth2 client.
    pub behaviour: String,
}

/// Makes the files in `dir` unless they exist, and returns the settings.
pub fn ensure(dir: &Path, https_port: u16) -> Result<PartnerPki, String> {
    let path = |name: &str| dir.join(name).to_str().unwrap_or_default().to_owned();
    if !dir.join("suppliers.toml").is_file() {
        make(dir, https_port).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map(|s| s.trim().to_owned())
            .map_err(|e| format!("{}: {e}", path(name)))
    };
    let behaviour = serde_json::json!({
        "GA": {"bearer": read("ga.token")?},
        "JT": {"oauth": {"client_id": "flight-search", "client_secret": read("jt.secret")?,
                         "token_lifetime_ms": 3_600_000}},
    });
    Ok(PartnerPki {
        cert_file: path("mock.pem"),
        key_file: path("mock.key"),
        behaviour: behaviour.to_string(),
    })
}

fn make(dir: &Path, https_port: u16) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(|x| e(&x))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "flight-search demo partner CA");
    let ca_key = KeyPair::generate().map_err(|x| e(&x))?;
    let ca = ca_params.self_signed(&ca_key).map_err(|x| e(&x))?;
    let issuer = Issuer::new(ca_params, ca_key);
    let server_params =
        CertificateParams::new(vec!["mock-suppliers".to_owned()]).map_err(|x| e(&x))?;
    let server_key = KeyPair::generate().map_err(|x| e(&x))?;
    let server = server_params
        .signed_by(&server_key, &issuer)
        .map_err(|x| e(&x))?;
    let mut rng = Rng::from_entropy();
    let mut secret = || format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    let base = format!("https://mock-suppliers:{https_port}");
    let plain = |code: &str, style: &str| {
        format!(
            "[[supplier]]\ncode = \"{code}\"\nstyle = \"{style}\"\n\
             base_url = \"http://mock-suppliers:8090/{}\"\nairlines = [\"{code}\"]\n\n",
            code.to_ascii_lowercase()
        )
    };
    let suppliers = format!(
        "# Made by mock-suppliers --partner-pki: GA over HTTPS with a bearer token,\n\
         # JT over HTTPS with OAuth2 client credentials, the others over HTTP.\n\n\
         [[supplier]]\ncode = \"GA\"\nname = \"Garuda Indonesia\"\nstyle = \"flights\"\n\
         base_url = \"{base}/ga\"\nairlines = [\"GA\"]\nca_file = \"{ca}\"\n\
         [supplier.auth]\ntype = \"bearer\"\nsecret_file = \"{token}\"\n\n\
         [[supplier]]\ncode = \"JT\"\nname = \"Lion Air\"\nstyle = \"offers\"\n\
         base_url = \"{base}/jt\"\nairlines = [\"JT\"]\nca_file = \"{ca}\"\n\
         [supplier.auth]\ntype = \"oauth2\"\ntoken_url = \"{base}/jt/oauth/token\"\n\
         client_id = \"flight-search\"\nclient_secret_file = \"{jt}\"\n\n{}{}{}{}",
        plain("QZ", "offers"),
        plain("ID", "flights"),
        plain("QG", "flights"),
        plain("SJ", "offers"),
        ca = dir.join("ca.pem").display(),
        token = dir.join("ga.token").display(),
        jt = dir.join("jt.secret").display(),
    );
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).map_err(|x| e(&x));
    write("ca.pem", &ca.pem())?;
    write("mock.pem", &server.pem())?;
    write("mock.key", &server_key.serialize_pem())?;
    write("ga.token", &secret())?;
    write("jt.secret", &secret())?;
    // Last: its presence says the set is complete.
    write("suppliers.toml", &suppliers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_is_made_once_and_parses_as_settings() {
        let dir = std::env::temp_dir().join(format!("partner-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = ensure(&dir, 8443).unwrap();
        let token = std::fs::read_to_string(dir.join("ga.token")).unwrap();
        let again = ensure(&dir, 8443).unwrap();
        assert_eq!(first.behaviour, again.behaviour, "kept across restarts");
        assert!(first.behaviour.contains(&token));
        let patches: std::collections::BTreeMap<String, crate::behaviour::BehaviourPatch> =
            serde_json::from_str(&first.behaviour).unwrap();
        assert_eq!(patches.len(), 2);
        let files = crate::https::TlsFiles {
            addr: "127.0.0.1:0".parse().unwrap(),
            cert_file: first.cert_file,
            key_file: first.key_file,
            client_ca_file: None,
            http2: true,
        };
        assert!(crate::https::acceptor(&files).is_ok());
        let toml = std::fs::read_to_string(dir.join("suppliers.toml")).unwrap();
        assert!(toml.contains("https://mock-suppliers:8443/ga") && !toml.contains(&token));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
