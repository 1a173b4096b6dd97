//! The tool's contract on this host: exit statuses, errors that say what to try, JSON shapes.

use std::process::Command;

use crate::watch::NW;

fn nw(args: &[&str]) -> (i32, String, String) {
    nw_env(args, &[])
}

fn nw_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(NW).args(args).envs(env.iter().copied()).output().expect("run nw");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn usage_errors_exit_2_and_say_what_is_expected() {
    let (code, _, err) = nw(&["path", "--require-type", "bogus"]);
    assert_eq!(code, 2);
    assert!(err.contains("expected one of wired, wifi, cellular, other, loopback"), "{err}");
    let (code, _, err) = nw(&["path", "--count", "1"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = nw(&["frobnicate"]);
    assert_eq!(code, 2);
}

#[test]
fn doctor_json_has_the_sections_shape() {
    let (code, out, err) = nw(&["doctor", "--json"]);
    assert_eq!(code, 0, "doctor failed on this host: {out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sections = v["sections"].as_array().unwrap();
    for name in ["interfaces", "path", "cost", "monitor"] {
        let s = sections
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} section: {v}"));
        assert!(["ok", "warn", "fail"].contains(&s["status"].as_str().unwrap()), "{s}");
        assert!(s["details"].is_object(), "{s}");
    }
}

#[test]
fn doctor_with_an_unreachable_target_exits_1_and_explains() {
    // Port 1 on loopback: nothing listens, the kernel refuses at once.
    let (code, out, _) = nw(&["doctor", "127.0.0.1:1"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL") && out.contains("could not connect to 127.0.0.1:1"), "{out}");
    let (code, out, _) = nw(&["doctor", "--json", "no-port-here"]);
    assert_eq!(code, 1);
    assert!(out.contains("has no port"), "{out}");
}

#[test]
fn doctor_reaches_a_listening_loopback_target() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let (code, out, err) = nw(&["doctor", &target]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("TCP connected"), "{out}");
}

#[test]
fn a_bad_cost_config_file_is_an_error_that_names_it() {
    let dir = std::env::temp_dir().join(format!("nw-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "expensiv = [\"eth0\"]\n").unwrap();
    let (code, _, err) = nw_env(&["path"], &[("NW_PATH_CONFIG", bad.to_str().unwrap())]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("bad.toml") && err.contains("expensiv") && err.contains("fix the file"),
        "{err}"
    );
}
