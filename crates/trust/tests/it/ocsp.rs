//! Stapled OCSP responses made by `openssl ocsp` (a real responder's output): good, revoked,
//! tampered, signed by a delegated responder, signed by someone else; and evaluations that
//! carry them.

use std::path::PathBuf;

use nw_trust::evaluate;
use nw_trust::load_pem;
use nw_trust::ocsp::{OcspError, Status, check};
use nw_trust::revocation::Mode;
use nw_trust::{Anchor, AnchorClass, Options, Problem, Verdict};

/// nw-lab's openssl PKI (a CA, a leaf with serial 0x1234, a delegated responder and a sibling)
/// in a scratch directory removed on drop.
struct Pki {
    dir: PathBuf,
    lab: nw_lab::ocsp::Pki,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pki {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nw-ocsp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lab = nw_lab::ocsp::Pki::new(&dir, "leaf.example")
            .unwrap_or_else(|e| panic!("the OCSP test PKI: {e}"));
        Self { dir, lab }
    }

    /// A response about the leaf, signed by `signer`.
    fn response(&self, name: &str, revoked: bool, signer: &str) -> Vec<u8> {
        std::fs::read(self.lab.response(name, revoked, signer).unwrap()).unwrap()
    }

    fn der(&self, name: &str) -> Vec<u8> {
        load_pem(&self.dir.join(format!("{name}.pem"))).unwrap().remove(0).as_ref().to_vec()
    }
}

#[allow(clippy::disallowed_methods, reason = "openssl stamps OCSP responses with the real time")]
fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    )
    .unwrap()
}

#[test]
fn good_revoked_tampered_and_delegated_responses() {
    let pki = Pki::new("check");
    let (leaf, ca) = (pki.der("leaf"), pki.der("ca"));
    let at = now();
    assert_eq!(check(&pki.response("good", false, "ca"), &leaf, &ca, at), Ok(Status::Good));
    let revoked = pki.response("revoked", true, "ca");
    assert!(matches!(check(&revoked, &leaf, &ca, at), Ok(Status::Revoked { .. })));
    // A responder the CA delegated to (id-kp-OCSPSigning) may sign; a sibling without it may not.
    assert_eq!(check(&pki.response("delegated", false, "resp"), &leaf, &ca, at), Ok(Status::Good));
    assert_eq!(
        check(&pki.response("rogue", false, "other"), &leaf, &ca, at),
        Err(OcspError::Signature)
    );
    // The serial inside the signed data changed: the signature no longer covers it.
    let mut tampered = revoked.clone();
    let at_serial = tampered.windows(4).position(|w| w == [0x02, 0x02, 0x12, 0x34]).unwrap();
    tampered[at_serial + 3] = 0x35;
    assert_eq!(check(&tampered, &leaf, &ca, at), Err(OcspError::Signature));
    // About another certificate; too late; garbage.
    assert_eq!(check(&revoked, &pki.der("other"), &ca, at), Err(OcspError::NoMatch));
    assert_eq!(check(&revoked, &leaf, &ca, at + 3 * 86_400), Err(OcspError::Stale));
    for cut in [0, 1, 5, revoked.len() / 2] {
        assert!(check(&revoked[..cut], &leaf, &ca, at).is_err());
    }
}

#[test]
fn a_stapled_revocation_is_fatal_and_a_bad_staple_matters_only_under_hard_fail() {
    let pki = Pki::new("eval");
    let chain = load_pem(&pki.dir.join("leaf.pem")).unwrap();
    let ca = load_pem(&pki.dir.join("ca.pem")).unwrap().remove(0);
    let base = Options {
        anchors: vec![Anchor { der: ca, class: AnchorClass::Custom }],
        ..Options::default()
    };
    let at = now();
    let with = |staple: Vec<u8>, mode: Option<Mode>| Options {
        stapled_ocsp: Some(staple),
        revocation: mode.unwrap_or_default(),
        ..base.clone()
    };
    let e = evaluate(&chain, Some("ok.example"), at, &with(pki.response("r", true, "ca"), None))
        .unwrap();
    assert_eq!(e.verdict, Verdict::FatalFailure);
    assert_eq!(
        e.failure_lines(),
        ["Certificate 0 “leaf.example” has errors: Certificate is revoked;"]
    );
    assert!(
        evaluate(&chain, Some("ok.example"), at, &with(pki.response("g", false, "ca"), None))
            .unwrap()
            .trusted()
    );
    let rogue = pki.response("x", true, "other");
    assert!(
        evaluate(&chain, Some("ok.example"), at, &with(rogue.clone(), None)).unwrap().trusted(),
        "soft: ignored"
    );
    let e = evaluate(&chain, Some("ok.example"), at, &with(rogue, Some(Mode::HardFail))).unwrap();
    assert!(
        e.certificates[0]
            .problems
            .iter()
            .any(|p| matches!(p, Problem::RevocationUnknown { why } if why.contains("OCSP"))),
        "{:?}",
        e.failure_lines()
    );
}
