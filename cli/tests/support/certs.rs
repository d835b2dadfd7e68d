//! Test certificates for the `joint` command's TLS tests and the tls example (included with
//! `#[path]`): in a temporary directory, removed on drop,
//! - `ca.pem` / `ca-key.pem`: a CA;
//! - `server.pem` / `server-key.pem`: a certificate for localhost and 127.0.0.1 it signed;
//! - `client.pem` / `client-key.pem`: a client certificate (CN=alice) it signed;
//! - `other-ca.pem`: a second CA nothing trusts.

#![allow(dead_code)]

use std::path::PathBuf;

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

pub struct TlsFiles {
    pub dir: PathBuf,
    /// The CA's certificate (DER), for clients that trust it.
    pub ca: Vec<u8>,
}

fn ca(cn: &str) -> (Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, cn);
    let key = KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

impl TlsFiles {
    /// The files in a fresh directory named after this process and `name`.
    pub fn new(name: &str) -> TlsFiles {
        let dir = std::env::temp_dir().join(format!("joint-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the certificate directory");
        let write = |file: &str, text: &str| std::fs::write(dir.join(file), text).expect("write a PEM file");
        let (ca_cert, ca_key) = ca("joint test CA");
        let (other_cert, _) = ca("another CA");
        write("ca.pem", &ca_cert.pem());
        write("ca-key.pem", &ca_key.serialize_pem());
        write("other-ca.pem", &other_cert.pem());
        for (file, cn, names) in [("server", "server", vec!["localhost".to_string(), "127.0.0.1".to_string()]), ("client", "alice", vec![])] {
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
            write(&format!("{file}.pem"), &cert.pem());
            write(&format!("{file}-key.pem"), &key.serialize_pem());
        }
        TlsFiles { dir, ca: ca_cert.der().to_vec() }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
