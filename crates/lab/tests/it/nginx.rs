//! The nginx guard: a start that cannot come up says why at once.

use std::time::{Duration, Instant};

use nw_lab::LabError;
use nw_lab::nginx::{Nginx, Options};

/// nginx refusing its configuration (as it refuses a port another socket took) exits before
/// it listens: the start fails within a few seconds, not after the 10 s wait for each of its
/// tries, and the error carries what nginx said.
#[test]
fn an_nginx_that_exits_before_listening_fails_the_start_at_once_saying_why() {
    let root = std::env::temp_dir().join(format!("nw-lab-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let options = Options { extra: "no_such_directive on;".into(), ..Options::default() };
    let started = Instant::now();
    let e = Nginx::start(&root, &options).err();
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&root);
    match e {
        Some(LabError::Command { stderr, .. }) => {
            assert!(stderr.contains("no_such_directive"), "{stderr}")
        }
        other => panic!("expected nginx's own refusal, got {other:?}"),
    }
    assert!(took < Duration::from_secs(8), "it waited {took:?} for an nginx that had exited");
}
