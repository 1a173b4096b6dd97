//! Certificate Transparency: SCTs (RFC 6962 §3) checked against a log list the user supplies
//! (the public v3 log-list JSON format: `log_list.json`), and the policy on how many a
//! certificate needs.
//!
//! Policy (Apple's and Chrome's, which agree on this): a certificate valid for 180 days or less
//! needs 2 SCTs, a longer one 3, from logs of at least 2 distinct operators, each from a log
//! that was usable (or read-only, or retired after the SCT was issued) when it was issued, and
//! issued no later than the verify time. A list older than 70 days (Chrome's staleness
//! threshold) is stale: CT is then not enforced (see [`crate::CtRequirement`]) and the
//! evaluation says so in a [`crate::Note`], never silently.
//!
//! Where a list comes from: [`installed`] finds the one [`save`] wrote (after checking its
//! signature with [`verify_signature`] against [`GOOGLE_LOG_LIST_KEY`]), or a packaged one.
//!
//! SCTs come from the leaf's embedded extension (precertificate SCTs, verified against the TBS
//! with the SCT extension taken out and the issuer's key hash), and from the TLS extension or
//! a stapled OCSP response when a caller has them (X.509 entries, verified against the leaf).

use std::collections::BTreeSet;

use rustls_pki_types::SignatureVerificationAlgorithm;
use serde::Serialize;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::cert::sha256;
use crate::der::{der, tlv};

/// The SCT list extension (RFC 6962 §3.3): 1.3.6.1.4.1.11129.2.4.2, DER-encoded OID.
const SCT_EXTENSION_OID: &[u8] =
    &[0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02];

/// Days after which a log list is stale.
pub const STALE_AFTER_DAYS: i64 = 70;

/// The key Google signs its published log lists with (`log_list.sig`, RSA PKCS#1 v1.5 over
/// SHA-256), as published at <https://www.gstatic.com/ct/log_list/v3/log_list_pubkey.pem>.
/// Checked against a signed v3 list in the tests' data.
pub const GOOGLE_LOG_LIST_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAsu0BHGnQ++W2CTdyZyxv
HHRALOZPlnu/VMVgo2m+JZ8MNbAOH2cgXb8mvOj8flsX/qPMuKIaauO+PwROMjiq
fUpcFm80Kl7i97ZQyBDYKm3MkEYYpGN+skAR2OebX9G2DfDqFY8+jUpOOWtBNr3L
rmVcwx+FcFdMjGDlrZ5JRmoJ/SeGKiORkbbu9eY1Wd0uVhz/xI5bQb0OgII7hEj+
i/IPbJqOHgB8xQ5zWAJJ0DmG+FM6o7gk403v6W3S8qRYiR84c50KppGwe4YqSMkF
bLDleGQWLoaDSpEWtESisb4JiLaY4H+Kk0EyAhPSb+49JfUozYl+lf7iFN3qRq/S
IXXTh6z0S7Qa8EYDhKGCrpI03/+qprwy+my6fpWHi6aUIk4holUCmWvFxZDfixox
K0RlqbFDl2JXMBquwlQpm8u5wrsic1ksIv9z8x9zh4PJqNpCah0ciemI3YGRQqSe
/mRRXBiSn9YQBUPcaeqCYan+snGADFwHuXCd9xIAdFBolw9R9HTedHGUfVXPJDiF
4VusfX6BRR/qaadB+bqEArF/TzuDUr6FvOR4o8lUUxgLuZ/7HO+bHnaPFKYHHSm+
+z1lVDhhYuSZ8ax3T0C3FZpb7HMjZtpEorSV5ElKJEJwrhrBCMOD8L01EoSPrGlS
1w22i9uGHMn/uGQKo28u7AsCAwEAAQ==
-----END PUBLIC KEY-----
";

/// Where Google publishes the list Chrome uses; its signature is beside it, `log_list.sig`.
pub const GOOGLE_LOG_LIST_URL: &str = "https://www.gstatic.com/ct/log_list/v3/log_list.json";

/// Checks `signature` over `list` (the file's exact bytes) with the RSA key in `key_pem` (a
/// PEM `PUBLIC KEY`, i.e. SubjectPublicKeyInfo), as Google signs its lists.
pub fn verify_signature(list: &[u8], signature: &[u8], key_pem: &str) -> Result<(), CtError> {
    let bad = |why: &str| CtError::Signature(why.to_owned());
    let body: String = key_pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    let spki = base64(&body).ok_or_else(|| bad("the key is not a PEM public key"))?;
    let (_, spki) = SubjectPublicKeyInfo::from_der(&spki)
        .map_err(|_| bad("the key is not a SubjectPublicKeyInfo"))?;
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256
        .verify_signature(&spki.subject_public_key.data, list, signature)
        .map_err(|_| bad("the signature does not verify with the log-list key"))
}

/// The places a log list is looked for, in order: `$NW_CT_LOG_LIST` alone when it is set;
/// otherwise the one [`save`] writes ([`saved_path`]), then a packaged
/// `/usr/share/nwkit/ct/log_list.json`.
pub fn locations() -> Vec<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("NW_CT_LOG_LIST").filter(|p| !p.is_empty()) {
        return vec![p.into()];
    }
    vec![saved_path(), "/usr/share/nwkit/ct/log_list.json".into()]
}

/// Where [`save`] keeps the list: `$XDG_STATE_HOME/nwkit/ct/log_list.json`, else
/// `~/.local/state/nwkit/ct/log_list.json` (as the transfer store).
pub fn saved_path() -> std::path::PathBuf {
    let base =
        std::env::var_os("XDG_STATE_HOME").map(std::path::PathBuf::from).unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map_or_else(|| std::path::PathBuf::from("/tmp"), std::path::PathBuf::from);
            home.join(".local/state")
        });
    base.join("nwkit/ct/log_list.json")
}

/// The first list among [`locations`] that exists, read: `None` when there is none. A file
/// that exists but cannot be read or parsed is returned as its error, for the caller to say so.
pub fn installed() -> Option<(std::path::PathBuf, Result<LogList, crate::TrustError>)> {
    let path = locations().into_iter().find(|p| p.exists())?;
    let list = LogList::from_file(&path);
    Some((path, list))
}

/// The [`installed`] list, read once per process: `None` when there is none, or an error
/// saying why the one there cannot be used.
fn read_once() -> &'static Option<Result<std::sync::Arc<LogList>, crate::TrustError>> {
    static LIST: std::sync::OnceLock<Option<Result<std::sync::Arc<LogList>, crate::TrustError>>> =
        std::sync::OnceLock::new();
    LIST.get_or_init(|| installed().map(|(_, list)| list.map(std::sync::Arc::new)))
}

/// The [`installed`] list, read once per process and shared: what default trust checks SCTs
/// against. `None` when there is none or it cannot be used ([`shared_problem`] says why); CT
/// then goes unenforced, with a note on each evaluation.
pub fn shared() -> Option<std::sync::Arc<LogList>> {
    read_once().as_ref()?.as_ref().ok().cloned()
}

/// Why the installed list is not used, when one is there but cannot be read or parsed.
pub fn shared_problem() -> Option<&'static crate::TrustError> {
    read_once().as_ref()?.as_ref().err()
}

/// Checks `list` (signed by `key_pem`) and writes it to `path` atomically (a temporary file
/// beside it, renamed over it), creating the directory. Returns the parsed list.
pub fn save(
    list: &[u8],
    signature: &[u8],
    key_pem: &str,
    path: &std::path::Path,
) -> Result<LogList, crate::TrustError> {
    let file = |why: String| crate::TrustError::File { path: path.display().to_string(), why };
    verify_signature(list, signature, key_pem).map_err(|e| file(e.to_string()))?;
    let parsed = LogList::from_json(list).map_err(|e| file(e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| file(format!("cannot create its directory: {e}")))?;
    }
    crate::files::replace(path, list, 0o644).map_err(|e| file(format!("cannot write it: {e}")))?;
    Ok(parsed)
}

/// Why CT input could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CtError {
    /// The log list could not be read.
    #[error("the log list is not valid v3 log-list JSON: {0}")]
    LogList(String),
    /// The log list's signature does not verify.
    #[error("the log list's signature is refused: {0}")]
    Signature(String),
    /// An SCT list could not be read.
    #[error("the SCT list is malformed: {0}")]
    SctList(String),
    /// The certificate could not be taken apart to rebuild what an SCT signed.
    #[error("the certificate's DER cannot be taken apart: {0}")]
    Der(String),
}

/// A log's state, as the list says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogState {
    /// Applied for inclusion; its SCTs do not count.
    Pending,
    /// Qualified: its SCTs count.
    Qualified,
    /// Usable: its SCTs count.
    Usable,
    /// Read-only: SCTs from before it froze count.
    ReadOnly,
    /// Retired: SCTs from before its retirement count.
    Retired,
    /// Rejected: its SCTs never count.
    Rejected,
}

/// One log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Log {
    /// The operator's name.
    pub operator: String,
    /// The log's description.
    pub description: String,
    /// SHA-256 of its key.
    #[serde(skip)]
    pub id: [u8; 32],
    /// SubjectPublicKeyInfo, DER.
    #[serde(skip)]
    pub key: Vec<u8>,
    /// Its state.
    pub state: LogState,
    /// When it entered that state (Unix seconds).
    pub since: i64,
}

/// The log list: when it was made, and its logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogList {
    /// When the list was made (Unix seconds).
    pub timestamp: i64,
    /// Its logs.
    pub logs: Vec<Log>,
}

/// The most a log-list file may hold: the published list is about 100 KiB.
pub const LOG_LIST_FILE_LIMIT: u64 = 16 << 20;

impl LogList {
    /// Reads and parses a v3 log-list file, refusing one larger than
    /// [`LOG_LIST_FILE_LIMIT`].
    pub fn from_file(path: &std::path::Path) -> Result<Self, crate::TrustError> {
        let file = |why: String| crate::TrustError::File { path: path.display().to_string(), why };
        let bytes =
            crate::anchors::read_limited(path, LOG_LIST_FILE_LIMIT, "CT log list").map_err(file)?;
        Self::from_json(&bytes).map_err(|e| file(e.to_string()))
    }

    /// Parses the v3 JSON (`version`, `log_list_timestamp`, `operators[].logs[]` with
    /// `log_id`, `key` (base64 SPKI), `state`).
    pub fn from_json(text: &[u8]) -> Result<Self, CtError> {
        let bad = |why: &str| CtError::LogList(why.to_owned());
        let v: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| CtError::LogList(e.to_string()))?;
        let timestamp = v["log_list_timestamp"]
            .as_str()
            .ok_or_else(|| bad("no log_list_timestamp"))
            .and_then(|t| crate::time::parse_rfc3339(t).map_err(CtError::LogList))?;
        let mut logs = Vec::new();
        let mut seen = 0;
        for op in v["operators"].as_array().ok_or_else(|| bad("no operators array"))? {
            let operator = op["name"].as_str().unwrap_or("(unnamed operator)").to_owned();
            for log in op["logs"].as_array().into_iter().flatten() {
                seen += 1;
                let key = base64(log["key"].as_str().ok_or_else(|| bad("a log has no key"))?)
                    .ok_or_else(|| bad("a log's key is not base64"))?;
                let id = base64(log["log_id"].as_str().ok_or_else(|| bad("a log has no log_id"))?)
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| bad("a log_id is not 32 bytes of base64"))?;
                if sha256(&key) != id {
                    return Err(bad("a log_id is not the SHA-256 of its key"));
                }
                // The schema makes `state` optional (Google's all_logs_list has logs that never
                // applied to Chrome): a log without a known state is left out, so SCTs from it
                // never count.
                let Some((state, since)) = state(&log["state"]) else { continue };
                logs.push(Log {
                    operator: operator.clone(),
                    description: log["description"].as_str().unwrap_or_default().to_owned(),
                    id,
                    key,
                    state,
                    since,
                });
            }
        }
        if logs.is_empty() && seen > 0 {
            return Err(bad(
                "no log has a known state (pending, qualified, usable, readonly, retired, rejected)",
            ));
        }
        Ok(Self { timestamp, logs })
    }

    /// Days old at `at`.
    pub fn age_days(&self, at: i64) -> i64 {
        (at - self.timestamp).div_euclid(86_400)
    }

    fn log(&self, id: &[u8; 32]) -> Option<&Log> {
        self.logs.iter().find(|l| &l.id == id)
    }
}

fn state(v: &serde_json::Value) -> Option<(LogState, i64)> {
    let obj = v.as_object()?;
    let (name, detail) = obj.iter().next()?;
    let state = match name.as_str() {
        "pending" => LogState::Pending,
        "qualified" => LogState::Qualified,
        "usable" => LogState::Usable,
        "readonly" => LogState::ReadOnly,
        "retired" => LogState::Retired,
        "rejected" => LogState::Rejected,
        _ => return None,
    };
    let since = crate::time::parse_rfc3339(detail["timestamp"].as_str()?).ok()?;
    Some((state, since))
}

/// One Signed Certificate Timestamp (RFC 6962 §3.2), version 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sct {
    /// The log's id: SHA-256 of its key.
    pub log_id: [u8; 32],
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The SCT's extensions (usually empty).
    pub extensions: Vec<u8>,
    /// TLS SignatureAndHashAlgorithm: hash (4 = SHA-256), signature (1 RSA, 3 ECDSA).
    pub hash: u8,
    /// The signature algorithm (see `hash`).
    pub signature_alg: u8,
    /// The signature.
    pub signature: Vec<u8>,
}

/// Parses a TLS-encoded `SignedCertificateTimestampList` (RFC 6962 §3.3). SCTs of a version
/// other than 1 are skipped, as the RFC asks.
pub fn parse_sct_list(bytes: &[u8]) -> Result<Vec<Sct>, CtError> {
    let bad = |why: &str| CtError::SctList(why.to_owned());
    let mut r = Reader(bytes);
    let list = r.vec16().ok_or_else(|| bad("truncated list length"))?;
    if !r.0.is_empty() {
        return Err(bad("bytes after the list"));
    }
    let mut list = Reader(list);
    let mut out = Vec::new();
    while !list.0.is_empty() {
        let one = list.vec16().ok_or_else(|| bad("truncated SCT"))?;
        if one.is_empty() {
            return Err(bad("an empty SCT"));
        }
        let mut s = Reader(one);
        let version = s.u8().ok_or_else(|| bad("truncated SCT"))?;
        if version != 0 {
            continue;
        }
        let sct = (|| {
            let log_id = <[u8; 32]>::try_from(s.take(32)?).ok()?;
            let timestamp = u64::from_be_bytes(s.take(8)?.try_into().ok()?);
            let extensions = s.vec16()?.to_vec();
            let (hash, signature_alg) = (s.u8()?, s.u8()?);
            let signature = s.vec16()?.to_vec();
            s.0.is_empty().then_some(Sct {
                log_id,
                timestamp,
                extensions,
                hash,
                signature_alg,
                signature,
            })
        })()
        .ok_or_else(|| bad("a malformed SCT"))?;
        out.push(sct);
    }
    Ok(out)
}

/// Serialises SCTs as a `SignedCertificateTimestampList` (for test logs and round trips).
pub fn encode_sct_list(scts: &[Sct]) -> Vec<u8> {
    let mut list = Vec::new();
    for s in scts {
        let mut one = vec![0u8];
        one.extend_from_slice(&s.log_id);
        one.extend_from_slice(&s.timestamp.to_be_bytes());
        push16(&mut one, &s.extensions);
        one.extend_from_slice(&[s.hash, s.signature_alg]);
        push16(&mut one, &s.signature);
        push16(&mut list, &one);
    }
    let mut out = Vec::new();
    push16(&mut out, &list);
    out
}

/// What an SCT signs (RFC 6962 §3.2 `digitally-signed` struct).
#[derive(Debug, Clone, Copy)]
pub enum Entry<'a> {
    /// The certificate itself (SCTs from TLS or OCSP).
    X509(&'a [u8]),
    /// A precertificate: the issuer's key hash and the TBS without the SCT extension.
    /// A precertificate: the issuer's key hash and the TBS without the SCT extension.
    Precert {
        /// SHA-256 of the issuer's SubjectPublicKeyInfo.
        issuer_key_hash: [u8; 32],
        /// The TBSCertificate without the SCT list extension.
        tbs: &'a [u8],
    },
}

/// The bytes a log signs for `entry` at `timestamp` with `extensions`.
pub fn signed_data(entry: Entry<'_>, timestamp: u64, extensions: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8, 0u8]; // v1, certificate_timestamp
    out.extend_from_slice(&timestamp.to_be_bytes());
    match entry {
        Entry::X509(cert) => {
            out.extend_from_slice(&[0, 0]);
            push24(&mut out, cert);
        }
        Entry::Precert { issuer_key_hash, tbs } => {
            out.extend_from_slice(&[0, 1]);
            out.extend_from_slice(&issuer_key_hash);
            push24(&mut out, tbs);
        }
    }
    push16(&mut out, extensions);
    out
}

/// The leaf's embedded SCT list, if it has the extension.
pub fn embedded(leaf: &[u8]) -> Result<Option<Vec<Sct>>, CtError> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf)
        .map_err(|e| CtError::Der(e.to_string()))?;
    let Some(ext) =
        cert.extensions().iter().find(|e| e.oid.to_id_string() == "1.3.6.1.4.1.11129.2.4.2")
    else {
        return Ok(None);
    };
    // extnValue holds an OCTET STRING whose content is the TLS-encoded list.
    let (tag, content, rest) =
        tlv(ext.value).ok_or_else(|| CtError::SctList("not an OCTET STRING".into()))?;
    if tag != 0x04 || !rest.is_empty() {
        return Err(CtError::SctList("the extension is not one OCTET STRING".into()));
    }
    parse_sct_list(content).map(Some)
}

/// The precertificate TBS a log signed: the leaf's TBSCertificate with the SCT list extension
/// removed (RFC 6962 §3.2), re-encoded.
pub fn precert_tbs(leaf: &[u8]) -> Result<Vec<u8>, CtError> {
    let bad = |why: &str| CtError::Der(why.to_owned());
    let (tag, cert, _) = tlv(leaf).ok_or_else(|| bad("no certificate SEQUENCE"))?;
    let (tbs_tag, tbs, _) = tlv(cert).ok_or_else(|| bad("no TBSCertificate"))?;
    if tag != 0x30 || tbs_tag != 0x30 {
        return Err(bad("not a certificate"));
    }
    let mut out_fields = Vec::new();
    let mut rest = tbs;
    while !rest.is_empty() {
        let (t, content, next) = tlv(rest).ok_or_else(|| bad("a truncated TBS field"))?;
        let whole = &rest[..rest.len() - next.len()];
        if t == 0xa3 {
            let (seq_tag, exts, _) = tlv(content).ok_or_else(|| bad("bad extensions"))?;
            if seq_tag != 0x30 {
                return Err(bad("extensions are not a SEQUENCE"));
            }
            let mut kept = Vec::new();
            let mut e = exts;
            while !e.is_empty() {
                let (_, ext, after) = tlv(e).ok_or_else(|| bad("a truncated extension"))?;
                if !ext.starts_with(SCT_EXTENSION_OID) {
                    kept.extend_from_slice(&e[..e.len() - after.len()]);
                }
                e = after;
            }
            out_fields.extend(der(0xa3, &der(0x30, &kept)));
        } else {
            out_fields.extend_from_slice(whole);
        }
        rest = next;
    }
    Ok(der(0x30, &out_fields))
}

/// Whether `sct` is a valid signature by `log` over `entry`.
pub fn verify(sct: &Sct, entry: Entry<'_>, log: &Log) -> bool {
    let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(&log.key) else { return false };
    let alg: &dyn SignatureVerificationAlgorithm = match (sct.hash, sct.signature_alg) {
        (4, 3) => webpki::aws_lc_rs::ECDSA_P256_SHA256,
        (4, 1) => webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
        _ => return false,
    };
    let message = signed_data(entry, sct.timestamp, &sct.extensions);
    alg.verify_signature(&spki.subject_public_key.data, &message, &sct.signature).is_ok()
}

/// What CT concluded about a leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// SCTs that verified from logs that counted at their time.
    pub valid: usize,
    /// How many valid SCTs the certificate's lifetime calls for.
    pub required: usize,
    /// Distinct operators among the valid ones.
    pub operators: usize,
    /// SCTs that did not count, each with why.
    pub rejected: Vec<String>,
}

impl Outcome {
    /// Enough valid SCTs, from at least two operators.
    pub fn satisfied(&self) -> bool {
        self.valid >= self.required && self.operators >= 2
    }
}

/// Judges a leaf's SCTs: embedded ones against `issuer_spki` (the issuer's
/// SubjectPublicKeyInfo DER), and `extra` (from TLS or OCSP) against the leaf itself.
pub fn check(
    leaf: &[u8],
    issuer_spki: &[u8],
    extra: &[Sct],
    list: &LogList,
    at: i64,
    lifetime_days: i64,
) -> Outcome {
    let required = if lifetime_days <= 180 { 2 } else { 3 };
    let mut outcome = Outcome { valid: 0, required, operators: 0, rejected: Vec::new() };
    let issuer_key_hash: [u8; 32] = sha256(issuer_spki).try_into().unwrap_or([0; 32]);
    let embedded = embedded(leaf).ok().flatten().unwrap_or_default();
    let tbs = if embedded.is_empty() { None } else { precert_tbs(leaf).ok() };
    let mut operators = BTreeSet::new();
    let candidates = embedded.iter().map(|s| (s, true)).chain(extra.iter().map(|s| (s, false)));
    for (sct, is_embedded) in candidates {
        let Some(log) = list.log(&sct.log_id) else {
            outcome.rejected.push("an SCT from a log not in the list".into());
            continue;
        };
        let issued = i64::try_from(sct.timestamp / 1000).unwrap_or(i64::MAX);
        if issued > at {
            outcome.rejected.push(format!("{}: issued after the verify time", log.description));
            continue;
        }
        let counts = match log.state {
            LogState::Usable | LogState::ReadOnly | LogState::Qualified => {
                log.since <= issued || log.state != LogState::Qualified
            }
            LogState::Retired => issued < log.since,
            LogState::Pending | LogState::Rejected => false,
        };
        if !counts {
            outcome.rejected.push(format!(
                "{}: the log did not count at the SCT's time ({:?})",
                log.description, log.state
            ));
            continue;
        }
        let entry = match (is_embedded, &tbs) {
            (true, Some(tbs)) => Entry::Precert { issuer_key_hash, tbs },
            (true, None) => continue,
            (false, _) => Entry::X509(leaf),
        };
        if verify(sct, entry, log) {
            outcome.valid += 1;
            operators.insert(log.operator.clone());
        } else {
            outcome.rejected.push(format!("{}: the signature does not verify", log.description));
        }
    }
    outcome.operators = operators.len();
    outcome
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let len = self.take(2)?;
        self.take(usize::from(u16::from_be_bytes([len[0], len[1]])))
    }
}

fn push16(out: &mut Vec<u8>, data: &[u8]) {
    let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&data[..usize::from(len)]);
}

fn push24(out: &mut Vec<u8>, data: &[u8]) {
    let len = u32::try_from(data.len()).unwrap_or(0).min(0x00ff_ffff);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&data[..len as usize]);
}

fn base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}
