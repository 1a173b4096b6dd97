//! Benchmark: chain evaluations per second — nw-trust's `evaluate` (webpki path building plus
//! the policy layer, structure rules and the per-certificate report) against bare
//! rustls-webpki (`verify_for_usage` and the name check) on the same chain (leaf,
//! intermediate, root anchor), in alternating rounds of the same run. Prints each side's
//! median rate and the ratio.
//!
//! Run: `cargo bench -p nw-trust --bench evaluate_rate`. `NW_BENCH_SMOKE=1` runs a tiny
//! version so CI keeps it compiling and running.

#![allow(clippy::disallowed_methods, reason = "benchmark: measures wall-clock time")]
#![allow(clippy::print_stdout, clippy::unwrap_used, reason = "benchmark program")]

use std::time::{Duration, Instant};

use nw_trust::ca::{Profile, TestCa};
use nw_trust::evaluate;
use nw_trust::{Anchor, AnchorClass, Options};
use rustls_pki_types::{ServerName, UnixTime};

fn main() {
    let smoke = std::env::var_os("NW_BENCH_SMOKE").is_some();
    let (rounds, per_round) = if smoke { (2, 50) } else { (7, 3_000) };
    let t0 = nw_trust::time::parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
    let root = TestCa::root("Bench Root", t0, 3650).unwrap();
    let inter = root.intermediate("Bench Intermediate").unwrap();
    let issued = inter
        .issue(&["api.example"], &Profile { not_before: Some(t0 + 86_400), ..Profile::default() })
        .unwrap();
    let presented = issued.chain[..2].to_vec();
    let at = t0 + 2 * 86_400;
    let options = Options {
        anchors: vec![Anchor { der: root.root_der(), class: AnchorClass::Custom }],
        ..Options::default()
    };
    let anchors = [webpki::anchor_from_trusted_cert(&issued.chain[2]).unwrap()];
    let name = ServerName::try_from("api.example").unwrap();
    let time = UnixTime::since_unix_epoch(Duration::from_secs(at.unsigned_abs()));
    let bare = || {
        let leaf = webpki::EndEntityCert::try_from(&presented[0]).unwrap();
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &presented[1..],
            time,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .unwrap();
        leaf.verify_is_valid_for_subject_name(&name).unwrap();
    };
    let ours =
        || assert!(evaluate(&presented, Some("api.example"), at, &options).unwrap().trusted());
    let (mut o, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        o.push(time_it(per_round, ours));
        b.push(time_it(per_round, bare));
    }
    let (om, bm) = (median(&o), median(&b));
    println!(
        "chain evaluations (leaf + intermediate → root), {rounds} alternating rounds of {per_round}"
    );
    println!("  bare rustls-webpki (peer)   median {bm:9.0} /s");
    println!("  nw-trust evaluate           median {om:9.0} /s");
    println!("  ratio nw-trust / webpki     {:.2}", om / bm);
}

fn time_it(n: u32, f: impl Fn()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
