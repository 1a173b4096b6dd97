//! `nw get` for real, against nginx on loopback: `kill -9` at random moments of a 1 GiB
//! download, each followed by `--resume`, ends with the right SHA-256 and never re-downloads
//! more than one checkpoint interval.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nw_lab::nginx::{Nginx, Options};
use serde_json::Value;

use crate::support::{Dir, NW};

/// nw get's default checkpoint interval: the most a `kill -9` may cost.
const CHECKPOINT: u64 = 64 << 20;

/// A scratch directory with `www/` for nginx to serve.
fn scratch(tag: &str) -> Dir {
    let dir = Dir::new(&format!("get-{tag}"));
    std::fs::create_dir_all(dir.0.join("www")).unwrap();
    dir
}

fn nw_get(scratch: &Dir, args: &[&str]) -> Command {
    let mut cmd = Command::new(NW);
    cmd.arg("get").args(args).current_dir(&scratch.0).env("NW_STORE", scratch.0.join("store.db"));
    cmd
}

/// A throwaway CA's server certificate for 127.0.0.1 in `scratch`: (chain, key, anchor) PEMs.
fn tls_files(scratch: &Dir) -> (PathBuf, PathBuf, PathBuf) {
    let ca = nw_trust::ca::TestCa::new("nw get test CA").unwrap();
    let issued = ca.server(&["127.0.0.1"]).unwrap();
    let (cert, key, anchor) =
        (scratch.0.join("cert.pem"), scratch.0.join("key.pem"), scratch.0.join("ca.pem"));
    std::fs::write(&cert, &issued.chain_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    std::fs::write(&anchor, ca.cert_pem()).unwrap();
    (cert, key, anchor)
}

/// nginx serving the scratch's `www/` over HTTP and HTTPS, and the path of the anchor for
/// its certificate.
fn https_nginx(scratch: &Dir) -> (Nginx, String) {
    let (cert, key, anchor) = tls_files(scratch);
    let server = nginx(scratch, &Options { tls: Some((cert, key)), ..Options::default() });
    (server, anchor.to_string_lossy().into_owned())
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum (coreutils) runs");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

/// nginx serving the scratch's `www/`.
fn nginx(scratch: &Dir, options: &Options) -> Nginx {
    Nginx::start(&scratch.0.join("www"), options)
        .unwrap_or_else(|e| panic!("nginx could not start: {e}"))
}

/// `len` bytes that differ with `seed` (a shift), so no two files of a test are alike.
fn pattern(len: u32, seed: u32) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> seed).to_le_bytes()[0]).collect()
}

/// The bytes free for an unprivileged writer on the file system that holds `dir` (`df`).
fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("df (coreutils) could not be run: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("df said nothing readable about {}: {text}", dir.display()))
}

/// A small deterministic generator for the kill times.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

#[test]
fn get_kill_9_at_random_points_then_resume_ends_with_the_right_sha256() {
    let scratch = scratch("kill9");
    // The source and the download take 2 GiB: on a fuller disk the download fails with
    // ENOSPC, which would look like a resume that does not work.
    let free = free_bytes(&scratch.0);
    assert!(
        free > 3 << 30,
        "this test needs 3 GiB free where {} is, and there are {} MiB: free some space (an old \
         cargo target directory?)",
        scratch.0.display(),
        free >> 20
    );
    let source = scratch.0.join("www/big.bin");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("head -c 1073741824 /dev/urandom > '{}'", source.display()))
        .status()
        .unwrap();
    assert!(status.success(), "could not write the 1 GiB source file");
    let expected = sha256sum(&source);
    // 128 MB/s: about eight seconds for the whole file, so kills land mid-transfer.
    let server = nginx(&scratch, &Options { slow_rate: Some("128m".into()), ..Options::default() });
    let url = server.url("/slow/big.bin");
    let dest = scratch.0.join("big.bin");
    let mut seed = u64::from(std::process::id());
    // Bytes in FILE.part when the last run was killed: what a resume may give up at most one
    // checkpoint interval of.
    let mut on_disk: Option<u64> = None;
    let mut kills = 0;
    for round in 0..8 {
        let mut child = nw_get(&scratch, &["--json", "--resume", &url, "-o", "big.bin"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(300 + next(&mut seed) % 1200));
        child.kill().unwrap();
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let started = lines.iter().find(|v| v["event"] == "started");
        if let (Some(started), Some(before)) = (started, on_disk) {
            let from = started["from"].as_u64().unwrap();
            assert!(
                from + CHECKPOINT >= before,
                "round {round}: resumed from {from} with {before} bytes on disk: more than one checkpoint interval lost"
            );
            assert!(
                from <= before,
                "round {round}: resumed from {from}, beyond the {before} bytes on disk"
            );
            eprintln!(
                "round {round}: {before} bytes on disk after the kill, resumed from {from} ({} given up)",
                before - from
            );
        }
        if lines.iter().any(|v| v["event"] == "done") || dest.exists() {
            break;
        }
        kills += 1;
        on_disk = std::fs::metadata(scratch.0.join("big.bin.part")).map(|m| m.len()).ok();
    }
    assert!(kills >= 5, "only {kills} kills landed mid-download");
    if !dest.exists() {
        let out =
            nw_get(&scratch, &["--json", "--resume", "--sha256", &expected, &url, "-o", "big.bin"])
                .output()
                .unwrap();
        assert!(
            out.status.success(),
            "the last resume failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert_eq!(sha256sum(&dest), expected, "the file is byte-exact after {kills} kills");
    assert!(!scratch.0.join("big.bin.part").exists());
    eprintln!("{kills} kill -9s, then a resume: SHA-256 matches");
}

#[test]
fn get_saves_to_the_urls_last_segment_and_reports_json() {
    let scratch = scratch("json");
    std::fs::write(scratch.0.join("www/data.bin"), vec![7u8; 300_000]).unwrap();
    let server = nginx(&scratch, &Options::default());
    let out = nw_get(&scratch, &["--json", &server.url("/data.bin")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done = json_lines(&out.stdout).into_iter().find(|v| v["event"] == "done");
    let done = done.expect("a done line");
    assert_eq!(done["bytes"], 300_000);
    assert_eq!(done["metrics"]["protocol"], "http/1.1");
    assert_eq!(std::fs::read(scratch.0.join("data.bin")).unwrap().len(), 300_000);
    // Again: the file exists, so nw get refuses (exit 2) and says how to replace it.
    let again = nw_get(&scratch, &[&server.url("/data.bin")]).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    // A 404 is a negative result (exit 1) that names the status.
    let missing = nw_get(&scratch, &[&server.url("/nope.bin")]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

/// Several URLs: one missing (404) and one whose file is in the way do not stop the others,
/// and the run ends with a summary naming what failed — exit 2, since one was a usage error.
#[test]
fn get_several_urls_goes_on_past_failures_and_sums_up() {
    let scratch = scratch("several");
    for (name, n) in [("a.bin", 1000), ("b.bin", 2000), ("c.bin", 3000)] {
        std::fs::write(scratch.0.join("www").join(name), vec![1u8; n]).unwrap();
    }
    std::fs::write(scratch.0.join("b.bin"), b"mine").unwrap();
    let server = nginx(&scratch, &Options::default());
    let urls = ["/a.bin", "/nope.bin", "/b.bin", "/c.bin"].map(|p| server.url(p));
    let out = nw_get(&scratch, &urls.each_ref().map(String::as_str)).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(std::fs::read(scratch.0.join("c.bin")).unwrap().len(), 3000, "{stderr}");
    assert_eq!(std::fs::read(scratch.0.join("b.bin")).unwrap(), b"mine", "not replaced");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("2 of 4 saved (3.9 KiB in "), "{stderr}");
    assert!(last.contains(&format!("failed: {}, {}", urls[1], urls[2])), "{stderr}");

    let json = nw_get(&scratch, &["--json", "--force", &urls[0], &urls[1]]).output().unwrap();
    assert_eq!(json.status.code(), Some(1));
    let summary = json_lines(&json.stdout).into_iter().find(|v| v["event"] == "summary");
    let summary = summary.expect("a summary line");
    assert_eq!((summary["saved"].as_u64(), summary["failed"].as_u64()), (Some(1), Some(1)));
    assert_eq!(summary["failed_urls"][0], urls[1].as_str());
    assert_eq!(summary["bytes"], 1000);
}

#[test]
fn get_blocks_plain_http_to_a_public_name_and_names_the_way_out() {
    let scratch = scratch("ats");
    let out = nw_get(&scratch, &["http://example.test/file.bin"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("insecure load blocked") && stderr.contains("--allow-http"),
        "{stderr}"
    );
    assert!(!scratch.0.join("file.bin.part").exists(), "nothing was written");
}

/// A URL off the web is refused for what it is, before anything is asked of its address or
/// its file name: `file:///etc/passwd` was "there is no host", `ftp://host` (no path) "names
/// no file to save to; give -o FILE" — neither of which a -o or a host would mend; a host and
/// path with no scheme was "there is no port" or ""/x" follows HOST:PORT".
#[test]
fn get_and_send_refuse_urls_off_the_web_for_their_scheme() {
    let scratch = scratch("scheme");
    for (args, says) in [
        (
            &["get", "file:///etc/passwd"][..],
            "file:///etc/passwd: only http:// and https:// URLs can be loaded",
        ),
        (&["get", "ftp://example.test"], "ftp://example.test: FTP is not supported"),
        (&["get", "-o", "x", "FILE:///etc/passwd"], "only http:// and https:// URLs can be loaded"),
        (&["send", "gopher://example.test/x"], "only http:// and https:// URLs can be loaded"),
        (&["get", "mailto:a@example.test"], "only http:// and https:// URLs can be loaded"),
        // No scheme is not taken as http:// (that choice decides whether the load is secure).
        (
            &["get", "example.test:8080/f"],
            "\"example.test:8080/f\" is not a URL: it has no scheme; give http://example.test:8080/f or https://example.test:8080/f",
        ),
        (&["send", "example.test"], "give http://example.test or https://example.test"),
        // Nothing, or no host: the hint is a URL's, never HOST:PORT (which nw cat takes).
        (&["get", ""], "\"\": no URL; give http(s)://HOST/PATH"),
        (&["get", "-o", "x", " "], "\" \": no URL; give http(s)://HOST/PATH"),
        (&["send", ""], "\"\": no URL; give http(s)://HOST/PATH"),
        (&["put", "/etc/hostname", ""], "\"\": no URL; give http(s)://HOST/PATH"),
        (&["get", "http:///x"], "\"http:///x\": there is no host; give http(s)://HOST/PATH"),
        (&["get", "-o", "x", "https://"], "there is no host; give http(s)://HOST/PATH"),
    ] {
        let out = nw(&scratch, args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says) && !err.contains("HOST:PORT"), "{args:?}: {err}");
    }
    assert!(!scratch.0.join("x.part").exists(), "nothing was written");
}

#[test]
fn get_http3_only_from_ngtcp2_with_an_anchor_reports_h3() {
    let scratch = scratch("h3");
    std::fs::write(scratch.0.join("www/data.bin"), vec![9u8; 2_000_000]).unwrap();
    let (cert, key, anchor) = tls_files(&scratch);
    let server = nw_lab::ngtcp2::Gtlsserver::start(&scratch.0.join("www"), &cert, &key)
        .unwrap_or_else(|e| panic!("gtlsserver could not start: {e}"));
    let anchor = anchor.to_string_lossy().into_owned();
    let args = ["--json", "--http3-only", "--anchor", &anchor, &server.url("/data.bin")];
    let out = nw_get(&scratch, &args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done = json_lines(&out.stdout).into_iter().find(|v| v["event"] == "done");
    let done = done.expect("a done line");
    assert_eq!(done["metrics"]["protocol"], "h3");
    assert_eq!(std::fs::read(scratch.0.join("data.bin")).unwrap(), vec![9u8; 2_000_000]);
    // --http1 rules HTTP/3 out, so asking for both is a usage error.
    let both = nw_get(&scratch, &["--http1", "--http3", &server.url("/data.bin")]).output();
    assert_eq!(both.unwrap().status.code(), Some(2));
}

fn nw(scratch: &Dir, args: &[&str]) -> Command {
    let mut cmd = Command::new(NW);
    cmd.args(args).current_dir(&scratch.0).env("NW_STORE", scratch.0.join("store.db"));
    cmd
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[test]
fn get_queue_then_transfers_run_picks_up_after_kill_9() {
    let scratch = scratch("queue");
    let names = ["a.bin", "b.bin", "c.bin"];
    for (i, name) in names.iter().enumerate() {
        let fill = format!("head -c {} /dev/urandom > 'www/{name}'", (40 + 4 * i) << 20);
        assert!(
            Command::new("sh")
                .arg("-c")
                .arg(fill)
                .current_dir(&scratch.0)
                .status()
                .unwrap()
                .success()
        );
    }
    let sums: Vec<String> =
        names.iter().map(|n| sha256sum(&scratch.0.join("www").join(n))).collect();
    // 16 MB/s per connection: about three seconds a file, so the kill lands mid-transfer.
    let server = nginx(&scratch, &Options { slow_rate: Some("16m".into()), ..Options::default() });
    for (name, sum) in names.iter().zip(&sums) {
        let url = server.url(&format!("/slow/{name}"));
        let out = nw_get(&scratch, &["--queue", "--sha256", sum, &url]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let listed = json_lines(&nw(&scratch, &["transfers", "--json"]).output().unwrap().stdout);
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|r| r["state"] == "queued"), "{listed:?}");
    assert!(!scratch.0.join("a.bin.part").exists(), "queueing downloads nothing");

    // The first run is killed once every download has a checkpoint behind it.
    let mut child = nw(&scratch, &["transfers", "run", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut written = std::collections::BTreeMap::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
        if v["event"] == "progress" {
            written.insert(v["id"].as_i64().unwrap(), v["written"].as_u64().unwrap());
        }
        if written.len() == 3 && written.values().all(|w| *w >= 24 << 20) {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(written.len(), 3, "three downloads ran side by side: {written:?}");
    let listed = json_lines(&nw(&scratch, &["transfers", "--json"]).output().unwrap().stdout);
    assert!(
        listed.iter().all(|r| r["state"] == "running" && r["offset"].as_u64().unwrap() > 0),
        "{listed:?}"
    );

    // The second run picks each up from its checkpoint and finishes.
    let out = nw(&scratch, &["transfers", "run", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out.stdout);
    let resumed: Vec<u64> = lines
        .iter()
        .filter(|v| v["event"] == "started")
        .map(|v| v["from"].as_u64().unwrap())
        .collect();
    assert_eq!(resumed.len(), 3);
    assert!(resumed.iter().all(|from| *from > 0), "each resumed from its checkpoint: {resumed:?}");
    let summary = lines.iter().find(|v| v["event"] == "summary").unwrap();
    assert_eq!((summary["done"].as_u64(), summary["failed"].as_u64()), (Some(3), Some(0)));
    for (name, sum) in names.iter().zip(&sums) {
        assert_eq!(&sha256sum(&scratch.0.join(name)), sum, "{name} is byte-exact");
    }

    // Nothing is left to run; finished transfers can be cleared.
    let again = json_lines(&nw(&scratch, &["transfers", "run", "--json"]).output().unwrap().stdout);
    assert_eq!(again.last().unwrap()["done"], 0);
    assert!(nw(&scratch, &["transfers", "clear"]).status().unwrap().success());
    assert!(
        json_lines(&nw(&scratch, &["transfers", "--json"]).output().unwrap().stdout).is_empty()
    );
}

#[test]
fn get_queue_refuses_up_front_and_a_failed_transfer_is_recorded() {
    let scratch = scratch("queue-fail");
    let server = nginx(&scratch, &Options::default());
    // Refusals come at queueing time, with exit 2: a blocked insecure load, --force.
    let blocked = nw_get(&scratch, &["--queue", "http://example.test/x.bin"]).output().unwrap();
    assert_eq!(blocked.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&blocked.stderr).contains("--allow-http"));
    let forced = nw_get(&scratch, &["--queue", "--force", &server.url("/x.bin")]).output().unwrap();
    assert_eq!(forced.status.code(), Some(2));
    // A 404 fails for good: no retries, exit 1, and the list says why.
    let queued = nw_get(&scratch, &["--queue", &server.url("/missing.bin")]).output().unwrap();
    assert!(queued.status.success());
    let out = nw(&scratch, &["transfers", "run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("404") && stderr.contains("0 done, 1 failed"), "{stderr}");
    assert!(!stderr.contains("attempt 2"), "a 404 is not retried: {stderr}");
    let listed = json_lines(&nw(&scratch, &["transfers", "--json"]).output().unwrap().stdout);
    assert_eq!(listed[0]["state"], "failed");
    assert!(listed[0]["error"].as_str().unwrap().contains("404"));
}

#[test]
fn get_segments_fetches_ranges_side_by_side_checks_the_digest_and_queues_them() {
    let scratch = scratch("segments");
    let data = pattern(32 << 20, 13);
    std::fs::write(scratch.0.join("www/big.bin"), &data).unwrap();
    let server = nginx(&scratch, &Options::default());
    let digest = sha256sum(&scratch.0.join("www/big.bin"));
    let url = server.url("/big.bin");
    let out = nw_get(&scratch, &["--json", "--segments", "4", "--sha256", &digest, &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out.stdout);
    let started = lines.iter().find(|v| v["event"] == "started").expect("a started line");
    assert_eq!(started["segments"], 4, "{started}");
    let done = lines.iter().find(|v| v["event"] == "done").expect("a done line");
    assert_eq!((done["segments"].as_u64(), done["sha256"].as_str()), (Some(4), Some(&*digest)));
    assert_eq!(sha256sum(&scratch.0.join("big.bin")), digest);
    // A wrong digest keeps the file out of place, segments or not.
    let wrong = "0".repeat(64);
    let out = nw_get(&scratch, &["--segments", "4", "--sha256", &wrong, "-o", "bad.bin", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !scratch.0.join("bad.bin").exists(),
        "a file whose digest is wrong is not put in place"
    );
    for bad in ["0", "17", "many"] {
        let out = nw_get(&scratch, &["--segments", bad, "-o", "x.bin", &url]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "--segments {bad}");
    }
    // Queued with segments: the store keeps the setting for `nw transfers run`.
    let out = nw_get(&scratch, &["--queue", "--segments", "3", "-o", "q.bin", &url]).output();
    assert!(out.unwrap().status.success());
    let out = nw(&scratch, &["transfers", "run", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let done = json_lines(&out.stdout).into_iter().find(|v| v["event"] == "done");
    assert_eq!(done.expect("a done line")["segments"], 3);
    assert_eq!(sha256sum(&scratch.0.join("q.bin")), digest);
}

#[test]
fn get_put_uploads_byte_exact_over_http1_and_h2_and_explains_refusals() {
    let scratch = scratch("put");
    let data = pattern(24 << 20, 11);
    let source = scratch.0.join("source.bin");
    std::fs::write(&source, &data).unwrap();
    let (server, anchor) = https_nginx(&scratch);
    let put = |args: &[&str]| nw(&scratch, &[&["put"], args].concat()).output().unwrap();

    // Plain HTTP (a loopback literal needs no --allow-http), JSON progress and result.
    let out = put(&["--json", "source.bin", &server.url("/put/a.bin")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out.stdout);
    let done = lines.iter().find(|v| v["event"] == "done").expect("a done line");
    assert_eq!((done["status"].as_u64(), done["sent"].as_u64()), (Some(201), Some(24 << 20)));
    assert_eq!(done["metrics"]["protocol"], "http/1.1");
    let last = lines.iter().rfind(|v| v["event"] == "progress").expect("progress lines");
    assert_eq!(last["written"].as_u64(), Some(24 << 20), "{last}");
    assert!(std::fs::read(scratch.0.join("www/put/a.bin")).unwrap() == data, "byte-exact");

    // HTTPS with a private anchor: HTTP/2, and the summary on stderr.
    let out = put(&["--anchor", &anchor, "source.bin", &server.https_url("/put/b.bin").unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("over h2") && stderr.contains(": 201"), "{stderr}");
    assert!(std::fs::read(scratch.0.join("www/put/b.bin")).unwrap() == data, "byte-exact");

    // The server refuses a POST to a file: a negative result that names the status once.
    let out = put(&["--post", "source.bin", &server.url("/put/a.bin")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("answered 405"), "{stderr}");
    assert_eq!(stderr.matches("/put/a.bin").count(), 1, "the URL once: {stderr}");
    // A file that is not there: a usage error that names it, before any connection.
    let out = put(&["absent.bin", &server.url("/put/d.bin")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("absent.bin"), "{stderr}");
    assert!(!scratch.0.join("www/put/d.bin").exists());
    // How downloads are written means nothing to an upload: not offered.
    let out = put(&["--no-fsync", "source.bin", &server.url("/put/d.bin")]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Bearer tokens: `--bearer`, and `--bearer-command`, asked again after a 401 with the
/// server's challenge, so an expired token is replaced and the request sent once more — for a
/// download and an upload alike, against nginx refusing all but the fresh token.
#[test]
fn get_and_put_take_bearer_tokens_and_a_command_that_refreshes_them() {
    let scratch = scratch("bearer");
    let data = pattern(64 << 10, 31);
    std::fs::create_dir_all(scratch.0.join("www/api")).unwrap();
    std::fs::write(scratch.0.join("www/api/file.bin"), &data).unwrap();
    let refuse = r#"if ($http_authorization != "Bearer tok2") {
                add_header WWW-Authenticate 'Bearer error="invalid_token"' always;
                return 401;
            }"#;
    let extra = format!(
        "location /api/ {{ {refuse} }}
         location /api-put/ {{ {refuse} dav_methods PUT; create_full_put_path on; }}
         location = /away/file.bin {{ return 302 http://localhost:$server_port/api/file.bin; }}"
    );
    let server = nginx(&scratch, &Options { extra, ..Options::default() });
    let url = server.url("/api/file.bin");
    // Hands out tok1, tok2, … and notes what it was told.
    let dir = scratch.0.display().to_string();
    std::fs::write(
        scratch.0.join("token.sh"),
        format!(
            "n=$(( $(cat {dir}/count 2>/dev/null || echo 0) + 1 )); echo $n > {dir}/count\n\
             echo \"$NW_AUTH_URL|${{NW_AUTH_CHALLENGE-none}}\" >> {dir}/asked\necho tok$n\n"
        ),
    )
    .unwrap();
    let command = format!("sh {dir}/token.sh");
    let fresh = || {
        let _ = std::fs::remove_file(scratch.0.join("count"));
        let _ = std::fs::remove_file(scratch.0.join("asked"));
    };

    let out = nw_get(&scratch, &["--bearer", "tok2", "-o", "a.bin", &url]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(scratch.0.join("a.bin")).unwrap() == data);
    let out = nw_get(&scratch, &["--bearer", "tok1", "-o", "b.bin", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("answered 401"), "{err}");
    let out = nw_get(&scratch, &["--bearer", "t", "http://public.example/x"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--bearer with http://public.example/x would send the secret"), "{err}");
    let out = nw_get(&scratch, &["--bearer-command", "true", "http://public.example/x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--bearer-command with http://public.example/x would send"), "{err}");

    // tok1 is refused; the command is asked again, with the challenge, and tok2 is taken.
    fresh();
    let out =
        nw_get(&scratch, &["--bearer-command", &command, "-o", "c.bin", &url]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(scratch.0.join("c.bin")).unwrap() == data);
    let asked = std::fs::read_to_string(scratch.0.join("asked")).unwrap();
    let lines: Vec<&str> = asked.lines().collect();
    assert_eq!(lines.len(), 2, "{asked}");
    assert_eq!(lines[0], format!("{url}|none"), "{asked}");
    assert_eq!(lines[1], format!("{url}|Bearer error=\"invalid_token\""), "{asked}");
    // In segments: every range carries the fresh token, and the command is not asked again.
    fresh();
    let big = pattern(16 << 20, 29);
    std::fs::write(scratch.0.join("www/api/big.bin"), &big).unwrap();
    let args = ["--segments", "4", "--bearer-command", &command, "-o", "big.bin"];
    let out =
        nw_get(&scratch, &[&args[..], &[&server.url("/api/big.bin")]].concat()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("in 4 segments"), "a range went without the token: {err}");
    assert!(std::fs::read(scratch.0.join("big.bin")).unwrap() == big, "byte-exact");
    let asked = std::fs::read_to_string(scratch.0.join("asked")).unwrap();
    assert_eq!(asked.lines().count(), 2, "{asked}");
    // To stdout the same.
    fresh();
    let out = nw_get(&scratch, &["--bearer-command", &command, "-o", "-", &url]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == data);

    // A redirect to another origin (localhost, not 127.0.0.1) takes no token there: neither
    // --bearer's nor the command's, which is not even asked.
    let away = server.url("/away/file.bin");
    let out = nw_get(&scratch, &["--bearer", "tok2", "-o", "g.bin", &away]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("answered 401"), "--bearer went to another origin: {err}");
    fresh();
    let out =
        nw_get(&scratch, &["--bearer-command", &command, "-o", "h.bin", &away]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "the command's token went to another origin: {err}");
    assert!(err.contains("answered 401"), "{err}");
    let asked = std::fs::read_to_string(scratch.0.join("asked")).unwrap_or_default();
    assert!(!asked.contains("localhost"), "the command was asked for another origin: {asked}");

    // An upload: refused with tok1, sent again whole with tok2.
    fresh();
    let up = server.url("/api-put/up.bin");
    let out = nw(&scratch, &["put", "--bearer-command", &command, "a.bin", &up]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(scratch.0.join("www/api-put/up.bin")).unwrap() == data);

    // A command that fails says so, and the server's 401 stands.
    let out = nw_get(&scratch, &["--bearer-command", "echo no >&2; exit 3", "-o", "d.bin", &url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--bearer-command: it failed") && err.contains("no"), "{err}");
    assert!(err.contains("answered 401"), "{err}");
    // One that prints without end is stopped at 64 KiB, not waited out or held in memory; one
    // that fails after a flood of errors shows their start.
    let started = Instant::now();
    let out =
        nw_get(&scratch, &["--bearer-command", "yes tok", "-o", "f.bin", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--bearer-command: it printed more than 64 KiB"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "it waited for the command's end");
    let flood = "head -c 1000000 /dev/zero | tr '\\0' e >&2; exit 4";
    let out = nw_get(&scratch, &["--bearer-command", flood, "-o", "f.bin", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("it failed (exit status: 4): eeee"), "{err}");
    assert!(err.len() < 8192, "all of its stderr was shown: {} bytes", err.len());
    // Not queued: credentials stay out of the store.
    let out = nw_get(&scratch, &["--queue", "--bearer-command", &command, "-o", "e.bin", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// An upload follows a redirect that keeps its method (307, 308; 301 and 302 of a PUT),
/// sending the file again, whole, to the new URL; after a 303 the upload is done and its answer
/// is fetched from the Location with a GET (RFC 9110 §15.4.4), the body never sent there; a
/// loop is refused saying so.
#[test]
fn put_follows_redirects_that_keep_the_method() {
    let scratch = scratch("put-redirect");
    let data = pattern(3 << 20, 5);
    std::fs::write(scratch.0.join("source.bin"), &data).unwrap();
    // As a server that redirects uploads takes their size (nginx would answer 413 first).
    let extra: String = [
        ("/moved/a.bin", 308, "/put/a.bin"),
        ("/old/b.bin", 301, "/moved/b.bin"),
        ("/moved/b.bin", 307, "/put/b.bin"),
        ("/see/c.bin", 303, "/receipt.txt"),
        ("/see/d.bin", 303, "/missing.txt"),
        ("/loop/x", 307, "/loop/y"),
        ("/loop/y", 307, "/loop/x"),
    ]
    .iter()
    .map(|(at, status, to)| {
        format!("location = {at} {{ client_max_body_size 0; return {status} {to}; }}\n")
    })
    .collect();
    // An answer on a server that never answers; an upload answered 303 with its own URL.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let extra = format!(
        "{extra}location = /see/silent {{ client_max_body_size 0; return 303 http://127.0.0.1:{silent_port}/answer; }}\n\
         location = /own.txt {{ client_max_body_size 0; if ($request_method = PUT) {{ return 303 /own.txt; }} }}\n"
    );
    let server = nginx(&scratch, &Options { extra, ..Options::default() });
    std::fs::write(scratch.0.join("www/receipt.txt"), "stored as c\n").unwrap();
    std::fs::write(scratch.0.join("www/own.txt"), "own\n").unwrap();
    let put = |args: &[&str]| nw(&scratch, &[&["put"], args].concat()).output().unwrap();

    let out = put(&["--json", "source.bin", &server.url("/moved/a.bin")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let done = json_lines(&out.stdout).into_iter().find(|v| v["event"] == "done").unwrap();
    assert_eq!(done["status"].as_u64(), Some(201), "{done}");
    assert!(std::fs::read(scratch.0.join("www/put/a.bin")).unwrap() == data, "byte-exact");
    // Two hops, a 301 of a PUT then a 307.
    let out = put(&["source.bin", &server.url("/old/b.bin")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(scratch.0.join("www/put/b.bin")).unwrap() == data, "byte-exact");
    // --max-redirs 0 follows none.
    let out = put(&["--max-redirs", "0", "source.bin", &server.url("/moved/a.bin")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("answered 308"), "{err}");
    // After a 303 the answer is fetched from its Location; the body is not sent there.
    let receipt = server.url("/receipt.txt");
    let out = put(&["source.bin", &server.url("/see/c.bin")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "stored as c\n");
    assert!(err.contains(&format!("the answer is at {receipt}: 200")), "{err}");
    let out = put(&["--json", "source.bin", &server.url("/see/c.bin")]);
    let done = json_lines(&out.stdout).into_iter().find(|v| v["event"] == "done").unwrap();
    assert_eq!(
        (done["status"].as_u64(), done["answered_at"].as_str()),
        (Some(200), Some(&*receipt))
    );
    assert!(!scratch.0.join("www/put/c.bin").exists(), "the body went to a 303's Location");
    // An answer that is not there is the failure, named by where it was looked for.
    let out = put(&["source.bin", &server.url("/see/d.bin")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("answered 404") && err.contains("/missing.txt"), "{err}");
    // The upload's own URL as its answer is read with a GET, not taken for a loop.
    let out = put(&["source.bin", &server.url("/own.txt")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "own\n");
    // An answer that never comes fails within the timeout, and the file is not sent again:
    // the server has it.
    let started = Instant::now();
    let out = put(&["--timeout", "2", "source.bin", &server.url("/see/silent")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the server took the upload; its answer at http://127.0.0.1:"), "{err}");
    assert!(!err.contains("sending it again"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    drop(silent);
    let out = put(&["source.bin", &server.url("/loop/x")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("redirect loop"), "{err}");
}

#[test]
fn put_queue_then_transfers_run_sends_puts_retries_only_what_is_safe_and_lists_uploads() {
    let scratch = scratch("put-queue");
    let data = pattern(3 << 20, 7);
    std::fs::write(scratch.0.join("source.bin"), &data).unwrap();
    let server = nginx(&scratch, &Options::default());
    std::fs::create_dir_all(scratch.0.join("www/put")).unwrap();
    std::fs::write(scratch.0.join("www/put/taken.bin"), b"x").unwrap();
    // A port bound and never listened on: connecting is refused, so nothing is sent, and no
    // other test's server can take the port meanwhile (a dropped listener's port could be).
    let holder = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    holder.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    let closed = holder.local_addr().unwrap().as_socket().unwrap();
    let put = |args: &[&str]| nw(&scratch, &[&["put", "--queue"], args].concat()).output().unwrap();
    let (q, taken) = (server.url("/put/q.bin"), server.url("/put/taken.bin"));
    let never = format!("http://{closed}/put/never.bin");
    let cases = [
        vec!["source.bin", q.as_str()],
        // nginx refuses a POST to a file (405): failed for good, not retried.
        vec!["--post", "source.bin", taken.as_str()],
        // A PUT that cannot connect is retried, then left interrupted.
        vec!["source.bin", never.as_str()],
    ];
    for args in &cases {
        let out = put(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("queued #u"), "{args:?}");
    }
    // Refused when queued: a file that is not there (exit 2), nothing recorded.
    assert_eq!(put(&["absent.bin", &server.url("/put/z.bin")]).status.code(), Some(2));
    let listed = json_lines(&nw(&scratch, &["transfers", "--json"]).output().unwrap().stdout);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.iter().all(|v| v["kind"] == "upload" && v["state"] == "queued"), "{listed:?}");
    let source = scratch.0.join("source.bin").canonicalize().unwrap();
    assert_eq!(listed[0]["source"], source.to_str().unwrap(), "recorded by its absolute path");

    // Run from elsewhere: the queue names the file absolutely.
    let mut run = nw(&scratch, &["transfers", "run", "--json", "--attempts", "2"]);
    let out = run.current_dir("/").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let events = json_lines(&out.stdout);
    let of = |id: u64, event: &str| {
        events.iter().filter(|v| v["id"] == id && v["event"] == event).cloned().collect::<Vec<_>>()
    };
    let done = of(1, "done");
    assert_eq!((done[0]["status"].as_u64(), done[0]["sent"].as_u64()), (Some(201), Some(3 << 20)));
    assert!(std::fs::read(scratch.0.join("www/put/q.bin")).unwrap() == data, "byte-exact");
    assert_eq!(of(2, "attempt").len(), 1, "a refused POST is not sent again");
    assert_eq!(of(2, "failed")[0]["transient"], false);
    assert_eq!(of(2, "failed")[0]["code"], "http_status");
    assert_eq!(of(3, "attempt").len(), 2, "a PUT that could not connect is tried again");
    assert_eq!(of(3, "failed")[0]["code"], "cannot_connect_to_host", "{:?}", of(3, "failed"));
    let summary = events.iter().find(|v| v["event"] == "summary").expect("a summary");
    assert_eq!((summary["done"].as_u64(), summary["failed"].as_u64()), (Some(1), Some(1)));
    assert_eq!(summary["interrupted"], 1);

    let out = nw(&scratch, &["transfers"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("#u1") && text.contains("done") && text.contains("201"), "{text}");
    assert!(text.contains("#u2") && text.contains("failed") && text.contains("405"), "{text}");
    assert!(text.contains("#u3") && text.contains("interrupted"), "{text}");
    // A later run takes on only the interrupted PUT.
    let out = nw(&scratch, &["transfers", "run", "--json", "--attempts", "1"]).output().unwrap();
    let ids: Vec<_> = json_lines(&out.stdout)
        .into_iter()
        .filter(|v| v["event"] == "attempt")
        .map(|v| v["id"].as_u64())
        .collect();
    assert_eq!(ids, [Some(3)]);
    // Clearing forgets the finished ones.
    assert!(nw(&scratch, &["transfers", "clear"]).output().unwrap().status.success());
    let listed = json_lines(&nw(&scratch, &["transfers", "--json"]).output().unwrap().stdout);
    assert_eq!(listed.len(), 1, "{listed:?}");
}

#[test]
fn queued_transfers_run_with_the_flags_they_were_queued_with() {
    let scratch = scratch("queue-settings");
    let data = pattern(3 << 20, 9);
    std::fs::write(scratch.0.join("www/a.bin"), &data).unwrap();
    let (server, anchor) = https_nginx(&scratch);
    let url = server.https_url("/a.bin").unwrap();
    let ok = |out: std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };

    // Queued with a private anchor (a download and an upload), run without one: each runs
    // with the anchor it was queued with.
    ok(nw_get(&scratch, &["--queue", "--anchor", &anchor, "-o", "a.bin", &url]).output().unwrap());
    let up = server.https_url("/put/up.bin").unwrap();
    ok(nw(&scratch, &["put", "--queue", "--anchor", &anchor, "www/a.bin", &up]).output().unwrap());
    ok(nw(&scratch, &["transfers", "run"]).output().unwrap());
    assert!(std::fs::read(scratch.0.join("a.bin")).unwrap() == data, "downloaded byte-exact");
    assert!(std::fs::read(scratch.0.join("www/put/up.bin")).unwrap() == data, "sent byte-exact");

    // Queued without one and run without one: the certificate is not trusted, which a retry
    // will not change, so it fails once, for good.
    let queue_c = || nw_get(&scratch, &["--queue", "-o", "c.bin", &url]).output().unwrap();
    ok(queue_c());
    let out = nw(&scratch, &["transfers", "run"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not trusted") && stderr.contains("0 done, 1 failed"), "{stderr}");
    assert!(!stderr.contains("attempt 2"), "not retried: {stderr}");
    // Queued again and run with one: the run's anchors are added.
    ok(queue_c());
    ok(nw(&scratch, &["transfers", "run", "--anchor", &anchor]).output().unwrap());
    assert!(std::fs::read(scratch.0.join("c.bin")).unwrap() == data, "downloaded byte-exact");

    // Queued with an anchor that is gone by the time it runs: it fails for good, saying which
    // file and why, and the list keeps the reason.
    let gone = scratch.0.join("gone.pem");
    std::fs::copy(&anchor, &gone).unwrap();
    let gone_arg = gone.to_string_lossy().into_owned();
    ok(nw_get(&scratch, &["--queue", "--anchor", &gone_arg, "-o", "d.bin", &url])
        .output()
        .unwrap());
    let gone_up = server.https_url("/put/gone.bin").unwrap();
    let put = ["put", "--queue", "--anchor", &gone_arg, "www/a.bin", &gone_up];
    ok(nw(&scratch, &put).output().unwrap());
    std::fs::remove_file(&gone).unwrap();
    let out = nw(&scratch, &["transfers", "run"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("queued with") && stderr.contains("gone.pem"), "{stderr}");
    assert!(stderr.contains("0 done, 2 failed"), "not retried: {stderr}");
    let listed = json_lines(&nw(&scratch, &["transfers", "--json"]).output().unwrap().stdout);
    let d = listed.iter().find(|v| v["dest"].as_str().is_some_and(|d| d.ends_with("d.bin")));
    let d = d.expect("d.bin is listed");
    assert_eq!(d["state"], "failed", "{d}");
    assert!(d["error"].as_str().unwrap_or_default().contains("gone.pem"), "{d}");
    assert!(!scratch.0.join("d.bin").exists());
    let u = listed.iter().find(|v| v["kind"] == "upload" && v["url"] == gone_up.as_str());
    let u = u.expect("the upload is listed");
    assert_eq!(u["state"], "failed", "{u}");
    assert!(u["error"].as_str().unwrap_or_default().contains("gone.pem"), "{u}");
    assert!(!scratch.0.join("www/put/gone.bin").exists());
}

/// A server on loopback that reads each connection's request (its head, and a body of its
/// `Content-Length`), answers with `answer(n, request head)` (n counts from 1), then closes it.
fn raw_server(
    answer: impl Fn(usize, &str) -> Vec<u8> + Send + 'static,
) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::Write as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let (head, _) = nw_lab::http::read_request(&mut stream);
            let reply = answer(n + 1, &head);
            if reply.is_empty() {
                return;
            }
            let _ = stream.write_all(&reply);
        }
    });
    (port, handle)
}

#[test]
fn get_resumes_by_itself_when_the_connection_drops_mid_body_and_a_signal_leaves_it_interrupted() {
    let scratch = scratch("retry");
    let data = pattern(300_000, 3);
    let served = data.clone();
    // The first two answers stop after 100,000 bytes of the body; the third is whole.
    let (port, _server) = raw_server(move |n, head| {
        let from: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_owned))
            .and_then(|r| r.trim_end_matches('-').parse().ok())
            .unwrap_or(0);
        let body = &served[from..];
        let status = if from > 0 {
            format!("206 Partial Content\r\nContent-Range: bytes {from}-299999/300000")
        } else {
            "200 OK".to_owned()
        };
        let mut reply = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend_from_slice(if n <= 2 { &body[..100_000] } else { body });
        reply
    });
    let url = format!("http://127.0.0.1:{port}/file.bin");
    let out = nw_get(&scratch, &[&url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("resuming from the checkpoint").count(), 2, "{err}");
    assert!(std::fs::read(scratch.0.join("file.bin")).unwrap() == data, "byte-exact");

    // A server that never answers, and Ctrl-C: exit 130, no empty .part, the record
    // interrupted rather than running.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/never.bin", silent.local_addr().unwrap().port());
    let child = nw_get(&scratch, &[&url]).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!scratch.0.join("never.bin.part").exists());
    let list = Command::new(NW)
        .args(["transfers", "list"])
        .env("NW_STORE", scratch.0.join("store.db"))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    let line = list.lines().find(|l| l.contains("never.bin")).unwrap_or_default();
    assert!(line.contains("interrupted"), "{list}");
    drop(silent);
}

/// Failures say what is left: a body that breaks before its first byte leaves no `.part`, and
/// the error does not send the user to resume one; a malformed chunk is said to be one (not a
/// lost connection), is not tried again, and what came before it is kept; a redirect without a
/// Location says it was not followed and why that may be.
#[test]
fn get_failures_say_only_what_is_true_of_the_part_and_the_redirect() {
    let scratch = scratch("said");
    let (port, _server) = raw_server(|_, head| {
        if head.contains("/broken.bin") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n".to_vec()
        } else if head.contains("/half.bin") {
            b"HTTP/1.1 200 OK\r\nETag: \"h1\"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
                .to_vec()
        } else {
            b"HTTP/1.1 302 Found\r\nLocation: \r\nContent-Length: 0\r\n\r\n".to_vec()
        }
    });
    let url = format!("http://127.0.0.1:{port}/broken.bin");
    let out = nw_get(&scratch, &[&url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the chunked body is malformed: \"zz\" is not a chunk size after 0 bytes"),
        "{err}"
    );
    assert!(!err.contains("connection was lost") && !err.contains("retr"), "{err}");
    assert!(!err.contains("holds what was received") && !err.contains("resuming"), "{err}");
    assert!(!scratch.0.join("broken.bin.part").exists(), "a .part holding nothing was kept");
    let url = format!("http://127.0.0.1:{port}/half.bin");
    let out = nw_get(&scratch, &[&url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("malformed: \"zz\" is not a chunk size after 5 bytes"), "{err}");
    assert!(err.contains("holds what was received") && !err.contains("retr"), "{err}");
    assert_eq!(std::fs::read(scratch.0.join("half.bin.part")).unwrap(), b"hello");
    // `-o /dev/null`, as curl users write it: refused (it is no regular file), pointing to
    // `-o -` and a redirect — never to removing it.
    let out = nw_get(&scratch, &["-o", "/dev/null", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("give -o - and redirect stdout") && !err.contains("remove it"), "{err}");
    let url = format!("http://127.0.0.1:{port}/moved.bin");
    let out = nw_get(&scratch, &["--retry", "0", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "the server answered 302 (a redirect that was not followed: it names no Location"
        ),
        "{err}"
    );
}

/// Bytes no validator vouches for are not kept, since a resume would start from zero anyway
/// (URLSession gives no resume data then): a body that breaks, or a Ctrl-C, leaves no `.part`,
/// and the error does not send the user to resume one; with an ETag the bytes stay.
#[test]
fn get_keeps_no_part_that_nothing_could_resume() {
    use std::io::Write as _;
    let scratch = scratch("unresumable");
    let (port, _server) = raw_server(|n, _| match n {
        1 => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234".to_vec(),
        2 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n".to_vec(),
        _ => b"HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\n01234".to_vec(),
    });
    for name in ["short.bin", "broken.bin"] {
        let url = format!("http://127.0.0.1:{port}/{name}");
        let out = nw_get(&scratch, &["--retry", "0", &url]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("what arrived was discarded, since nothing could resume it"), "{err}");
        assert!(!err.contains("holds what was received") && !err.contains("--resume"), "{err}");
        assert!(!scratch.0.join(format!("{name}.part")).exists(), "{name}: an unresumable .part");
    }
    let url = format!("http://127.0.0.1:{port}/tagged.bin");
    let out = nw_get(&scratch, &["--retry", "0", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("holds what was received"), "{err}");
    assert_eq!(std::fs::read(scratch.0.join("tagged.bin.part")).unwrap(), b"01234");

    // Ctrl-C mid-body with no validator: exit 130 and nothing kept.
    let stalls = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stalls.local_addr().unwrap().port();
    let _held = std::thread::spawn(move || {
        let (mut stream, _) = stalls.accept().unwrap();
        let _ = nw_lab::http::read_request(&mut stream);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        let _ = stream.write_all(&[7; 5000]);
        std::thread::sleep(Duration::from_secs(30));
    });
    let url = format!("http://127.0.0.1:{port}/stalled.bin");
    let child = nw_get(&scratch, &[&url]).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(!err.contains("--resume"), "{err}");
    assert!(!scratch.0.join("stalled.bin.part").exists(), "an unresumable .part after Ctrl-C");
}

/// A `Location` in raw UTF-8 (a server that did not percent-encode its path, as many do) is
/// followed percent-encoded, as curl and browsers follow it, not taken for no `Location`.
#[test]
fn get_follows_a_location_in_raw_utf8() {
    let scratch = scratch("utf8loc");
    let (port, _server) = raw_server(|_, head| {
        if head.starts_with("GET /f ") {
            let mut answer = b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\nLocation: /".to_vec();
            answer.extend_from_slice("d\u{e9}j\u{e0} vu\r\n\r\n".as_bytes());
            answer
        } else if head.starts_with("GET /d%C3%A9j%C3%A0%20vu ") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
        } else {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
        }
    });
    let url = format!("http://127.0.0.1:{port}/f");
    let out = nw_get(&scratch, &["--retry", "0", "-o", "got", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(std::fs::read(scratch.0.join("got")).unwrap(), b"ok");
}

/// Commands that only read or tidy the store create nothing where none is (`NW_STORE` naming
/// a file under a directory that does not exist: neither appears), and a store that is a
/// directory is said to be one.
#[test]
fn transfers_list_clear_and_run_create_no_store() {
    let scratch = scratch("nostore");
    let store = scratch.0.join("absent/dir/transfers.db");
    for (args, says) in [
        (&["transfers"][..], "no transfers"),
        (&["transfers", "clear"], "cleared 0 finished transfers"),
        (&["transfers", "run"], "0 done, 0 failed, 0 interrupted"),
    ] {
        let out = Command::new(NW).args(args).env("NW_STORE", &store).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!scratch.0.join("absent").exists(), "a read of the store created its directory");
    let out = Command::new(NW).args(["transfers"]).env("NW_STORE", &scratch.0).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("that is a directory; name a file, or set NW_STORE"), "{err}");
    // A device (it got as far as an fsync, and said "disk I/O error; check the disk").
    let out = Command::new(NW).args(["transfers"]).env("NW_STORE", "/dev/null").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("that is not a regular file; name a file, or set NW_STORE"), "{err}");
}

/// `--max-time` cuts off a server that trickles a byte every 200 ms, which the idle timeout
/// never catches: the download fails once, not tried again, its bytes kept for `--resume`;
/// a body streamed to stdout stops the same way.
#[test]
fn get_max_time_cuts_off_a_server_that_trickles() {
    use std::io::Write as _;
    let scratch = scratch("trickle");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _server = std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let _ = nw_lab::http::read_request(&mut stream);
                let head = "HTTP/1.1 200 OK\r\nETag: \"t1\"\r\nContent-Length: 100000\r\n\r\n";
                let _ = stream.write_all(head.as_bytes());
                for _ in 0..150 {
                    if stream.write_all(b"x").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
        }
    });
    let url = format!("http://127.0.0.1:{port}/slow.bin");
    let began = Instant::now();
    let out = nw_get(&scratch, &["--max-time", "2", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(began.elapsed() < Duration::from_secs(20), "took {:?}: {err}", began.elapsed());
    assert!(err.contains("the load took longer than its resource timeout (2 s)"), "{err}");
    assert!(!err.contains("retries left") && err.contains("holds what was received"), "{err}");
    let kept = std::fs::read(scratch.0.join("slow.bin.part")).unwrap();
    assert!(!kept.is_empty() && kept.iter().all(|&b| b == b'x'), "{kept:?}");

    let began = Instant::now();
    let out = nw_get(&scratch, &["--max-time", "1", "-o", "-", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(began.elapsed() < Duration::from_secs(20), "took {:?}: {err}", began.elapsed());
    assert!(err.contains("resource timeout (1 s)"), "{err}");
    let out = nw_get(&scratch, &["--max-time", "0", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A download over a slow link, cut off by `--max-time 2` again and again, still moves on each
/// time it is resumed: the bytes it asks again before its checkpoint (to check the file did not
/// change) are scaled to the rate the last attempt measured and the time allowed. nginx at
/// 20 KiB/s sends at most 60 KiB in two seconds (its first second is a burst of two), less than
/// the 64 KiB a resume used to ask again, so each resume ran out of time before a new byte.
#[test]
fn get_resumes_make_progress_over_a_slow_link_with_a_short_max_time() {
    let scratch = scratch("slow-resume");
    let body = pattern(400_000, 11);
    std::fs::write(scratch.0.join("www/slow.bin"), &body).unwrap();
    let server = nginx(&scratch, &Options { slow_rate: Some("20k".into()), ..Options::default() });
    let url = server.url("/slow/slow.bin");
    let part = scratch.0.join("slow.bin.part");
    let mut held = Vec::new();
    for resume in [false, true, true] {
        let args = if resume {
            vec!["--resume", "--max-time", "2", &url]
        } else {
            vec!["--max-time", "2", &url]
        };
        let out = nw_get(&scratch, &args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("resource timeout (2 s)"), "{err}");
        let kept = std::fs::read(&part).unwrap();
        assert!(body.starts_with(&kept), "the .part is a prefix of the file");
        held.push(kept.len());
    }
    assert!(held.windows(2).all(|w| w[0] < w[1]), "a resume made no progress: {held:?}");
}

/// `nw put --retry`: a PUT answered 503 is sent again whole after the server's Retry-After; a
/// POST that reached the server is never sent twice; Ctrl-C ends the wait at once.
#[test]
fn put_sends_a_put_again_after_a_503_but_never_a_post_that_arrived() {
    let scratch = scratch("put-retry");
    let file = scratch.0.join("up.bin");
    std::fs::write(&file, pattern(10_000, 7)).unwrap();
    let file = file.to_string_lossy().into_owned();
    let busy =
        "HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    // The request lines each server saw.
    let seeing = || {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let kept = seen.clone();
        let keep = move |head: &str| {
            kept.lock().unwrap().push(head.lines().next().unwrap_or_default().to_owned())
        };
        (seen, keep)
    };
    let (seen, keep) = seeing();
    let (port, _server) = raw_server(move |n, head| {
        keep(head);
        let reply = if n == 1 {
            busy
        } else {
            "HTTP/1.1 201 Created\r\nContent-Length: 7\r\nConnection: close\r\n\r\nstored\n"
        };
        reply.as_bytes().to_vec()
    });
    let url = format!("http://127.0.0.1:{port}/up.bin");
    let out = nw(&scratch, &["put", &file, &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("the server answered 503; sending it again in 1 s"), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "stored\n", "{err}");
    assert_eq!(seen.lock().unwrap().len(), 2, "{:?}", seen.lock().unwrap());

    let (seen, keep) = seeing();
    let (port, _server) = raw_server(move |_, head| {
        keep(head);
        busy.as_bytes().to_vec()
    });
    let url = format!("http://127.0.0.1:{port}/form");
    let out = nw(&scratch, &["put", "--post", &file, &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("sending it again"), "{err}");
    assert_eq!(*seen.lock().unwrap(), ["POST /form HTTP/1.1"], "sent once");

    // Ctrl-C while it waits out a long Retry-After: it stops at once, with 130, and says
    // what that left.
    let (port, _server) = raw_server(move |_, _| {
        b"HTTP/1.1 503 Busy\r\nRetry-After: 100\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec()
    });
    let url = format!("http://127.0.0.1:{port}/up.bin");
    let child = nw(&scratch, &["put", &file, &url]).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let asked = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(asked.elapsed() < Duration::from_secs(20), "it waited out the Retry-After");
    assert!(err.contains("sending it again in 100 s"), "{err}");
    assert!(err.contains("up.bin was not sent whole (a PUT can simply be sent again)"), "{err}");
}

/// `--retry` before the body, as curl's: a 503 is asked again after the server's Retry-After
/// and the third answer is saved; a Retry-After longer than nw waits fails at once saying so;
/// a refused connection fails at once unless `--retry-connrefused`, with which a server that
/// starts late is reached.
#[test]
fn get_retries_a_busy_server_after_its_retry_after_and_not_a_refused_port() {
    let scratch = scratch("retry-busy");
    let (port, _server) = raw_server(|n, _| {
        let (status, body) = if n <= 2 { ("503 Busy", "busy") } else { ("200 OK", "hello\n") };
        format!(
            "HTTP/1.1 {status}\r\nRetry-After: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let url = format!("http://127.0.0.1:{port}/busy.txt");
    let started = Instant::now();
    let out = nw_get(&scratch, &["--retry", "2", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("the server answered 503; trying again in 1 s").count(), 2, "{err}");
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited what Retry-After asked");
    assert_eq!(std::fs::read(scratch.0.join("busy.txt")).unwrap(), b"hello\n");

    // With --json, each retry is a line of its own.
    let (port, _server) = raw_server(|n, _| {
        let (status, body) = if n == 1 { ("503 Busy", "") } else { ("200 OK", "json\n") };
        format!(
            "HTTP/1.1 {status}\r\nRetry-After: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let url = format!("http://127.0.0.1:{port}/json.txt");
    let out = nw_get(&scratch, &["--json", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out.stdout);
    let retrying = lines.iter().find(|l| l["event"] == "retrying").cloned().unwrap_or_default();
    assert_eq!(
        (&retrying["status"], &retrying["wait_ms"], &retrying["retries_left"]),
        (&Value::from(503), &Value::from(1000), &Value::from(3)),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l["event"] == "done"), "{lines:?}");

    // To stdout the same, while nothing of a body was written; a body cut off after some of
    // it went out is not asked again (it would be written twice).
    let (port, _server) = raw_server(|n, _| {
        let reply = match n {
            1 => "HTTP/1.1 503 Busy\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
            2 => "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nhalf ",
            _ => "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nwhole\n",
        };
        reply.as_bytes().to_vec()
    });
    let url = format!("http://127.0.0.1:{port}/piped.txt");
    let out = nw_get(&scratch, &["-o", "-", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the server answered 503; trying again in 1 s"), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "half ",
        "one try after the body began: {err}"
    );

    let (port, _server) = raw_server(|_, _| {
        b"HTTP/1.1 429 Slow Down\r\nRetry-After: 3600\r\nContent-Length: 0\r\n\r\n".to_vec()
    });
    let url = format!("http://127.0.0.1:{port}/later.txt");
    let started = Instant::now();
    let out = nw_get(&scratch, &[&url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("asks to be tried again in 3600 s (Retry-After)"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "it did not wait: {err}");

    // A port nothing listens on: one try, no backoff.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/late.txt");
    let started = Instant::now();
    let out = nw_get(&scratch, &[&url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("connection refused") && !err.contains("trying again"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "it did not back off: {err}");

    // With --retry-connrefused, a server that starts 1.5 s later is reached.
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = [0u8; 1024];
        let _ = std::io::Read::read(&mut stream, &mut head);
        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nlate\n";
        std::io::Write::write_all(&mut stream, reply).unwrap();
    });
    let out = nw_get(&scratch, &["--retry-connrefused", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("connection refused; trying again in 1 s"), "{err}");
    assert_eq!(std::fs::read(scratch.0.join("late.txt")).unwrap(), b"late\n");
    late.join().unwrap();
}

#[test]
fn get_follows_plain_http_to_https_with_the_anchors_given() {
    let scratch = scratch("upgrade");
    let data = pattern(1 << 20, 23);
    std::fs::write(scratch.0.join("www/file.bin"), &data).unwrap();
    let (server, anchor) = https_nginx(&scratch);
    let https = server.https_url("/file.bin").unwrap();
    let (port, _redirect) = raw_server(move |_, _| {
        format!("HTTP/1.1 301 Moved\r\nLocation: {https}\r\nContent-Length: 0\r\n\r\n").into_bytes()
    });
    // Only the first URL is plain HTTP: the anchors still count for where it leads.
    let url = format!("http://127.0.0.1:{port}/file.bin");
    let out = nw_get(&scratch, &["--anchor", &anchor, "-o", "up.bin", &url]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(scratch.0.join("up.bin")).unwrap() == data, "byte-exact");
}

#[test]
fn get_to_stdout_streams_the_body_after_redirects_and_keeps_nothing() {
    let scratch = scratch("stdout");
    let data = pattern(2 << 20, 5);
    let served = data.clone();
    let (port, _server) = raw_server(move |_, head| {
        if head.starts_with("GET /moved ") {
            return b"HTTP/1.1 302 Found\r\nLocation: /file\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
        }
        if !head.starts_with("GET /file ") {
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_vec();
        }
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            served.len()
        )
        .into_bytes();
        reply.extend_from_slice(&served);
        reply
    });
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let out = nw_get(&scratch, &["-o", "-", &url("/moved")]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == data, "the body, byte-exact, on stdout");
    let left: Vec<_> =
        std::fs::read_dir(&scratch.0).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(
        left.iter().all(|n| n == "www" || n.to_string_lossy().starts_with("store.db")),
        "{left:?}"
    );
    // A reader that goes away early (`| head`) ends it quietly, with SIGPIPE's status.
    let mut child = nw_get(&scratch, &["-o", "-", &url("/file")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    // A failure writes nothing to stdout and says so.
    let out = nw_get(&scratch, &["-o", "-", &url("/missing")]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("answered 404"));
    let out = nw_get(&scratch, &["-o", "-", &url("/a"), &url("/b")]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "one URL to stdout");
}

#[test]
fn get_through_proxies_given_or_from_the_environment_and_cat_through_socks() {
    let scratch = scratch("proxy");
    let data = pattern(2 << 20, 21);
    std::fs::write(scratch.0.join("www/file.bin"), &data).unwrap();
    let (server, anchor) = https_nginx(&scratch);
    let tiny = nw_lab::proxies::Tinyproxy::start(Some(("alice", "s3cret")))
        .unwrap_or_else(|e| panic!("tinyproxy could not start: {e}"));
    let via = format!("http://alice:s3cret@127.0.0.1:{}", tiny.port());
    let https = server.https_url("/file.bin").unwrap();

    // --proxy: a tunnel for HTTPS; the summary names the proxy, not its password.
    let out = nw_get(&scratch, &["-x", &via, "--anchor", &anchor, "-o", "a.bin", &https])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("through http://127.0.0.1:{}", tiny.port())), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert!(std::fs::read(scratch.0.join("a.bin")).unwrap() == data, "byte-exact");

    // nw put goes the same way, and says so.
    let out = nw(&scratch, &["put", "-x", &via, "--anchor", &anchor, "a.bin"])
        .arg(server.https_url("/put/p.bin").unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("h2 through http://127.0.0.1:{}", tiny.port())), "{stderr}");
    assert!(std::fs::read(scratch.0.join("www/put/p.bin")).unwrap() == data, "byte-exact");

    // https_proxy from the environment: loopback goes direct unless no_proxy says <-loopback>.
    let env_get = |no_proxy: &str, dest: &str| {
        nw_get(&scratch, &["--json", "--anchor", &anchor, "-o", dest, &https])
            .env("https_proxy", &via)
            .env("no_proxy", no_proxy)
            .output()
            .unwrap()
    };
    let done = |out: &std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json_lines(&out.stdout).into_iter().find(|v| v["event"] == "done").expect("a done line")
    };
    assert_eq!(done(&env_get("", "b.bin"))["metrics"].get("proxy"), None, "loopback is direct");
    let proxied = done(&env_get("<-loopback>", "c.bin"));
    assert_eq!(proxied["metrics"]["proxy"], format!("http://127.0.0.1:{}", tiny.port()));

    // A password is not kept in the store for a queued transfer.
    let out = nw_get(&scratch, &["--queue", "-x", &via, "-o", "d.bin", &https]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("credentials stay out of the store"), "{stderr}");

    // nw cat through SOCKS5, the name resolved by the proxy; it says what it reached.
    let socks = nw_lab::proxies::Microsocks::start(None)
        .unwrap_or_else(|e| panic!("microsocks could not start: {e}"));
    let port = https.trim_start_matches("https://127.0.0.1:").trim_end_matches("/file.bin");
    let via = format!("socks5h://127.0.0.1:{}", socks.port());
    let out = nw(&scratch, &["cat", "-z", "-x", &via, "localhost", port]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("connected to localhost port {port} through the proxy {via}")),
        "{stderr}"
    );
    // The report names the proxy and times the tunnel, which the race to the proxy leaves out.
    let out =
        nw(&scratch, &["cat", "-z", "--json", "-x", &via, "localhost", port]).output().unwrap();
    let report: Value = serde_json::from_slice(&out.stderr).expect("one JSON report on stderr");
    assert_eq!(report["proxy"], via.as_str());
    assert!(report["tunnel"].as_f64().is_some_and(|ms| ms > 0.0), "{report}");

    // An https:// proxy (tinyproxy behind stunnel, with the origin's certificate): a plain-HTTP
    // URL alone still loads the trust settings the proxy's certificate needs, from --anchor.
    let stunnel = nw_lab::proxies::Stunnel::start(
        &scratch.0.join("cert.pem"),
        &scratch.0.join("key.pem"),
        tiny.port(),
    )
    .unwrap_or_else(|e| panic!("stunnel could not start: {e}"));
    let via = format!("https://alice:s3cret@127.0.0.1:{}", stunnel.port());
    let plain = server.url("/file.bin");
    let out = nw_get(&scratch, &["-x", &via, "--anchor", &anchor, "-o", "e.bin", &plain])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("through https://127.0.0.1:{}", stunnel.port())), "{stderr}");
    assert!(std::fs::read(scratch.0.join("e.bin")).unwrap() == data, "byte-exact");
    // Without the anchor: refused, the proxy's certificate named as the one not trusted.
    let out = nw_get(&scratch, &["-x", &via, "-o", "f.bin", &plain]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("with the proxy itself, TLS: the certificate is not trusted"),
        "{stderr}"
    );
    // nw cat's report says what TLS with the proxy negotiated, apart from the destination's.
    let port = plain.trim_start_matches("http://127.0.0.1:").trim_end_matches("/file.bin");
    let out = nw(&scratch, &["cat", "-z", "--json", "-x", &via, "--anchor", &anchor])
        .args(["127.0.0.1", port])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stderr).expect("one JSON report on stderr");
    assert_eq!(report["proxy_tls"]["version"], "TLSv1_3", "{report}");
    assert!(report["proxy_tls_handshake"].as_f64().is_some_and(|ms| ms > 0.0), "{report}");
    assert!(report.get("tls").is_none(), "no TLS with the destination was asked: {report}");
}

#[test]
fn get_lets_a_pac_file_choose_and_names_what_is_wrong_with_one() {
    let scratch = scratch("pac");
    let data = pattern(512 << 10, 24);
    std::fs::write(scratch.0.join("www/file.bin"), &data).unwrap();
    let (server, anchor) = https_nginx(&scratch);
    let tiny = nw_lab::proxies::Tinyproxy::start(None)
        .unwrap_or_else(|e| panic!("tinyproxy could not start: {e}"));
    let https = server.https_url("/file.bin").unwrap();
    let pac = scratch.0.join("proxy.pac");
    let script = format!(
        "function FindProxyForURL(url, host) {{\n  if (url.indexOf('file.bin') >= 0) return 'DIRECT';\n  return isPlainHostName(host) ? 'DIRECT' : 'PROXY 127.0.0.1:{}';\n}}\n",
        tiny.port()
    );
    std::fs::write(&pac, script).unwrap();
    let pac = pac.to_str().unwrap();

    // The script sees https://127.0.0.1:PORT/ (no path), so it picks the proxy.
    let out = nw_get(&scratch, &["--proxy-pac", pac, "--anchor", &anchor, "-o", "a.bin", &https])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("through http://127.0.0.1:{}", tiny.port())), "{stderr}");
    assert!(std::fs::read(scratch.0.join("a.bin")).unwrap() == data, "byte-exact");

    // What is wrong with a file or a script is said, with the line, before anything is made.
    let missing = scratch.0.join("missing.pac");
    let broken = scratch.0.join("broken.pac");
    std::fs::write(&broken, "function FindProxyForURL(url, host) {\n  return 'PROXY ' + ;\n}\n")
        .unwrap();
    let endless = PathBuf::from("/dev/zero");
    for (file, said) in [
        (&missing, "cannot read the PAC file"),
        (&broken, "broken.pac:2"),
        (&endless, "larger than 1 MiB"),
    ] {
        let out = nw_get(&scratch, &["--proxy-pac", file.to_str().unwrap(), "-o", "b.bin", &https])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
        assert!(!scratch.0.join("b.bin.part").exists());
    }
    let out = nw_get(&scratch, &["--proxy-pac", pac, "-x", "http://127.0.0.1:1", &https])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--proxy-pac and -x are one or the other");
    // A PAC URL is fetched when the download starts; one that cannot be fetched fails it.
    let unfetchable = server.url("/missing.pac");
    let out =
        nw_get(&scratch, &["--proxy-pac", &unfetchable, "-o", "c.bin", &https]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot fetch the PAC file: the server answered 404"), "{stderr}");
}

#[test]
fn get_keeps_cookies_a_redirect_sets_unless_told_not_to() {
    let scratch = scratch("cookies");
    let data = pattern(256 << 10, 23);
    std::fs::create_dir_all(scratch.0.join("www/private")).unwrap();
    std::fs::write(scratch.0.join("www/private/file.bin"), &data).unwrap();
    let extra = r#"
        location = /login {
            add_header Set-Cookie "session=s3cr3t; Path=/; Max-Age=600" always;
            return 302 /private/file.bin;
        }
        location /private/ { if ($cookie_session != "s3cr3t") { return 403; } }
        location /private-put/ {
            if ($cookie_session != "s3cr3t") { return 403; }
            dav_methods PUT; create_full_put_path on;
        }
    "#;
    let server = nginx(&scratch, &Options { extra: extra.into(), ..Options::default() });
    let login = server.url("/login");

    let out = nw_get(&scratch, &["--no-cookies", "-o", "a.bin", &login]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("answered 403"), "{stderr}");

    let out = nw_get(&scratch, &["-o", "b.bin", &login]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(scratch.0.join("b.bin")).unwrap() == data);

    // --cookie-jar keeps it for a later run that goes straight to the file.
    let out =
        nw_get(&scratch, &["--cookie-jar", "jar.json", "-o", "c.bin", &login]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let private = server.url("/private/file.bin");
    let out =
        nw_get(&scratch, &["--cookie-jar", "jar.json", "-o", "d.bin", &private]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(scratch.0.join("d.bin")).unwrap() == data);
    // nw put sends the jar's cookies too.
    let up = server.url("/private-put/up.bin");
    let out = nw(&scratch, &["put", "d.bin", &up]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("answered 403"), "no cookie, no entry");
    let out = nw(&scratch, &["put", "--cookie-jar", "jar.json", "d.bin", &up]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(scratch.0.join("www/private-put/up.bin")).unwrap() == data);
    // A file that is no jar (a typo for another file) is the command line's mistake, and
    // is left as it was.
    std::fs::write(scratch.0.join("notes.txt"), "not a jar\n").unwrap();
    let out =
        nw_get(&scratch, &["--cookie-jar", "notes.txt", "-o", "e.bin", &private]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a cookie jar nw wrote"), "{err}");
    assert_eq!(std::fs::read_to_string(scratch.0.join("notes.txt")).unwrap(), "not a jar\n");
    // A named pipe as the jar is refused at once, not waited on for a writer.
    crate::support::mkfifo(scratch.0.join("jar.fifo"));
    let out =
        nw_get(&scratch, &["--cookie-jar", "jar.fifo", "-o", "f.bin", &private]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn get_takes_the_login_from_a_netrc_kept_private() {
    let scratch = scratch("netrc");
    let data = pattern(64 << 10, 24);
    std::fs::create_dir_all(scratch.0.join("www/members")).unwrap();
    std::fs::write(scratch.0.join("www/members/file.bin"), &data).unwrap();
    // alice:s3cret, as RFC 7617's Basic scheme sends it.
    let extra = r#"
        location /members/ { if ($http_authorization != "Basic YWxpY2U6czNjcmV0") { return 401; } }
        location /members-put/ {
            if ($http_authorization != "Basic YWxpY2U6czNjcmV0") { return 401; }
            dav_methods PUT; create_full_put_path on;
        }
    "#;
    let server = nginx(&scratch, &Options { extra: extra.into(), ..Options::default() });
    let url = server.url("/members/file.bin");
    let netrc = scratch.0.join("netrc");
    std::fs::write(&netrc, "machine 127.0.0.1\n  login alice\n  password s3cret\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    let netrc_arg = netrc.to_string_lossy().into_owned();

    // Readable by others: refused before any request.
    std::fs::set_permissions(&netrc, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out =
        nw_get(&scratch, &["--netrc-file", &netrc_arg, "-o", "a.bin", &url]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");

    std::fs::set_permissions(&netrc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out =
        nw_get(&scratch, &["--netrc-file", &netrc_arg, "-o", "b.bin", &url]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(scratch.0.join("b.bin")).unwrap() == data);
    // $NETRC names it for -n; without a login the server says 401.
    let out = nw_get(&scratch, &["-n", "-o", "c.bin", &url]).env("NETRC", &netrc).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = nw_get(&scratch, &["-o", "d.bin", &url]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("answered 401"));
    // Credentials are not queued.
    let out = nw_get(&scratch, &["--queue", "-n", "-o", "e.bin", &url])
        .env("NETRC", &netrc)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("credentials stay out of the store"));
    // To stdout, the login goes too.
    let out = nw_get(&scratch, &["-n", "-o", "-", &url]).env("NETRC", &netrc).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == data, "-o - with the login: {} bytes", out.stdout.len());
    // A named pipe as the file is refused at once, not waited on for a writer.
    crate::support::mkfifo(scratch.0.join("netrc.fifo"));
    let out =
        nw_get(&scratch, &["--netrc-file", "netrc.fifo", "-o", "f.bin", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a regular file"), "{err}");

    // nw put takes the same flags: the login from the file or --user, none queued.
    let up = server.url("/members-put/up.bin");
    let put = |args: &[&str]| nw(&scratch, &[&["put"], args].concat()).output().unwrap();
    let out = put(&["b.bin", &up]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("answered 401"), "{err}");
    let out = put(&["--netrc-file", &netrc_arg, "b.bin", &up]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(scratch.0.join("www/members-put/up.bin")).unwrap() == data);
    let out = put(&["--user", "alice:s3cret", "b.bin", &server.url("/members-put/u.bin")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(scratch.0.join("www/members-put/u.bin")).unwrap() == data);
    let out = put(&["--queue", "--user", "alice:s3cret", "b.bin", &up]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("credentials stay out of the store"));
    let out = put(&["-H", "Content-Length: 3", "b.bin", &up]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("Content-Length field is the session's own to set"), "{err}");
}

/// A PUT whose connection is reset while its body goes (a server or middlebox that drops it
/// mid-upload) is a lost connection, which `--retry` sends again as its README says; it was a
/// failure of HTTP ("request failed: Connection reset by peer") and never retried.
#[test]
fn put_sends_again_after_a_reset_mid_upload() {
    use std::io::Read as _;
    let scratch = scratch("put-reset");
    let data = pattern(8 << 20, 4);
    std::fs::write(scratch.0.join("big.bin"), &data).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let mut got = Vec::new();
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { break };
            if n == 0 {
                // Part of the body, then a reset.
                let mut some = vec![0u8; 256 << 10];
                let _ = stream.read_exact(&mut some);
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                continue;
            }
            let (_, body) = nw_lab::http::read_request(&mut stream);
            got = body;
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            break;
        }
        got
    });
    let url = format!("http://127.0.0.1:{port}/up/big.bin");
    let out = nw(&scratch, &["put", "big.bin", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("the connection was lost: "), "{err}");
    assert!(err.contains("; sending it again in 1 s (3 retries left)"), "{err}");
    assert!(server.join().unwrap() == data, "the second PUT's body is the file");
}

/// `nw send` against a server that breaks off, as a stranger meets one: a GET whose answer is
/// cut short is sent again, each retry said once in plain words ("the connection was lost: …"
/// once, not nested), and the whole second answer printed; a status past 599 is an answer, not
/// a server error worth retrying.
#[test]
fn send_retries_an_answer_cut_short_saying_so_once_and_not_a_status_past_599() {
    let scratch = scratch("send-cut");
    let (port, _server) = raw_server(|n, _| match n {
        1 => b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\nhello".to_vec(),
        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nwhole\n".to_vec(),
    });
    let url = format!("http://127.0.0.1:{port}/cut");
    let out = nw(&scratch, &["send", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "whole\n");
    assert!(
        err.contains(
            ": the connection was lost: the connection closed after 5 bytes of the body; sending it again in 1 s"
        ),
        "{err}"
    );
    assert_eq!(err.matches("the connection was lost").count(), 1, "{err}");

    let (port, _server) = raw_server(|_, _| {
        b"HTTP/1.1 999 Odd\r\nContent-Length: 3\r\nConnection: close\r\n\r\nodd".to_vec()
    });
    let url = format!("http://127.0.0.1:{port}/odd");
    let out = nw(&scratch, &["send", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("sending it again"), "{err}");
    assert!(err.contains("the server answered 999"), "{err}");
}

/// On a terminal, `nw send -d @FILE` draws the progress bar as the body goes (the file's name,
/// a percentage, the rate; none for its short answer) when its answer goes elsewhere, and
/// nothing when the answer is
/// printed on the terminal too, as curl leaves its meter out then. (`script` gives nw a
/// terminal; the server reads the 8 MiB body over about two seconds.)
#[test]
fn send_shows_the_body_going_on_a_terminal_unless_the_answer_is_printed_there() {
    use std::io::{Read as _, Write as _};
    let scratch = scratch("send-bar");
    std::fs::write(scratch.0.join("upload.bin"), pattern(8 << 20, 5)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _server = std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let head = nw_lab::http::read_head(&mut stream);
            let mut left: usize = nw_lab::http::field(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut piece = vec![0; 256 << 10];
            while left > 0 {
                std::thread::sleep(Duration::from_millis(60));
                let want = left.min(piece.len());
                if stream.read_exact(&mut piece[..want]).is_err() {
                    break;
                }
                left -= want;
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
        }
    });
    let under_a_terminal = |command: String| {
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .current_dir(&scratch.0)
            .env("NW_STORE", scratch.0.join("store.db"))
            .output()
            .unwrap_or_else(|e| panic!("script (bsdutils) must run to give nw a terminal: {e}"));
        let shown = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{command}: {shown}");
        shown
    };
    let url = format!("http://127.0.0.1:{port}/up");
    let shown = under_a_terminal(format!("'{NW}' send -d @upload.bin {url} > answer.txt"));
    assert!(shown.contains("\r\x1b[Kupload.bin") && shown.contains("100%"), "{shown:?}");
    assert!(shown.contains("MiB/s") && !shown.contains("answer"), "{shown:?}: a short answer");
    assert_eq!(std::fs::read(scratch.0.join("answer.txt")).unwrap(), b"ok\n");
    let shown = under_a_terminal(format!("'{NW}' send -d @upload.bin {url}"));
    assert!(shown.contains("ok") && !shown.contains("\x1b[K"), "{shown:?}");
}

/// `nw send`: text, a file and standard input (chunked, as it comes) as bodies of PUTs that
/// nginx stores byte-exact, over HTTP/1.1 and HTTP/2; a refused POST prints nginx's answer
/// and exits 1; `-i` and `--json` show the head; bad uses are usage errors.
#[test]
fn send_puts_text_files_and_stdin_byte_exact_and_prints_every_answer() {
    use std::io::Write as _;
    let scratch = scratch("send");
    let data = pattern(5 << 20, 9);
    std::fs::write(scratch.0.join("source.bin"), &data).unwrap();
    let (server, anchor) = https_nginx(&scratch);
    let send = |args: &[&str]| nw(&scratch, &[&["send"], args].concat());
    let stored = |name: &str| std::fs::read(scratch.0.join("www/put").join(name)).unwrap();
    for (label, base) in [("h1", server.url("/put/")), ("h2", server.https_url("/put/").unwrap())] {
        let text = format!("{label}-text");
        let out = send(&["--anchor", &anchor, "-X", "PUT", &format!("{base}{text}"), "-d", "hi\n"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{text}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stored(&text), b"hi\n");
        let file = format!("{label}-file");
        let out = send(&["--anchor", &anchor, "-X", "PUT", &format!("{base}{file}"), "-d"])
            .arg("@source.bin")
            .output()
            .unwrap();
        assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stored(&file) == data, "{file}: not byte-exact");
        // Standard input, in pieces with pauses between them: sent as it comes.
        let piped = format!("{label}-stdin");
        let mut child = send(&["--anchor", &anchor, "-X", "PUT", &format!("{base}{piped}")])
            .args(["-d", "@-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        for piece in data.chunks(1 << 20) {
            input.write_all(piece).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{piped}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(stored(&piped) == data, "{piped}: not byte-exact");
    }
    // nginx refuses a POST to a file: its answer printed, exit 1, the status said once.
    let out = send(&[&server.url("/put/h1-text"), "-d", "x"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("405 Not Allowed"), "{out:?}");
    assert!(stderr.contains("answered 405"), "{stderr}");
    // -i: the head first; --json: one object.
    let out = send(&["-i", &server.url("/put/h1-text")]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("HTTP/1.1 200\r\n") && stdout.ends_with("\r\n\r\nhi\n"), "{stdout}");
    let out = send(&["--json", &server.url("/put/h1-text")]).output().unwrap();
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 1, "{out:?}");
    assert_eq!((lines[0]["status"].as_u64(), lines[0]["body"].as_str()), (Some(200), Some("hi\n")));
    // An answer over --max-size: exit 1, saying how to take more.
    let out = send(&["--max-size", "2", &server.url("/put/h1-text")]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("longer than 2 bytes") && stderr.contains("--max-size"), "{stderr}");
    // Bad uses: exit 2, before any request.
    for args in [
        &["-X", "BAD METHOD", "http://127.0.0.1:1/"][..],
        &["-d", "@absent.bin", "http://127.0.0.1:1/"],
        &["-d", "@www", "http://127.0.0.1:1/"],
        &["-d", "a", "--data-raw", "b", "http://127.0.0.1:1/"],
    ] {
        let out = send(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
