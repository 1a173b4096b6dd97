//! A small PKI made with `openssl` for OCSP tests, and OCSP responses from `openssl ocsp` (a
//! real responder's output).
//!
//! In a directory the caller owns: `ca.pem`/`ca.key` (an EC P-256 root), `leaf.pem`/`leaf.key`
//! (serial 0x1234, SAN `ok.example`, serverAuth, the common name the caller chose),
//! `resp.pem` (a responder the CA delegated to, id-kp-OCSPSigning) and `other.pem` (a sibling
//! leaf without that purpose).

use std::path::{Path, PathBuf};

use crate::LabError;

/// The PKI's files, in `dir`.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
}

/// Runs `openssl ARGS` in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) -> Result<(), LabError> {
    crate::require_tool("openssl", "openssl")?;
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(args).current_dir(dir);
    crate::process::output(cmd).map(drop)
}

/// Issues `NAME.pem` (its key in `NAME.key`, through `NAME.csr`) for `subject` from the CA in
/// `dir` (`ca.pem`, `ca.key`): the key made by `newkey` (openssl req's key options), signed
/// with `digest` (`-sha256`), with serial `serial` and the extensions in the file `ext`.
pub fn issue(
    dir: &Path,
    name: &str,
    newkey: &[&str],
    subject: &str,
    serial: &str,
    digest: &str,
    ext: &str,
) -> Result<(), LabError> {
    let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
    let mut req = vec!["req"];
    req.extend(newkey);
    req.extend(["-nodes", "-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(dir, &req)?;
    let sign = ["-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", serial, "-out", &pem];
    let mut x509 = vec!["x509", "-req", "-in", &csr];
    x509.extend(sign);
    x509.extend(["-days", "10", digest, "-extfile", ext]);
    openssl(dir, &x509)
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

impl Pki {
    /// Makes the CA and its three certificates in `dir` (which must exist); the leaf's subject
    /// is `/CN=leaf_cn`.
    pub fn new(dir: &Path, leaf_cn: &str) -> Result<Self, LabError> {
        let files = [
            (
                "ca.ext",
                "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n",
            ),
            (
                "leaf.ext",
                "subjectAltName=DNS:ok.example\nextendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n",
            ),
            ("resp.ext", "extendedKeyUsage=OCSPSigning\nauthorityKeyIdentifier=keyid\n"),
        ];
        for (name, text) in files {
            std::fs::write(dir.join(name), text)?;
        }
        let mut root = vec!["req", "-x509", "-nodes"];
        root.extend(EC);
        root.extend(["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=OCSP Root"]);
        root.extend(["-days", "30", "-sha256", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(dir, &root)?;
        let leaf_subject = format!("/CN={leaf_cn}");
        for (name, serial, ext, subject) in [
            ("leaf", "0x1234", "leaf.ext", leaf_subject),
            ("resp", "0x99", "resp.ext", "/CN=resp.example".to_owned()),
            ("other", "0x98", "leaf.ext", "/CN=other.example".to_owned()),
        ] {
            issue(dir, name, &EC, &subject, serial, "-sha256", ext)?;
        }
        Ok(Self { dir: dir.to_owned() })
    }

    /// `NAME` (`ca`, `leaf`, `resp`, `other`; with `.pem` or `.key`) in the PKI's directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// An OCSP response about the leaf, good or revoked, signed by `signer` (`ca`, `resp` or
    /// `other`), valid for a day from now, written to `NAME.der`; returns its path.
    pub fn response(&self, name: &str, revoked: bool, signer: &str) -> Result<PathBuf, LabError> {
        // One `openssl ca` index line: status, expiry, revocation date, serial, file, subject.
        let line = if revoked {
            "R\t351231235959Z\t260101000000Z\t1234\tunknown\t/CN=leaf\n"
        } else {
            "V\t351231235959Z\t\t1234\tunknown\t/CN=leaf\n"
        };
        std::fs::write(self.dir.join("index.txt"), line)?;
        let out = format!("{name}.der");
        let (cert, key) = (format!("{signer}.pem"), format!("{signer}.key"));
        openssl(
            &self.dir,
            &[
                "ocsp",
                "-index",
                "index.txt",
                "-rsigner",
                &cert,
                "-rkey",
                &key,
                "-CA",
                "ca.pem",
                "-issuer",
                "ca.pem",
                "-cert",
                "leaf.pem",
                "-respout",
                &out,
                "-ndays",
                "1",
            ],
        )?;
        Ok(self.dir.join(out))
    }
}
