//! Every rule of the policy layer, with the exact report strings.

use nw_trust::ca::{Issued, Profile, TestCa};
use nw_trust::evaluate;
use nw_trust::time::parse_rfc3339;
use nw_trust::{
    Anchor, AnchorClass, CtRequirement, Evaluation, Options, Pin, Policy, Problem, TrustError,
    Verdict,
};
use rustls_pki_types::CertificateDer;

/// 2026-01-01: every test CA and leaf starts here, and evaluations happen a day later.
fn t0() -> i64 {
    parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
}

const DAY: i64 = 86_400;

fn root() -> TestCa {
    TestCa::root("Test Root", t0(), 3650).unwrap()
}

fn leaf(ca: &TestCa, names: &[&str], profile: Profile) -> Issued {
    ca.issue(names, &Profile { not_before: Some(t0()), ..profile }).unwrap()
}

fn custom(ca: &TestCa) -> Options {
    Options {
        anchors: vec![Anchor { der: ca.root_der(), class: AnchorClass::Custom }],
        ..Options::default()
    }
}

fn judge(chain: &[CertificateDer<'static>], host: &str, at: i64, options: &Options) -> Evaluation {
    evaluate(chain, Some(host), at, options).unwrap()
}

/// A leaf for `names` issued from t0 + 1 day by an intermediate "Test Intermediate" under
/// `ca`; its chain is leaf, intermediate, root.
fn via_intermediate(ca: &TestCa, names: &[&str]) -> Issued {
    let inter = ca.intermediate("Test Intermediate").unwrap();
    inter.issue(names, &Profile { not_before: Some(t0() + DAY), ..Profile::default() }).unwrap()
}

/// The leaf alone (what servers that omit the root present, with the intermediates).
fn presented(issued: &Issued) -> Vec<CertificateDer<'static>> {
    issued.chain[..issued.chain.len() - 1].to_vec()
}

#[test]
fn a_good_chain_proceeds_with_or_without_the_root_presented() {
    let ca = root();
    let issued = via_intermediate(&ca, &["api.example"]);
    let at = t0() + 2 * DAY;
    for chain in [issued.chain.clone(), presented(&issued)] {
        let e = judge(&chain, "api.example", at, &custom(&ca));
        assert_eq!(e.verdict, Verdict::Proceed, "{:?}", e.failure_lines());
        assert_eq!(e.anchor_class, Some(AnchorClass::Custom));
        let names: Vec<&str> = e.certificates.iter().map(|c| c.facts.name.as_str()).collect();
        assert_eq!(
            names,
            ["api.example", "Test Intermediate", "Test Root"],
            "root shown once, as the anchor"
        );
        assert!(e.certificates[2].anchor && !e.certificates[2].presented);
        assert!(e.failure_lines().is_empty());
        assert_eq!(e.certificates[0].to_string(), "Certificate 0 “api.example” has no errors");
    }
}

#[test]
fn host_names_come_from_the_san_only() {
    let ca = root();
    let at = t0() + DAY;
    let issued = leaf(&ca, &["api.example"], Profile::default());
    let e = judge(&issued.chain, "www.example", at, &custom(&ca));
    assert_eq!(e.verdict, Verdict::RecoverableFailure);
    assert_eq!(e.failure_lines(), ["Certificate 0 “api.example” has errors: Hostname mismatch;"]);
    assert_eq!(e.certificates[0].problems[0].code(), "hostname_mismatch");
    // A14: the name only in the Common Name does not count.
    let cn_only = leaf(
        &ca,
        &["other.example"],
        Profile { common_name: Some("api.example".into()), ..Profile::default() },
    );
    let e = judge(&cn_only.chain, "api.example", at, &custom(&ca));
    assert_eq!(e.failure_lines(), ["Certificate 0 “api.example” has errors: Hostname mismatch;"]);
    // Names compare without case and a trailing dot.
    assert!(judge(&issued.chain, "API.Example.", at, &custom(&ca)).trusted());
}

#[test]
fn ip_addresses_match_only_ip_entries() {
    let ca = root();
    let at = t0() + DAY;
    let by_ip = leaf(&ca, &["192.0.2.1", "2001:db8::1"], Profile::default());
    assert!(judge(&by_ip.chain, "192.0.2.1", at, &custom(&ca)).trusted());
    assert!(judge(&by_ip.chain, "[2001:db8::1]", at, &custom(&ca)).trusted());
    assert!(!judge(&by_ip.chain, "192.0.2.2", at, &custom(&ca)).trusted());
    // An IP written as a DNS name in the certificate's CN, not an iPAddress entry: no match.
    let by_name = leaf(
        &ca,
        &["api.example"],
        Profile { common_name: Some("192.0.2.1".into()), ..Profile::default() },
    );
    let e = judge(&by_name.chain, "192.0.2.1", at, &custom(&ca));
    assert_eq!(e.failure_lines(), ["Certificate 0 “192.0.2.1” has errors: Hostname mismatch;"]);
}

#[test]
fn wildcards_cover_one_whole_left_label_never_directly_under_a_suffix() {
    let ca = root();
    let at = t0() + DAY;
    let star = leaf(&ca, &["*.example.com"], Profile::default());
    assert!(judge(&star.chain, "a.example.com", at, &custom(&ca)).trusted());
    assert!(!judge(&star.chain, "a.b.example.com", at, &custom(&ca)).trusted(), "one label only");
    assert!(!judge(&star.chain, "example.com", at, &custom(&ca)).trusted(), "not the base");
    for suffix in ["*.co.uk", "*.github.io"] {
        let star = leaf(&ca, &[suffix], Profile::default());
        let host = suffix.replace('*', "victim");
        assert!(
            !judge(&star.chain, &host, at, &custom(&ca)).trusted(),
            "{suffix} is a public suffix"
        );
    }
    let tld = leaf(&ca, &["*.test"], Profile::default());
    let e = judge(&tld.chain, "a.test", at, &custom(&ca));
    assert_eq!(e.failure_lines(), ["Certificate 0 “*.test” has errors: Hostname mismatch;"]);
}

#[test]
fn dates_are_checked_on_every_certificate_at_the_verify_time() {
    let ca = root();
    let issued = leaf(&ca, &["api.example"], Profile { days: 30, ..Profile::default() });
    // A17: expired now, fine with a verify date inside its validity.
    let late = issued.not_after + DAY;
    let e = judge(&issued.chain, "api.example", late, &custom(&ca));
    assert_eq!(e.verdict, Verdict::RecoverableFailure);
    assert_eq!(
        e.failure_lines(),
        ["Certificate 0 “api.example” has errors: Certificate has expired;"]
    );
    assert_eq!(e.certificates[0].problems[0].detail(), "valid until 2026-01-31T00:00:00Z");
    assert!(judge(&issued.chain, "api.example", t0() + DAY, &custom(&ca)).trusted());
    let early = judge(&issued.chain, "api.example", t0() - DAY, &custom(&ca));
    assert!(
        early.failure_lines()[0].contains("Certificate is not yet valid"),
        "{:?}",
        early.failure_lines()
    );
    // An expired anchor is rejected, on the anchor's line.
    let old = TestCa::root("Old Root", t0(), 10).unwrap();
    let issued = leaf(&old, &["api.example"], Profile { days: 5, ..Profile::default() });
    let e = judge(&presented(&issued), "api.example", t0() + 4 * DAY, &custom(&old));
    assert!(e.trusted(), "{:?}", e.failure_lines());
    let later = old
        .issue(
            &["api.example"],
            &Profile { not_before: Some(t0() + 9 * DAY), days: 20, ..Profile::default() },
        )
        .unwrap();
    let e = judge(&presented(&later), "api.example", t0() + 12 * DAY, &custom(&old));
    assert_eq!(
        e.failure_lines(),
        ["Certificate 1 “Old Root” has errors: Certificate has expired;"]
    );
}

#[test]
fn maximum_validity_depends_on_the_anchor_class() {
    let ca = root();
    let at = t0() + DAY;
    let days = |d: i64| leaf(&ca, &["api.example"], Profile { days: d, ..Profile::default() });
    assert!(judge(&days(825).chain, "api.example", at, &custom(&ca)).trusted());
    let e = judge(&days(826).chain, "api.example", at, &custom(&ca));
    assert_eq!(
        e.failure_lines(),
        ["Certificate 0 “api.example” has errors: Certificate is not standards compliant;"]
    );
    assert_eq!(e.certificates[0].problems[0], Problem::ValidityTooLong { days: 826, max: 825 });
    let user = Options {
        anchors: vec![Anchor { der: ca.root_der(), class: AnchorClass::UserAdded }],
        ..Options::default()
    };
    assert!(
        !judge(&days(826).chain, "api.example", at, &user).trusted(),
        "user-added follow the custom rules"
    );
    // System anchors: 398 days (CT off here; it has its own test).
    let system = Options {
        anchors: vec![Anchor { der: ca.root_der(), class: AnchorClass::System }],
        ct: CtRequirement::Off,
        ..Options::default()
    };
    assert!(judge(&days(398).chain, "api.example", at, &system).trusted());
    let e = judge(&days(399).chain, "api.example", at, &system);
    assert_eq!(e.certificates[0].problems, [Problem::ValidityTooLong { days: 399, max: 398 }]);
}

#[test]
fn the_leaf_needs_the_policys_extended_key_usage() {
    let ca = root();
    let at = t0() + DAY;
    let none = leaf(&ca, &["api.example"], Profile { server_auth: false, ..Profile::default() });
    let e = judge(&none.chain, "api.example", at, &custom(&ca));
    assert_eq!(
        e.failure_lines(),
        [
            "Certificate 0 “api.example” has errors: Extended key usage does not match certificate usage;"
        ]
    );
    let client = leaf(
        &ca,
        &["alice"],
        Profile { server_auth: false, client_auth: true, ..Profile::default() },
    );
    let as_client = Options { policy: Policy::Client, ..custom(&ca) };
    assert!(evaluate(&client.chain, None, at, &as_client).unwrap().trusted());
    assert!(
        !judge(&client.chain, "alice", at, &custom(&ca)).trusted(),
        "a client certificate is no server's"
    );
    let server = leaf(&ca, &["api.example"], Profile::default());
    assert!(!evaluate(&server.chain, None, at, &as_client).unwrap().trusted(), "nor the reverse");
}

#[test]
fn without_a_log_list_system_chains_proceed_with_a_note_and_always_still_fails() {
    let ca = root();
    let issued = leaf(&ca, &["api.example"], Profile::default());
    let system = Options {
        anchors: vec![Anchor { der: ca.root_der(), class: AnchorClass::System }],
        ..Options::default()
    };
    let e = judge(&issued.chain, "api.example", t0() + DAY, &system);
    assert_eq!(e.verdict, Verdict::Proceed, "{:?}", e.failure_lines());
    assert_eq!(e.notes, [nw_trust::Note::CtNotEnforcedNoLogList]);
    assert!(e.notes[0].to_string().contains("not checked: no log list"), "{}", e.notes[0]);
    let e = judge(&issued.chain, "api.example", t0() + DAY, &custom(&ca));
    assert!(e.trusted() && e.notes.is_empty(), "custom chains: CT off by default, no note");
    let always = Options { ct: CtRequirement::Always, ..custom(&ca) };
    let e = judge(&issued.chain, "api.example", t0() + DAY, &always);
    assert_eq!(e.verdict, Verdict::RecoverableFailure);
    assert_eq!(
        e.failure_lines(),
        ["Certificate 0 “api.example” has errors: Certificate Transparency log list unavailable;"]
    );
}

#[test]
fn an_unknown_root_and_a_missing_intermediate_are_named() {
    let ca = root();
    let other = TestCa::root("Other Root", t0(), 3650).unwrap();
    let issued = leaf(&ca, &["api.example"], Profile::default());
    let e = judge(&issued.chain, "api.example", t0() + DAY, &custom(&other));
    assert_eq!(e.verdict, Verdict::RecoverableFailure);
    assert_eq!(e.failure_lines(), ["Certificate 1 “Test Root” has errors: Root is not trusted;"]);
    let e = judge(&presented(&issued), "api.example", t0() + DAY, &custom(&other));
    assert_eq!(e.failure_lines(), ["Certificate 0 “api.example” has errors: Missing issuer;"]);
    let issued = via_intermediate(&ca, &["api.example"]);
    let e = judge(&issued.chain[..1], "api.example", t0() + 2 * DAY, &custom(&ca));
    assert_eq!(e.failure_lines(), ["Certificate 0 “api.example” has errors: Missing issuer;"]);
    assert!(
        e.certificates[0].problems[0].detail().contains("Test Intermediate"),
        "{}",
        e.certificates[0].problems[0].detail()
    );
}

#[test]
fn pins_and_exceptions() {
    let ca = root();
    let at = t0() + DAY;
    let issued = leaf(&ca, &["api.example"], Profile::default());
    let e = judge(&issued.chain, "api.example", at, &custom(&ca));
    let root_pin = e.certificates[1].facts.spki_sha256.clone();
    let pinned = |spki: &str, include_subdomains: bool, host: &str| Options {
        pins: vec![Pin { host: host.into(), include_subdomains, spki_sha256: vec![spki.into()] }],
        ..custom(&ca)
    };
    assert!(
        judge(&issued.chain, "api.example", at, &pinned(&root_pin, false, "api.example")).trusted()
    );
    let e = judge(&issued.chain, "api.example", at, &pinned(&"00".repeat(32), true, "example"));
    assert_eq!(e.verdict, Verdict::FatalFailure);
    assert_eq!(
        e.failure_lines(),
        ["Certificate 0 “api.example” has errors: Public key pin mismatch;"]
    );
    assert!(
        judge(&issued.chain, "api.example", at, &pinned(&"00".repeat(32), false, "example"))
            .trusted(),
        "subdomains only when asked"
    );

    // An exception bound to this exact leaf accepts its recoverable failures, and only them.
    let digest = leaf_sha256(&issued.chain[0]);
    let excepted = Options { exceptions: vec![digest.clone()], ..custom(&ca) };
    let e = judge(&issued.chain, "www.example", at, &excepted);
    assert!(e.trusted() && e.excepted, "{:?}", e.failure_lines());
    assert_eq!(
        e.failure_lines(),
        ["Certificate 0 “api.example” has errors: Hostname mismatch;"],
        "still reported"
    );
    let other = leaf(&ca, &["api.example"], Profile::default());
    assert!(
        !judge(&other.chain, "www.example", at, &excepted).trusted(),
        "another leaf is not excepted"
    );
    let both =
        Options { exceptions: vec![digest], ..pinned(&"00".repeat(32), false, "www.example") };
    assert_eq!(judge(&issued.chain, "www.example", at, &both).verdict, Verdict::FatalFailure);
}

fn leaf_sha256(der: &CertificateDer<'_>) -> String {
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-r"])
        .stdin_bytes(der.as_ref());
    out.split_whitespace().next().unwrap().to_owned()
}

trait StdinBytes {
    fn stdin_bytes(&mut self, input: &[u8]) -> String;
}

impl StdinBytes for std::process::Command {
    fn stdin_bytes(&mut self, input: &[u8]) -> String {
        use std::io::Write;
        let mut child = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl is needed (scripts/test installs it)");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    }
}

#[test]
fn weak_keys_and_sha1_signatures_made_by_openssl() {
    let dir = std::env::temp_dir().join(format!("nw-trust-weak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        nw_lab::ocsp::openssl(&dir, args).unwrap_or_else(|e| panic!("openssl {args:?}: {e}"));
    };
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:weak.example\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=OpenSSL Root",
        "-days",
        "30",
        "-sha256",
    ]);
    // A leaf for weak.example under that root: `name`.key/.pem, its key made by `newkey`,
    // signed with `digest`.
    let leaf = |name: &str, serial: &str, newkey: &[&str], digest: &str| {
        nw_lab::ocsp::issue(&dir, name, newkey, "/CN=weak.example", serial, digest, "ext")
            .unwrap_or_else(|e| panic!("issuing {name}: {e}"));
    };
    leaf("l", "0x10", &["-newkey", "rsa:1024"], "-sha1");
    leaf("p192", "0x11", &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime192v1"], "-sha256");
    let chain = nw_trust::load_pem(&dir.join("l.pem")).unwrap();
    let p192 = nw_trust::load_pem(&dir.join("p192.pem")).unwrap();
    let anchor = nw_trust::load_pem(&dir.join("ca.pem")).unwrap().remove(0);
    let options = Options {
        anchors: vec![Anchor { der: anchor, class: AnchorClass::Custom }],
        ..Options::default()
    };
    let at = nw_trust::Facts::parse(0, &chain[0]).unwrap().not_before + 60;
    let e = judge(&chain, "weak.example", at, &options);
    let small_curve = judge(&p192, "weak.example", at, &options);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        small_curve.failure_lines(),
        ["Certificate 0 “weak.example” has errors: Key size is not permitted for this use;"]
    );
    assert_eq!(
        small_curve.certificates[0].problems[0].detail(),
        "EC 192-bit key; at least 256 bits are needed"
    );
    assert_eq!(
        e.failure_lines(),
        [
            "Certificate 0 “weak.example” has errors: Key size is not permitted for this use; Certificate is using a broken signature algorithm;"
        ]
    );
    assert_eq!(
        e.certificates[0].problems[0].detail(),
        "RSA 1024-bit key; at least 2048 bits are needed"
    );
}

#[test]
fn bad_input_is_a_typed_error() {
    let options = Options::default();
    assert_eq!(evaluate(&[], Some("x"), 0, &options).unwrap_err(), TrustError::EmptyChain);
    let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01]);
    let e = evaluate(&[junk], Some("x"), 0, &options).unwrap_err();
    assert!(matches!(e, TrustError::BadCertificate { index: 0, .. }), "{e}");
    let ok = root().server(&["a.example"]).unwrap();
    let e = evaluate(
        &[ok.chain[0].clone(), CertificateDer::from(vec![1, 2, 3])],
        Some("x"),
        0,
        &options,
    )
    .unwrap_err();
    assert!(matches!(e, TrustError::BadCertificate { index: 1, .. }), "{e}");
}

#[test]
fn baseline_requirements_bind_system_anchored_chains_only() {
    let ca = root();
    let at = t0() + DAY;
    let display_cn = leaf(
        &ca,
        &["api.example"],
        Profile { common_name: Some("My Service".into()), ..Profile::default() },
    );
    assert!(
        judge(&display_cn.chain, "api.example", at, &custom(&ca)).trusted(),
        "private PKIs may"
    );
    let system = Options {
        anchors: vec![Anchor { der: ca.root_der(), class: AnchorClass::System }],
        ct: CtRequirement::Off,
        ..Options::default()
    };
    let e = judge(&display_cn.chain, "api.example", at, &system);
    assert_eq!(
        e.failure_lines(),
        ["Certificate 0 “My Service” has errors: Certificate is not standards compliant;"]
    );
    assert!(
        e.certificates[0].problems[0].detail().contains("BR §7.1.4.3"),
        "{}",
        e.certificates[0].problems[0].detail()
    );
}

#[test]
fn our_own_test_ca_is_standards_compliant_everywhere() {
    let ca = root();
    let issued = via_intermediate(&ca, &["api.example"]);
    let system = Options {
        anchors: vec![Anchor { der: ca.root_der(), class: AnchorClass::System }],
        ct: CtRequirement::Off,
        ..Options::default()
    };
    let e = judge(&issued.chain, "api.example", t0() + 2 * DAY, &system);
    assert!(e.trusted(), "{:?}", e.failure_lines());
}

#[test]
fn administrator_added_anchors_follow_the_custom_rules() {
    let (public, added) = (root(), TestCa::root("Added By Admin", t0(), 3650).unwrap());
    let anchors =
        nw_trust::classify(vec![public.root_der(), added.root_der()], &[added.root_der()]);
    assert_eq!(
        anchors.iter().map(|a| a.class).collect::<Vec<_>>(),
        [AnchorClass::System, AnchorClass::UserAdded]
    );
    // 500 days: too long under a system anchor, fine under one an administrator added.
    let long =
        |ca: &TestCa| leaf(ca, &["api.example"], Profile { days: 500, ..Profile::default() });
    let options = Options { anchors, ct: CtRequirement::Off, ..Options::default() };
    assert!(!judge(&long(&public).chain, "api.example", t0() + DAY, &options).trusted());
    let e = judge(&long(&added).chain, "api.example", t0() + DAY, &options);
    assert!(e.trusted(), "{:?}", e.failure_lines());
    assert_eq!(e.anchor_class, Some(AnchorClass::UserAdded));
}

#[test]
fn an_intermediate_whose_eku_excludes_the_usage_breaks_the_chain() {
    let ca = root();
    let clients_only = ca
        .intermediate_for("Clients Only CA", &[nw_trust::ExtendedKeyUsagePurpose::ClientAuth])
        .unwrap();
    let issued = clients_only
        .issue(&["api.example"], &Profile { not_before: Some(t0() + DAY), ..Profile::default() })
        .unwrap();
    let e = judge(&presented(&issued), "api.example", t0() + 2 * DAY, &custom(&ca));
    assert_eq!(
        e.failure_lines(),
        [
            "Certificate 1 “Clients Only CA” has errors: Extended key usage does not match certificate usage;"
        ]
    );
    let servers = ca
        .intermediate_for("Servers CA", &[nw_trust::ExtendedKeyUsagePurpose::ServerAuth])
        .unwrap();
    let issued = servers
        .issue(&["api.example"], &Profile { not_before: Some(t0() + DAY), ..Profile::default() })
        .unwrap();
    assert!(judge(&presented(&issued), "api.example", t0() + 2 * DAY, &custom(&ca)).trusted());
}
