//! The endpoint fuzz corpus (`fuzz/corpus/endpoint`) replayed through the fuzz target's body.

#[test]
fn endpoint_corpus_replays() {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/endpoint");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        nw_connection::endpoint::fuzz(&bytes);
        n += 1;
    }
    assert!(n > 0, "{} is empty: nothing was replayed", dir.display());
}
