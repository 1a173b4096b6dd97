//! The ATS-like profile: the provider's suites are all TLS 1.2+ and forward secret, and with
//! the profile on a custom anchor cannot make a chain the default trust refuses pass (A20).

use std::sync::Arc;

use nw_trust::TrustVerifier;
use nw_trust::ca::TestCa;
use nw_trust::{Anchor, AnchorClass, Options};
use nw_trust::{AtsVerifier, check_provider};
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{ServerName, UnixTime};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[test]
fn every_suite_of_the_provider_is_forward_secret() {
    assert_eq!(check_provider(&provider()), Ok(()));
}

#[test]
fn with_ats_a_custom_anchor_cannot_override_default_trust() {
    let ca = TestCa::new("Private Root").unwrap();
    let leaf = ca.server(&["api.example"]).unwrap();
    let custom = Options {
        anchors: vec![Anchor { der: ca.root_der(), class: AnchorClass::Custom }],
        ..Options::default()
    };
    // The default trust: here a store without the private root (another CA stands in for the
    // system store, so the test does not depend on the machine's).
    let other = TestCa::new("Some Public Root").unwrap();
    let default = Options {
        anchors: vec![Anchor { der: other.root_der(), class: AnchorClass::System }],
        ..Options::default()
    };
    let name = ServerName::try_from("api.example").unwrap();
    let now = UnixTime::now();
    // Without ATS, the custom anchor is enough…
    let plain = TrustVerifier::new(custom.clone(), provider());
    assert!(plain.verify_server_cert(&leaf.chain[0], &[], &name, &[], now).is_ok());
    // …with it, the default trust must pass too, and says why it did not.
    let ats = AtsVerifier::new(custom, default, provider());
    let err = ats.verify_server_cert(&leaf.chain[0], &[], &name, &[], now).unwrap_err();
    assert!(err.to_string().contains("Missing issuer"), "{err}");
    assert_eq!(
        ats.last().unwrap().failure_lines(),
        ["Certificate 0 “api.example” has errors: Missing issuer;"]
    );
}
