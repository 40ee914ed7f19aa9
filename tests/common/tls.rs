//! A certificate authority for tests: a CA, a server certificate for
//! 127.0.0.1 and localhost, and client certificates, as PEM files in a folder.
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

pub(crate) struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA's certificate (PEM).
    pub cert: PathBuf,
}

/// A certificate and its key, as files.
pub(crate) struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// `<dir>/<name>-ca.pem`.
    pub(crate) fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let cert = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&cert, issuer.pem()).unwrap();
        TestCa { issuer, cert }
    }

    /// `<dir>/<name>.pem` and `<dir>/<name>-key.pem` (0600), for `names` (DNS names or IP addresses).
    pub(crate) fn issue(&self, dir: &Path, name: &str, names: &[&str]) -> Identity {
        let identity = Identity { cert: dir.join(format!("{name}.pem")), key: dir.join(format!("{name}-key.pem")) };
        self.issue_to(identity, name, names)
    }

    /// A folder in the GnuTLS layout the NBD clients read (qemu's `tls-creds-x509,dir=`,
    /// libnbd's `tls-certificates=`): `ca-cert.pem` (this CA), `client-cert.pem`, `client-key.pem`.
    pub(crate) fn client_folder(&self, dir: &Path, name: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(&self.cert, dir.join("ca-cert.pem")).unwrap();
        let identity = Identity { cert: dir.join("client-cert.pem"), key: dir.join("client-key.pem") };
        self.issue_to(identity, name, &[name]);
        dir.to_path_buf()
    }

    fn issue_to(&self, identity: Identity, name: &str, names: &[&str]) -> Identity {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(&identity.cert, cert.pem()).unwrap();
        std::fs::write(&identity.key, key.serialize_pem()).unwrap();
        std::fs::set_permissions(&identity.key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        identity
    }
}
