//! CRLs fetched from a certificate's distribution point over real HTTP (a loopback server in
//! the test), cached until nextUpdate, signature-checked; soft and hard fail.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nw_trust::ca::{Profile, TestCa};
use nw_trust::evaluate;
use nw_trust::revocation::{Mode, Revocation};
use nw_trust::time::parse_rfc3339;
use nw_trust::{Anchor, AnchorClass, Options, Problem, Verdict};
use rustls_pki_types::CertificateDer;

const DAY: i64 = 86_400;

fn t0() -> i64 {
    parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
}

/// An HTTP server on loopback that answers every request with `body` (200), or 404 when it
/// is empty; counts requests.
struct CrlServer {
    url: String,
    body: Arc<Mutex<Vec<u8>>>,
    hits: Arc<AtomicUsize>,
}

impl CrlServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/test.crl", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (body.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req);
                h.fetch_add(1, Ordering::SeqCst);
                let body = b.lock().unwrap().clone();
                let head = if body.is_empty() {
                    "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned()
                } else {
                    format!(
                        "HTTP/1.0 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                };
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            }
        });
        Self { url, body, hits }
    }
}

/// Evaluates `chain` under `ca`'s root after `revocation` has fetched what the chain names.
fn judge(
    ca: &TestCa,
    revocation: &Revocation,
    chain: &[CertificateDer<'static>],
    host: &str,
    at: i64,
) -> nw_trust::Evaluation {
    let options = Options {
        anchors: vec![Anchor { der: ca.root_der(), class: AnchorClass::Custom }],
        ..Options::default()
    };
    evaluate(chain, Some(host), at, &revocation.prepare(chain, at, &options)).unwrap()
}

#[test]
fn a_revoked_leaf_fails_fatally_and_the_list_is_cached_until_next_update() {
    let server = CrlServer::start();
    let ca = TestCa::root("CRL Root", t0() - DAY, 3650).unwrap();
    let profile =
        Profile { not_before: Some(t0()), crl_url: Some(server.url.clone()), ..Profile::default() };
    let revoked = ca.issue(&["bad.example"], &profile).unwrap();
    let fine = ca.issue(&["good.example"], &profile).unwrap();
    *server.body.lock().unwrap() = ca.crl(&[&revoked], t0(), 7, 1).unwrap();
    let revocation = Revocation::http();

    let e = judge(&ca, &revocation, &revoked.chain[..1], "bad.example", t0() + DAY);
    assert_eq!(e.verdict, Verdict::FatalFailure);
    assert_eq!(
        e.failure_lines(),
        ["Certificate 0 “bad.example” has errors: Certificate is revoked;"]
    );
    assert!(judge(&ca, &revocation, &fine.chain[..1], "good.example", t0() + DAY).trusted());
    assert_eq!(server.hits.load(Ordering::SeqCst), 1, "the second evaluation used the cache");
    assert_eq!(revocation.cache.len(), 1);
    // After nextUpdate the list is fetched again.
    assert!(judge(&ca, &revocation, &fine.chain[..1], "good.example", t0() + 8 * DAY).trusted());
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
}

#[test]
fn a_list_signed_by_someone_else_does_not_revoke() {
    let server = CrlServer::start();
    let ca = TestCa::root("CRL Root", t0() - DAY, 3650).unwrap();
    let impostor = TestCa::root("CRL Root", t0() - DAY, 3650).unwrap(); // same name, other key
    let profile =
        Profile { not_before: Some(t0()), crl_url: Some(server.url.clone()), ..Profile::default() };
    let leaf = ca.issue(&["api.example"], &profile).unwrap();
    *server.body.lock().unwrap() = impostor.crl(&[&leaf], t0(), 7, 1).unwrap();
    let e = judge(&ca, &Revocation::http(), &leaf.chain[..1], "api.example", t0() + DAY);
    assert!(
        !e.certificates[0].problems.iter().any(|p| matches!(p, Problem::Revoked { .. })),
        "{:?}",
        e.failure_lines()
    );
}

#[test]
fn an_unreachable_list_passes_soft_and_fails_hard() {
    let server = CrlServer::start(); // its body stays empty: 404
    let ca = TestCa::root("CRL Root", t0() - DAY, 3650).unwrap();
    let profile =
        Profile { not_before: Some(t0()), crl_url: Some(server.url.clone()), ..Profile::default() };
    let leaf = ca.issue(&["api.example"], &profile).unwrap();
    assert!(judge(&ca, &Revocation::http(), &leaf.chain[..1], "api.example", t0() + DAY).trusted());
    let hard = Revocation { mode: Mode::HardFail, ..Revocation::http() };
    let e = judge(&ca, &hard, &leaf.chain[..1], "api.example", t0() + DAY);
    assert_eq!(e.verdict, Verdict::RecoverableFailure);
    assert_eq!(
        e.failure_lines(),
        ["Certificate 0 “api.example” has errors: Revocation status unknown;"]
    );
    let detail = e.certificates[0].problems[0].detail();
    assert!(detail.contains(&server.url) && detail.contains("404"), "{detail}");
}
