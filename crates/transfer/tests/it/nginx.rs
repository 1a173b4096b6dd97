//! Downloads from a real nginx on loopback: byte-exact, resumed after an interruption, and
//! restarted cleanly when the file changed or the server ignores ranges.

use nw_lab::nginx::{Nginx, Options as NginxOptions};
use nw_transfer::download::{Event, part_path};
use nw_transfer::resume::RestartReason;
use nw_transfer::store::State;
use nw_transfer::{Configuration, Protocol, TransferError};

use crate::support::{Scratch, Tls, interrupt, job, pattern, runtime, session};

fn nginx(scratch: &Scratch, options: &NginxOptions) -> Nginx {
    Nginx::start(&scratch.www(), options).unwrap_or_else(|e| panic!("nginx could not start: {e}"))
}

#[test]
fn nginx_a_download_is_byte_exact_and_recorded_done() {
    let scratch = Scratch::new("exact");
    let data = pattern(24 << 20, 1);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let server = nginx(&scratch, &NginxOptions::default());
    let session = session(&scratch, Configuration::default());
    let dest = scratch.0.join("file.bin");
    let done = runtime()
        .block_on(session.download(&job(server.url("/file.bin"), &dest, false), &mut |_| {}))
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(!part_path(&dest).exists(), "the .part is renamed, not left behind");
    assert_eq!(
        (done.bytes, done.resumed_from, done.metrics.protocol),
        (data.len() as u64, 0, Protocol::Http11)
    );
    let record = session.store().find(&dest).unwrap().unwrap();
    assert_eq!((record.state, record.offset), (State::Done, data.len() as u64));
    // The transfer fed the session's link-quality monitor: a loopback link is good.
    let link = &done.link;
    assert!(link.throughput.is_some_and(|t| t > 100e6), "{link:?}");
    assert!(link.rtt_ms.is_some_and(|r| r < 50.0) && link.failure_ratio == 0.0, "{link:?}");
    assert_eq!(link.level, nw_quality::LinkQuality::Good, "{link:?}");
    // A second download to the same file refuses to clobber it.
    let again = runtime()
        .block_on(session.download(&job(server.url("/file.bin"), &dest, false), &mut |_| {}));
    assert!(matches!(&again, Err(TransferError::Usage(m)) if m.contains("--force")), "{again:?}");
}

#[test]
fn nginx_an_interrupted_download_resumes_byte_exact_from_its_checkpoint() {
    let scratch = Scratch::new("resume");
    let data = pattern(48 << 20, 2);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let server =
        nginx(&scratch, &NginxOptions { slow_rate: Some("20m".into()), ..NginxOptions::default() });
    let config = Configuration { checkpoint_bytes: 4 << 20, ..Configuration::default() };
    let session = session(&scratch, config);
    let dest = scratch.0.join("file.bin");
    let url = server.url("/slow/file.bin");
    let rt = runtime();
    rt.block_on(interrupt(&session, &job(url.clone(), &dest, false), 8 << 20));
    // Without --resume the partial download is protected, with a hint.
    let refused = rt.block_on(session.download(&job(url.clone(), &dest, false), &mut |_| {}));
    assert!(
        matches!(&refused, Err(TransferError::Usage(m)) if m.contains("--resume")),
        "{refused:?}"
    );
    let record = session.store().find(&dest).unwrap().unwrap();
    assert!(record.offset >= 4 << 20, "checkpointed {} bytes", record.offset);
    let mut from = None;
    let done = rt
        .block_on(session.download(&job(url, &dest, true), &mut |e| {
            if let Event::Started { from: f, .. } = e {
                from = Some(f);
            }
        }))
        .unwrap();
    assert_eq!(from, Some(record.offset), "resumed exactly at the checkpoint");
    assert_eq!(done.resumed_from, record.offset);
    assert_eq!(done.metrics.received, data.len() as u64 - record.offset);
    assert!(std::fs::read(&dest).unwrap() == data, "the resumed file is byte-exact");
}

#[test]
fn nginx_a_file_changed_on_the_server_restarts_cleanly() {
    let scratch = Scratch::new("changed");
    let old = pattern(32 << 20, 3);
    let new = pattern(20 << 20, 4);
    let served = scratch.www().join("file.bin");
    std::fs::write(&served, &old).unwrap();
    let server =
        nginx(&scratch, &NginxOptions { slow_rate: Some("20m".into()), ..NginxOptions::default() });
    let session =
        session(&scratch, Configuration { checkpoint_bytes: 2 << 20, ..Configuration::default() });
    let dest = scratch.0.join("file.bin");
    let url = server.url("/slow/file.bin");
    let rt = runtime();
    rt.block_on(interrupt(&session, &job(url.clone(), &dest, false), 6 << 20));
    // A new version, as a deploy would put it: a new file renamed over the old one.
    let staged = scratch.www().join("file.bin.new");
    std::fs::write(&staged, &new).unwrap();
    std::fs::rename(&staged, &served).unwrap();
    let mut restarted = None;
    let done = rt
        .block_on(session.download(&job(url, &dest, true), &mut |e| {
            if let Event::Started { restarted: r, .. } = e {
                restarted = r;
            }
        }))
        .unwrap();
    assert_eq!(restarted, Some(RestartReason::Changed));
    assert_eq!(done.restarted, Some(RestartReason::Changed));
    assert!(std::fs::read(&dest).unwrap() == new, "the file is the new version, whole");
}

#[test]
fn nginx_a_server_that_ignores_range_restarts_cleanly() {
    let scratch = Scratch::new("norange");
    let data = pattern(24 << 20, 5);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let server =
        nginx(&scratch, &NginxOptions { slow_rate: Some("20m".into()), ..NginxOptions::default() });
    let session =
        session(&scratch, Configuration { checkpoint_bytes: 2 << 20, ..Configuration::default() });
    let dest = scratch.0.join("file.bin");
    let rt = runtime();
    let url = server.url("/norange/file.bin");
    rt.block_on(interrupt(&session, &job(url.clone(), &dest, false), 4 << 20));
    let done = rt.block_on(session.download(&job(url, &dest, true), &mut |_| {})).unwrap();
    assert_eq!(done.restarted, Some(RestartReason::RangeIgnored));
    assert_eq!(done.resumed_from, 0);
    assert!(std::fs::read(&dest).unwrap() == data, "byte-exact after the restart");
}

#[test]
fn nginx_a_wrong_digest_leaves_no_file_in_place() {
    let scratch = Scratch::new("digest");
    std::fs::write(scratch.www().join("file.bin"), pattern(1 << 20, 6)).unwrap();
    let server = nginx(&scratch, &NginxOptions::default());
    let session = session(&scratch, Configuration::default());
    let dest = scratch.0.join("file.bin");
    let mut bad = job(server.url("/file.bin"), &dest, false);
    bad.sha256 = Some([0u8; 32]);
    let result = runtime().block_on(session.download(&bad, &mut |_| {}));
    assert!(
        matches!(&result, Err(e @ TransferError::Digest { .. }) if e.to_string().contains("not put in place")),
        "{result:?}"
    );
    assert!(!dest.exists());
    assert_eq!(session.store().find(&dest).unwrap().unwrap().state, State::Failed);
}

#[test]
fn nginx_https_over_http2_and_http1_with_a_private_anchor() {
    let scratch = Scratch::new("https");
    let data = pattern(8 << 20, 7);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let tls = Tls::new(&scratch);
    let server = nginx(
        &scratch,
        &NginxOptions { tls: Some((tls.cert.clone(), tls.key.clone())), ..NginxOptions::default() },
    );
    let trust = tls.trust;
    let url = server.https_url("/file.bin").unwrap();
    for (http2, protocol) in [(true, Protocol::H2), (false, Protocol::Http11)] {
        let session = session(
            &scratch,
            Configuration { trust: trust.clone(), http2, ..Configuration::default() },
        );
        let dest = scratch.0.join(format!("h2-{http2}.bin"));
        let done = runtime()
            .block_on(session.download(&job(url.clone(), &dest, false), &mut |_| {}))
            .unwrap();
        assert_eq!(done.metrics.protocol, protocol);
        assert!(done.metrics.tls.is_some());
        assert!(std::fs::read(&dest).unwrap() == data);
    }
    // Without the anchor the server is not trusted, and nothing is written.
    let session = session(&scratch, Configuration::default());
    let dest = scratch.0.join("untrusted.bin");
    let result = runtime().block_on(session.download(&job(url, &dest, false), &mut |_| {}));
    assert!(matches!(result, Err(TransferError::Connect(_))), "{result:?}");
    assert!(!dest.exists());
}

#[test]
fn plain_http_to_a_public_name_is_blocked_before_connecting() {
    let scratch = Scratch::new("ats");
    let session = session(&scratch, Configuration::default());
    let dest = scratch.0.join("x");
    let result = runtime().block_on(
        session.download(&job("http://example.test/x".into(), &dest, false), &mut |_| {}),
    );
    let Err(TransferError::Refused(e)) = result else { panic!("{result:?}") };
    assert!(
        e.to_string().contains("insecure load blocked") && e.to_string().contains("--allow-http"),
        "{e}"
    );
    assert!(session.store().find(&dest).unwrap().is_none(), "nothing recorded");
    let ftp = runtime()
        .block_on(session.download(&job("ftp://example.test/x".into(), &dest, false), &mut |_| {}));
    assert!(matches!(&ftp, Err(e) if e.to_string().contains("FTP is not supported")), "{ftp:?}");
}
