//! Real public chains (see `tests/data/real-world/README.md`) under the system anchors at a
//! fixed verify time: without a log list, or with a stale one, they proceed and say CT was not
//! checked; with a fresh list that does not know their logs, they fail as CT requires. And
//! Google's real signed list: its signature verifies with the published key, a changed byte
//! does not.

use std::path::PathBuf;
use std::sync::Arc;

use nw_trust::ct::{self, GOOGLE_LOG_LIST_KEY, LogList};
use nw_trust::evaluate;
use nw_trust::time::parse_rfc3339;
use nw_trust::{Note, Options, Problem, Verdict};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/real-world").join(name)
}

fn system() -> Options {
    let anchors = nw_trust::system_anchors().unwrap_or_else(|e| {
        panic!("these tests need the system's anchors (apt-get install ca-certificates): {e}")
    });
    Options { anchors, ..Options::default() }
}

fn at() -> i64 {
    parse_rfc3339("2026-04-01T00:00:00Z").unwrap()
}

const SITES: [(&str, &str); 2] =
    [("letsencrypt_org.pem", "letsencrypt.org"), ("aws_amazon_com.pem", "aws.amazon.com")];

#[test]
fn public_chains_proceed_without_a_log_list_and_say_ct_was_not_checked() {
    for (file, host) in SITES {
        let chain = nw_trust::load_pem(&data(file)).unwrap();
        let e = evaluate(&chain, Some(host), at(), &system()).unwrap();
        assert_eq!(e.verdict, Verdict::Proceed, "{host}: {:?}", e.failure_lines());
        assert_eq!(e.anchor_class, Some(nw_trust::AnchorClass::System), "{host}");
        assert_eq!(e.notes, [Note::CtNotEnforcedNoLogList], "{host}");
        // Another host is still refused: no note hides a real failure.
        let e = evaluate(&chain, Some("example.org"), at(), &system()).unwrap();
        assert_eq!(e.verdict, Verdict::RecoverableFailure, "{host}");
    }
}

#[test]
fn public_chains_fail_under_a_fresh_list_that_does_not_know_their_logs() {
    let log = nw_trust::ca::TestLog::new("Operator A", "A").unwrap();
    let json = nw_trust::ca::log_list_json(&[&log], at() - 86_400, "usable", at() - 400 * 86_400);
    let list = Arc::new(LogList::from_json(json.as_bytes()).unwrap());
    for (file, host) in SITES {
        let chain = nw_trust::load_pem(&data(file)).unwrap();
        let options = Options { log_list: Some(list.clone()), ..system() };
        let e = evaluate(&chain, Some(host), at(), &options).unwrap();
        assert_eq!(e.verdict, Verdict::RecoverableFailure, "{host}");
        assert!(
            matches!(e.certificates[0].problems[..], [Problem::CtRequired { valid: 0, .. }]),
            "{host}: {:?}",
            e.certificates[0].problems
        );
        assert!(e.notes.is_empty());
    }
}

#[test]
fn googles_signed_list_verifies_and_a_stale_one_is_a_note() {
    let json = std::fs::read(data("google_all_logs_list_2023-05-31.json")).unwrap();
    let sig = std::fs::read(data("google_all_logs_list_2023-05-31.sig")).unwrap();
    ct::verify_signature(&json, &sig, GOOGLE_LOG_LIST_KEY).unwrap();
    let mut changed = json.clone();
    let i = changed.iter().position(|&b| b == b'G').unwrap();
    changed[i] = b'H';
    let refused = ct::verify_signature(&changed, &sig, GOOGLE_LOG_LIST_KEY).unwrap_err();
    assert!(refused.to_string().contains("does not verify"), "{refused}");
    assert!(ct::verify_signature(&json, &sig[1..], GOOGLE_LOG_LIST_KEY).is_err());
    // Saved: only with its signature, atomically, and read back the same.
    let dir = std::env::temp_dir().join(format!("nw-ct-save-{}", std::process::id()));
    let path = dir.join("nested/log_list.json");
    assert!(ct::save(&changed, &sig, GOOGLE_LOG_LIST_KEY, &path).is_err());
    assert!(!path.exists(), "a refused list is not written");
    let list = ct::save(&json, &sig, GOOGLE_LOG_LIST_KEY, &path).unwrap();
    assert_eq!(LogList::from_file(&path).unwrap(), list);
    assert!(list.logs.len() > 20, "{}", list.logs.len());
    let _ = std::fs::remove_dir_all(&dir);
    // In 2026 that list is three years old: CT is not enforced, and the note says how old.
    let chain = nw_trust::load_pem(&data("letsencrypt_org.pem")).unwrap();
    let options = Options { log_list: Some(Arc::new(list)), ..system() };
    let e = evaluate(&chain, Some("letsencrypt.org"), at(), &options).unwrap();
    assert_eq!(e.verdict, Verdict::Proceed, "{:?}", e.failure_lines());
    assert!(
        matches!(e.notes[..], [Note::CtNotEnforcedStaleLogList { age_days }] if age_days > 1000),
        "{:?}",
        e.notes
    );
}
