//! Certificate Transparency with test logs made at test time: embedded SCTs verified against
//! a log list, the count by lifetime, distinct operators, SCTs after the verify time, log
//! states, a stale list, and the parsers on bad input.

use std::sync::Arc;

use nw_trust::ca::{Profile, TestCa, TestLog, log_list_json};
use nw_trust::ct::{self, LogList};
use nw_trust::evaluate;
use nw_trust::time::parse_rfc3339;
use nw_trust::{Anchor, AnchorClass, Note, Options, Problem, Verdict};

const DAY: i64 = 86_400;

fn t0() -> i64 {
    parse_rfc3339("2026-01-01T00:00:00Z").unwrap()
}

struct World {
    ca: TestCa,
    logs: Vec<TestLog>,
}

fn world() -> World {
    let ca = TestCa::root("CT Test Root", t0() - 400 * DAY, 3650).unwrap();
    let logs = vec![
        TestLog::new("Operator A", "A 2026").unwrap(),
        TestLog::new("Operator B", "B 2026").unwrap(),
        TestLog::new("Operator A", "A 2026 bis").unwrap(),
        TestLog::new("Operator C", "C 2026").unwrap(),
    ];
    World { ca, logs }
}

/// A list made `made_days` days after t0, every log in `state` since a year before t0.
fn list(w: &World, made_days: i64, state: &str) -> Arc<LogList> {
    let logs: Vec<&TestLog> = w.logs.iter().collect();
    let json = log_list_json(&logs, t0() + made_days * DAY, state, t0() - 365 * DAY);
    Arc::new(LogList::from_json(json.as_bytes()).unwrap())
}

fn system(w: &World, list: Option<Arc<LogList>>) -> Options {
    Options {
        anchors: vec![Anchor { der: w.ca.root_der(), class: AnchorClass::System }],
        log_list: list,
        ..Options::default()
    }
}

/// A 90-day leaf for api.example from t0 with SCTs from the logs at `logs`, issued at t0.
fn logged(w: &World, logs: &[usize]) -> nw_trust::ca::Issued {
    let logs: Vec<&TestLog> = logs.iter().map(|&i| &w.logs[i]).collect();
    let profile = Profile { not_before: Some(t0()), ..Profile::default() };
    w.ca.issue_logged(&["api.example"], &profile, &logs, t0()).unwrap()
}

fn problems(e: &nw_trust::Evaluation) -> &[Problem] {
    &e.certificates[0].problems
}

#[test]
fn two_scts_from_two_operators_satisfy_a_short_lived_certificate() {
    let w = world();
    let leaf = logged(&w, &[0, 1]);
    // The precertificate TBS is the final TBS without the SCT list.
    assert!(ct::embedded(&leaf.chain[0]).unwrap().is_some_and(|s| s.len() == 2));
    let e = evaluate(
        &leaf.chain,
        Some("api.example"),
        t0() + DAY,
        &system(&w, Some(list(&w, 0, "usable"))),
    )
    .unwrap();
    assert_eq!(e.verdict, Verdict::Proceed, "{:?}", e.failure_lines());
}

#[test]
fn too_few_scts_or_one_operator_fail_with_the_ct_sentence() {
    let w = world();
    let profile = Profile { not_before: Some(t0()), ..Profile::default() };
    let one_operator =
        w.ca.issue_logged(&["api.example"], &profile, &[&w.logs[0], &w.logs[2]], t0()).unwrap();
    let e = evaluate(
        &one_operator.chain,
        Some("api.example"),
        t0() + DAY,
        &system(&w, Some(list(&w, 0, "usable"))),
    )
    .unwrap();
    assert_eq!(e.verdict, Verdict::RecoverableFailure);
    assert_eq!(
        e.failure_lines(),
        [
            "Certificate 0 “api.example” has errors: Certificate Transparency validation required for this use;"
        ]
    );
    assert_eq!(problems(&e), [Problem::CtRequired { valid: 2, required: 2, operators: 1 }]);
    // A certificate valid for more than 180 days needs three.
    let long = Profile { days: 200, ..profile.clone() };
    let two = w.ca.issue_logged(&["api.example"], &long, &[&w.logs[0], &w.logs[1]], t0()).unwrap();
    let e = evaluate(
        &two.chain,
        Some("api.example"),
        t0() + DAY,
        &system(&w, Some(list(&w, 0, "usable"))),
    )
    .unwrap();
    assert_eq!(problems(&e), [Problem::CtRequired { valid: 2, required: 3, operators: 2 }]);
    let three =
        w.ca.issue_logged(&["api.example"], &long, &[&w.logs[0], &w.logs[1], &w.logs[3]], t0())
            .unwrap();
    assert!(
        evaluate(
            &three.chain,
            Some("api.example"),
            t0() + DAY,
            &system(&w, Some(list(&w, 0, "usable")))
        )
        .unwrap()
        .trusted()
    );
    // No SCTs at all.
    let none = w.ca.issue(&["api.example"], &profile).unwrap();
    let e = evaluate(
        &none.chain,
        Some("api.example"),
        t0() + DAY,
        &system(&w, Some(list(&w, 0, "usable"))),
    )
    .unwrap();
    assert_eq!(problems(&e), [Problem::CtRequired { valid: 0, required: 2, operators: 0 }]);
    // Custom anchors do not need CT unless asked.
    let custom = Options {
        anchors: vec![Anchor { der: w.ca.root_der(), class: AnchorClass::Custom }],
        ..Options::default()
    };
    assert!(evaluate(&none.chain, Some("api.example"), t0() + DAY, &custom).unwrap().trusted());
}

#[test]
fn scts_after_the_verify_time_and_from_logs_that_did_not_count_are_ignored() {
    let w = world();
    let profile = Profile { not_before: Some(t0()), ..Profile::default() };
    let future =
        w.ca.issue_logged(&["api.example"], &profile, &[&w.logs[0], &w.logs[1]], t0() + 10 * DAY)
            .unwrap();
    let e = evaluate(
        &future.chain,
        Some("api.example"),
        t0() + DAY,
        &system(&w, Some(list(&w, 0, "usable"))),
    )
    .unwrap();
    assert_eq!(problems(&e), [Problem::CtRequired { valid: 0, required: 2, operators: 0 }]);
    let leaf = logged(&w, &[0, 1]);
    for state in ["pending", "rejected"] {
        let e = evaluate(
            &leaf.chain,
            Some("api.example"),
            t0() + DAY,
            &system(&w, Some(list(&w, 0, state))),
        )
        .unwrap();
        assert!(!e.trusted(), "{state} logs do not count");
    }
    // Retired a year before the SCTs: they do not count; read-only logs do.
    assert!(
        !evaluate(
            &leaf.chain,
            Some("api.example"),
            t0() + DAY,
            &system(&w, Some(list(&w, 0, "retired")))
        )
        .unwrap()
        .trusted()
    );
    assert!(
        evaluate(
            &leaf.chain,
            Some("api.example"),
            t0() + DAY,
            &system(&w, Some(list(&w, 0, "readonly")))
        )
        .unwrap()
        .trusted()
    );
    // A list that does not know the logs.
    let other = world();
    let e = evaluate(
        &leaf.chain,
        Some("api.example"),
        t0() + DAY,
        &system(&w, Some(list(&other, 0, "usable"))),
    )
    .unwrap();
    assert!(!e.trusted());
}

#[test]
fn a_stale_or_missing_list_is_not_enforced_and_says_so_unless_ct_is_always_required() {
    let w = world();
    // SCTs from logs a fresh list does not know: refused.
    let bare = logged(&w, &[0, 1]);
    let fresh = system(&w, Some(list(&world(), 0, "usable")));
    assert!(!evaluate(&bare.chain, Some("api.example"), t0() + DAY, &fresh).unwrap().trusted());
    // The same list 80 days later is stale: CT is not enforced, and a note says why.
    let e = evaluate(&bare.chain, Some("api.example"), t0() + 80 * DAY, &fresh).unwrap();
    assert!(e.trusted(), "{:?}", e.failure_lines());
    assert_eq!(e.notes, [Note::CtNotEnforcedStaleLogList { age_days: 80 }]);
    assert!(e.notes[0].to_string().contains("80 days old"), "{}", e.notes[0]);
    // No list at all: the same.
    let e = evaluate(&bare.chain, Some("api.example"), t0() + DAY, &system(&w, None)).unwrap();
    assert!(e.trusted());
    assert_eq!(e.notes, [Note::CtNotEnforcedNoLogList]);
    // Required always, by the caller's own choice: a stale list is a failure.
    let always = Options { ct: nw_trust::CtRequirement::Always, ..fresh };
    let e = evaluate(&bare.chain, Some("api.example"), t0() + 80 * DAY, &always).unwrap();
    assert_eq!(
        e.failure_lines(),
        ["Certificate 0 “api.example” has errors: Certificate Transparency log list is stale;"]
    );
    assert_eq!(problems(&e), [Problem::LogListStale { age_days: 80 }]);
}

#[test]
fn a_tampered_sct_does_not_verify() {
    let w = world();
    let leaf = logged(&w, &[0, 1]);
    let mut scts = ct::embedded(&leaf.chain[0]).unwrap().unwrap();
    let list = list(&w, 0, "usable");
    let entry = ct::Entry::X509(leaf.chain[0].as_ref());
    // Embedded SCTs sign the precertificate, not the final certificate.
    assert!(!ct::verify(&scts[0], entry, &list.logs[0]));
    scts[0].timestamp += 1;
    let outcome = ct::check(&leaf.chain[0], &[], &scts, &list, t0() + DAY, 90);
    assert!(outcome.rejected.iter().any(|r| r.contains("does not verify")), "{outcome:?}");
}

#[test]
fn sct_lists_and_log_lists_reject_bad_input_with_typed_errors() {
    let w = world();
    let log = &w.logs[0];
    let sct = log.sign(ct::Entry::X509(b"x"), 1).unwrap();
    let bytes = ct::encode_sct_list(std::slice::from_ref(&sct));
    assert_eq!(ct::parse_sct_list(&bytes).unwrap(), [sct]);
    for cut in 0..bytes.len() {
        assert!(ct::parse_sct_list(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    assert!(ct::parse_sct_list(&[0, 0]).unwrap().is_empty());
    assert!(matches!(LogList::from_json(b"{}"), Err(ct::CtError::LogList(_))));
    assert!(matches!(LogList::from_json(b"not json"), Err(ct::CtError::LogList(_))));
    let json = log_list_json(&[log], t0(), "usable", t0()).replace("\"usable\"", "\"sleeping\"");
    assert!(LogList::from_json(json.as_bytes()).unwrap_err().to_string().contains("state"));
}

#[test]
fn scts_over_the_certificate_itself_count_when_they_come_with_the_connection() {
    let w = world();
    let leaf =
        w.ca.issue(&["api.example"], &Profile { not_before: Some(t0()), ..Profile::default() })
            .unwrap();
    let entry = ct::Entry::X509(leaf.chain[0].as_ref());
    let ms = u64::try_from(t0()).unwrap() * 1000;
    let scts = vec![w.logs[0].sign(entry, ms).unwrap(), w.logs[1].sign(entry, ms).unwrap()];
    let options = Options { extra_scts: scts, ..system(&w, Some(list(&w, 0, "usable"))) };
    let e = evaluate(&leaf.chain, Some("api.example"), t0() + DAY, &options).unwrap();
    assert!(e.trusted(), "{:?}", e.failure_lines());
}
