//! The endpoint fuzz corpus (`fuzz/corpus/endpoint`) replayed through the fuzz target's body.

#[test]
fn endpoint_corpus_replays() {
    // The directory at run time (cargo and nextest set it): a test binary built in another
    // clone that shares the target directory is reused here, with that clone's path built in.
    let crate_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    let dir = std::path::PathBuf::from(crate_dir).join("../../fuzz/corpus/endpoint");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        nw_connection::fuzz::endpoint(&bytes);
        n += 1;
    }
    assert!(n > 0, "{} is empty: nothing was replayed", dir.display());
}
