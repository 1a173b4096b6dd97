//! The fuzz corpora (`fuzz/corpus/*`, grown by `cargo fuzz run`) replayed through the same
//! entry points the fuzz targets call: every input must return without a panic.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    // The directory at run time (cargo and nextest set it): a test binary built in another
    // clone that shares the target directory is reused here, with that clone's path built in.
    let crate_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    let dir = PathBuf::from(crate_dir).join("../../fuzz/corpus").join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let files: Vec<_> = entries
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    assert!(!files.is_empty(), "{} is empty: nothing would be replayed", dir.display());
    files
}

#[test]
fn fuzz_corpora_replay_without_panics() {
    type Target = (&'static str, fn(&[u8]));
    let targets: [Target; 7] = [
        ("certificate", nw_trust::fuzz::certificate),
        ("pem", nw_trust::fuzz::pem),
        ("time", nw_trust::fuzz::time),
        ("crl", nw_trust::fuzz::crl),
        ("sct_list", nw_trust::fuzz::sct_list),
        ("log_list", nw_trust::fuzz::log_list),
        ("ocsp", nw_trust::fuzz::ocsp),
    ];
    for (name, run) in targets {
        for (path, bytes) in corpus(name) {
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{name}: {} panicked", path.display());
        }
    }
}
