//! Downloads from a real nginx on loopback: byte-exact, resumed after an interruption, and
//! restarted cleanly when the file changed or the server ignores ranges.

use nw_http::cookies::Cookies;
use nw_lab::nginx::{Nginx, Options as NginxOptions};
use nw_transfer::download::{Event, part_path};
use nw_transfer::resume::RestartReason;
use nw_transfer::store::State;
use nw_transfer::tasks::Request;
use nw_transfer::{Configuration, InTheWay, Method, Protocol, TransferError};

use crate::support::{Scratch, Tls, interrupt, job, nginx, pattern, runtime, session};

/// Resumes the download of `url` to `dest`, and says why it restarted, as its `Started` event
/// told it.
fn resume_reporting_restart(
    rt: &tokio::runtime::Runtime,
    session: &nw_transfer::Session,
    url: String,
    dest: &std::path::Path,
) -> (nw_transfer::Finished, Option<RestartReason>) {
    let mut restarted = None;
    let done = rt
        .block_on(session.download(&job(url, dest, true), &mut |e| {
            if let Event::Started { restarted: r, .. } = e {
                restarted = r;
            }
        }))
        .unwrap();
    (done, restarted)
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
    assert!(
        matches!(&again, Err(TransferError::InTheWay { kind: InTheWay::Exists, .. })),
        "{again:?}"
    );
    assert_eq!(again.unwrap_err().code(), nw_transfer::Code::CannotCreateFile);
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
    // Without resuming, the partial download is protected, and the error says what it holds.
    let refused = rt.block_on(session.download(&job(url.clone(), &dest, false), &mut |_| {}));
    assert!(
        matches!(&refused, Err(TransferError::InTheWay { kind: InTheWay::Interrupted { bytes, url: u }, .. })
            if *bytes > 0 && *u == url),
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

/// A download of `old`, served by nginx at `/slow/` (20 MB/s), checkpointed every 2 MiB and
/// interrupted after 6 MiB: ready for the served file to change behind it.
struct Interrupted {
    scratch: Scratch,
    served: std::path::PathBuf,
    server: Nginx,
    session: nw_transfer::Session,
    dest: std::path::PathBuf,
    url: String,
    rt: tokio::runtime::Runtime,
}

fn interrupted(tag: &str, old: &[u8]) -> Interrupted {
    let scratch = Scratch::new(tag);
    let served = scratch.www().join("file.bin");
    std::fs::write(&served, old).unwrap();
    let server =
        nginx(&scratch, &NginxOptions { slow_rate: Some("20m".into()), ..NginxOptions::default() });
    let session =
        session(&scratch, Configuration { checkpoint_bytes: 2 << 20, ..Configuration::default() });
    let dest = scratch.0.join("file.bin");
    let url = server.url("/slow/file.bin");
    let rt = runtime();
    rt.block_on(interrupt(&session, &job(url.clone(), &dest, false), 6 << 20));
    Interrupted { scratch, served, server, session, dest, url, rt }
}

#[test]
fn nginx_a_file_changed_on_the_server_restarts_cleanly() {
    let new = pattern(20 << 20, 4);
    // Every guard is bound: the server and the scratch directory last to the end.
    let Interrupted { scratch, served, server: _server, session, dest, url, rt } =
        interrupted("changed", &pattern(32 << 20, 3));
    // A new version, as a deploy would put it: a new file renamed over the old one.
    let staged = scratch.www().join("file.bin.new");
    std::fs::write(&staged, &new).unwrap();
    std::fs::rename(&staged, &served).unwrap();
    let (done, restarted) = resume_reporting_restart(&rt, &session, url, &dest);
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
        matches!(&result, Err(e @ TransferError::Digest { .. }) if e.to_string().contains("discarded")),
        "{result:?}"
    );
    assert!(!dest.exists());
    assert!(!part_path(&dest).exists(), "the bad bytes are discarded");
    assert_eq!(session.store().find(&dest).unwrap().unwrap().state, State::Failed);
    // So the next run starts clean instead of being refused over a .part it cannot use.
    let good = job(server.url("/file.bin"), &dest, false);
    runtime().block_on(session.download(&good, &mut |_| {})).unwrap();
    assert!(dest.exists());
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

/// nginx over HTTPS (HTTP/2 and HTTP/1.1 by ALPN) serving `small` with `extra` in its server
/// blocks; the URL of `small`, and a session with `config` that trusts the server.
fn https_small(
    scratch: &Scratch,
    extra: &str,
    config: Configuration,
) -> (Nginx, String, nw_transfer::Session) {
    std::fs::write(scratch.www().join("small"), b"small").unwrap();
    let tls = Tls::new(scratch);
    let server = nginx(
        scratch,
        &NginxOptions {
            tls: Some((tls.cert.clone(), tls.key.clone())),
            extra: extra.into(),
            ..NginxOptions::default()
        },
    );
    let url = server.https_url("/small").unwrap();
    let session = session(scratch, Configuration { trust: tls.trust, ..config });
    (server, url, session)
}

#[test]
fn nginx_a_new_https_connection_resumes_the_tls_session_of_an_earlier_one() {
    let scratch = Scratch::new("resume-tls");
    // HTTP/1.1, so that two requests at once need two connections.
    let config = Configuration { http2: false, ..Configuration::default() };
    let (_server, url, session) = https_small(&scratch, "", config);
    let rt = runtime();
    let first = rt.block_on(session.data(&url, 64)).unwrap();
    assert_eq!((first.metrics.reused, first.metrics.tls_resumed), (false, Some(false)));
    let (a, b) =
        rt.block_on(async { tokio::join!(session.data(&url, 64), session.data(&url, 64)) });
    let (a, b) = (a.unwrap().metrics, b.unwrap().metrics);
    let fresh = if a.reused { b } else { a };
    assert!(!fresh.reused, "two requests at once over HTTP/1.1 take two connections");
    // The session kept its TLS settings, and with them the server's ticket: the new
    // connection's handshake resumed instead of checking the chain again.
    assert_eq!(fresh.tls_resumed, Some(true), "{fresh:?}");
}

#[test]
fn nginx_requests_at_once_over_http2_share_one_connection() {
    let scratch = Scratch::new("h2-share");
    let (_server, url, session) = https_small(&scratch, "", Configuration::default());
    let rt = runtime();
    // A burst of 16 to an origin nothing is known of, then 16 more: one connection made.
    for burst in 0..2 {
        let all =
            rt.block_on(futures_util::future::join_all((0..16).map(|_| session.data(&url, 64))));
        let metrics: Vec<_> = all.into_iter().map(|d| d.unwrap().metrics).collect();
        assert!(metrics.iter().all(|m| m.protocol == Protocol::H2), "{metrics:?}");
        let made = metrics.iter().filter(|m| !m.reused).count();
        assert_eq!(made, usize::from(burst == 0), "burst {burst}: {metrics:?}");
    }
}

#[test]
fn nginx_requests_on_an_http2_connection_closed_at_its_request_limit_move_to_one_new_one() {
    let scratch = Scratch::new("h2-goaway");
    // nginx ends an HTTP/2 connection with GOAWAY after `keepalive_requests` (1,000 by
    // default); the requests it refused are retried.
    let (_server, url, session) =
        https_small(&scratch, "keepalive_requests 10;", Configuration::default());
    let rt = runtime();
    let mut made = 0;
    for _ in 0..4 {
        let all =
            rt.block_on(futures_util::future::join_all((0..25).map(|_| session.data(&url, 64))));
        for got in all {
            let got = got.unwrap_or_else(|e| panic!("a request the server refused failed: {e}"));
            assert_eq!(got.body.as_ref(), b"small");
            made += usize::from(!got.metrics.reused);
        }
    }
    // 100 requests at 10 a connection need 10 connections; each time one closes, the
    // requests it refused share the next one instead of making one each.
    assert!((10..=14).contains(&made), "{made} connections made for 100 requests");
}

#[test]
fn nginx_sent_requests_the_server_refused_at_its_http2_request_limit_go_again() {
    let scratch = Scratch::new("h2-goaway-send");
    // As the GETs above, through `send`: requests of every method that the server's GOAWAY
    // refused (it did nothing with them, RFC 9113 §8.7) go again, a POST's included.
    let (_server, url, session) =
        https_small(&scratch, "keepalive_requests 10;", Configuration::default());
    let rt = runtime();
    let methods = [Method::GET, Method::HEAD, Method::DELETE, Method::OPTIONS, Method::POST];
    let mut made = 0;
    for _ in 0..4 {
        let requests: Vec<_> = (0..25)
            .map(|i| Request {
                method: methods[i % methods.len()].clone(),
                ..Request::get(url.clone())
            })
            .collect();
        let all = rt.block_on(futures_util::future::join_all(
            requests.iter().map(|r| session.send(r, 4096)),
        ));
        for (request, got) in requests.iter().zip(all) {
            let got = got
                .unwrap_or_else(|e| panic!("a {} the server refused failed: {e}", request.method));
            // nginx serves a file to GET and HEAD, and refuses the rest with 405.
            let want =
                if [Method::GET, Method::HEAD].contains(&request.method) { 200 } else { 405 };
            assert_eq!(got.status, want, "{}", request.method);
            made += usize::from(!got.metrics.reused);
        }
    }
    // A POST takes a connection of its own (which joins the pool once answered); the rest
    // share, as the GETs above. (64 were made when each refused request made its own.)
    assert!((20..=30).contains(&made), "{made} connections made for 100 requests");
}

#[test]
fn nginx_requests_to_a_server_that_takes_one_per_http2_connection_all_get_answers() {
    let scratch = Scratch::new("h2-one");
    // Each connection carries one request and refuses the rest: slow, but every request is
    // answered in the end, since each connection takes one.
    let (_server, url, session) =
        https_small(&scratch, "keepalive_requests 1;", Configuration::default());
    let all =
        runtime().block_on(futures_util::future::join_all((0..10).map(|_| session.data(&url, 64))));
    for got in all {
        let got = got.unwrap_or_else(|e| panic!("a request the server refused failed: {e}"));
        assert_eq!(got.body.as_ref(), b"small");
    }
}

#[test]
fn plain_http_to_a_public_name_is_blocked_before_connecting() {
    let scratch = Scratch::new("ats");
    let session = session(&scratch, Configuration::default());
    let dest = scratch.0.join("x");
    let result = runtime().block_on(
        session.download(&job("http://example.test/x".into(), &dest, false), &mut |_| {}),
    );
    let Err(e @ TransferError::Refused(_)) = result else { panic!("{result:?}") };
    assert_eq!(e.code(), nw_transfer::Code::InsecureLoadBlocked);
    assert_eq!(e.code().apple(), Some(-1022));
    // The library's words name no flag of the CLI's: the CLI adds its own hint.
    assert!(
        e.to_string().contains("insecure load blocked") && !e.to_string().contains("--"),
        "{e}"
    );
    assert!(session.store().find(&dest).unwrap().is_none(), "nothing recorded");
    let ftp = runtime()
        .block_on(session.download(&job("ftp://example.test/x".into(), &dest, false), &mut |_| {}));
    assert!(matches!(&ftp, Err(e) if e.to_string().contains("FTP is not supported")), "{ftp:?}");
}

#[test]
fn nginx_redirects_are_followed_across_origins_and_loops_limits_and_downgrades_stop() {
    let scratch = Scratch::new("redirects");
    let data = pattern(300_000, 11);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    // The far origin serves the file; the near one redirects to it, relatively and not, over
    // HTTP and HTTPS.
    let far = nginx(&scratch, &NginxOptions::default());
    let tls = Tls::new(&scratch);
    let redirects = vec![
        ("/moved".to_owned(), 301, "/hop".to_owned()),
        ("/hop".to_owned(), 302, far.url("/file.bin")),
        ("/see".to_owned(), 303, far.url("/file.bin")),
        ("/loop-a".to_owned(), 307, "/loop-b".to_owned()),
        ("/loop-b".to_owned(), 308, "/loop-a".to_owned()),
        ("/gone".to_owned(), 302, far.url("/missing.bin")),
        ("/down".to_owned(), 302, far.url("/file.bin")),
    ];
    let near = nginx(
        &scratch,
        &NginxOptions {
            tls: Some((tls.cert.clone(), tls.key.clone())),
            redirects,
            ..NginxOptions::default()
        },
    );
    let config = Configuration { trust: tls.trust.clone(), ..Configuration::default() };
    let session = session(&scratch, config.clone());
    let get = |session: &nw_transfer::Session, url: String, name: &str| {
        let dest = scratch.0.join(name);
        let result = runtime().block_on(session.download(&job(url, &dest, false), &mut |_| {}));
        (result, dest)
    };
    // Two hops, the second to another origin: the file, byte-exact, recorded under the URL
    // asked.
    let (result, dest) = get(&session, near.url("/moved"), "moved.bin");
    let done = result.unwrap();
    assert!(std::fs::read(&dest).unwrap() == data);
    // The metrics list each hop with its own timings; the final request's connection is the
    // far origin's, made after the last hop answered.
    let m = &done.metrics;
    let hops: Vec<(&str, u16)> = m.redirects.iter().map(|h| (h.url.as_str(), h.status)).collect();
    assert_eq!(hops, [(near.url("/moved").as_str(), 301), (near.url("/hop").as_str(), 302)]);
    for h in &m.redirects {
        let t = &h.metrics;
        assert!(t.connected_ms <= t.request_ms && t.request_ms <= t.first_byte_ms, "{h:?}");
        let port = t.remote.map(|r| r.port().to_string());
        assert!(
            t.received == 0 && near.url("/").contains(&format!(":{}/", port.unwrap_or_default())),
            "{h:?}"
        );
    }
    assert!(m.connected_ms >= m.redirects[1].metrics.first_byte_ms, "{m:?}");
    // The second hop is on the same origin: its request rode the first one's connection, the
    // redirect's little body read first.
    assert!(!m.redirects[0].metrics.reused && m.redirects[1].metrics.reused, "{m:?}");
    let port = m.remote.map(|r| r.port().to_string()).unwrap_or_default();
    assert!(far.url("/").contains(&format!(":{port}/")), "{m:?}");
    assert_eq!(session.store().find(&dest).unwrap().unwrap().url, near.url("/moved"));
    let (result, dest) = get(&session, near.url("/see"), "see.bin");
    result.unwrap();
    assert!(std::fs::read(&dest).unwrap() == data);
    // A loop is named, hop by hop, and leaves no .part.
    let (result, dest) = get(&session, near.url("/loop-a"), "loop.bin");
    let e = result.unwrap_err().to_string();
    assert!(e.starts_with("a redirect loop: ") && e.matches("/loop-").count() == 3, "{e}");
    assert!(!dest.exists() && !part_path(&dest).exists());
    // A redirect to a 404 is the 404's failure.
    let (result, dest) = get(&session, near.url("/gone"), "gone.bin");
    assert_eq!(result.unwrap_err().status(), Some(404));
    assert!(!part_path(&dest).exists(), "an empty .part is not left behind");
    // HTTPS to plain HTTP is a downgrade: refused, even to a local name.
    let (result, _) = get(&session, near.https_url("/down").unwrap(), "down.bin");
    let e = result.unwrap_err().to_string();
    assert!(e.contains("from HTTPS to plain HTTP"), "{e}");
    // With redirects off, the first answer is the answer.
    let off = session_with(&scratch, Configuration { max_redirects: 0, ..config.clone() });
    let (result, _) = get(&off, near.url("/moved"), "off.bin");
    assert_eq!(result.unwrap_err().status(), Some(301));
    // And with a limit of one, two hops are too many.
    let one = session_with(&scratch, Configuration { max_redirects: 1, ..config });
    let (result, _) = get(&one, near.url("/moved"), "one.bin");
    let e = result.unwrap_err().to_string();
    assert!(e.starts_with("more than 1 redirect ("), "{e}");
}

fn session_with(scratch: &Scratch, config: Configuration) -> nw_transfer::Session {
    session(scratch, config)
}

#[test]
fn a_server_that_never_answers_fails_within_the_timeout_and_leaves_nothing() {
    use std::time::{Duration, Instant};
    let scratch = Scratch::new("silent");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts, reads until the client gives up, and never answers (a second connection
    // would wait in the backlog, accepted by the kernel and as silent).
    let held = std::thread::spawn(move || {
        use std::io::Read as _;
        if let Some(Ok(mut stream)) = listener.incoming().next() {
            let _ = stream.read_to_end(&mut Vec::new());
        }
    });
    let session = session(
        &scratch,
        Configuration { request_timeout: Duration::from_secs(2), ..Configuration::default() },
    );
    let dest = scratch.0.join("never.bin");
    #[allow(clippy::disallowed_methods, reason = "the test measures how long the failure took")]
    let started = Instant::now();
    let result =
        runtime().block_on(session.download(
            &job(format!("http://127.0.0.1:{port}/never.bin"), &dest, false),
            &mut |_| {},
        ));
    let took = started.elapsed();
    assert!(matches!(&result, Err(TransferError::Timeout(_))), "{result:?}");
    assert!(result.unwrap_err().to_string().contains("no response within 2 s"));
    assert!(took < Duration::from_secs(10), "failed after {took:?}, not within its timeout");
    assert!(!dest.exists() && !part_path(&dest).exists(), "nothing left behind");
    assert_eq!(session.store().find(&dest).unwrap().unwrap().state, State::Interrupted);
    drop(held);
}

/// A request's own timeout (URLRequest's `timeoutInterval`) ends a wait the session's would
/// not, and the session's resource timeout ends a data task whose server trickles a byte every
/// 200 ms, which no idle timeout catches.
#[test]
fn a_requests_own_timeout_and_the_resource_timeout_end_what_the_session_timeout_would_not() {
    use std::io::{Read as _, Write as _};
    use std::time::{Duration, Instant};
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let _held = std::thread::spawn(move || {
        if let Some(Ok(mut stream)) = silent.incoming().next() {
            let _ = stream.read_to_end(&mut Vec::new());
        }
    });
    let patient =
        Configuration { request_timeout: Duration::from_secs(60), ..Configuration::default() };
    let session = nw_transfer::Session::ephemeral(patient.clone()).unwrap();
    let request = Request {
        timeout: Some(Duration::from_secs(1)),
        ..Request::get(format!("http://127.0.0.1:{port}/never"))
    };
    #[allow(clippy::disallowed_methods, reason = "the test measures how long the failure took")]
    let started = Instant::now();
    let result = runtime().block_on(session.send(&request, 1 << 20));
    let took = started.elapsed();
    assert!(matches!(&result, Err(TransferError::Timeout(_))), "{result:?}");
    assert!(result.unwrap_err().to_string().contains("no response within 1 s"));
    assert!(took < Duration::from_secs(10), "failed after {took:?}, not within its own timeout");

    let trickle = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = trickle.local_addr().unwrap().port();
    let _trickling = std::thread::spawn(move || {
        let Some(Ok(mut stream)) = trickle.incoming().next() else { return };
        let _ = stream.read(&mut [0; 4096]);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        for _ in 0..150 {
            if stream.write_all(b"x").is_err() {
                return;
            }
            #[allow(clippy::disallowed_methods, reason = "a server that trickles")]
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let bounded = Configuration { resource_timeout: Some(Duration::from_secs(1)), ..patient };
    let session = nw_transfer::Session::ephemeral(bounded).unwrap();
    #[allow(clippy::disallowed_methods, reason = "the test measures how long the failure took")]
    let started = Instant::now();
    let result =
        runtime().block_on(session.data(&format!("http://127.0.0.1:{port}/slow"), 1 << 20));
    let took = started.elapsed();
    assert!(matches!(&result, Err(TransferError::ResourceTimeout(_))), "{result:?}");
    assert_eq!(result.unwrap_err().code(), nw_transfer::Code::TimedOut);
    assert!(
        took < Duration::from_secs(10),
        "failed after {took:?}, not within the resource timeout"
    );
}

#[test]
fn nginx_a_file_changed_behind_an_unchanged_etag_is_caught_by_the_overlap() {
    let new = pattern(24 << 20, 6);
    let Interrupted { scratch: _scratch, served, server, session, dest, url, rt } =
        interrupted("same-etag", &pattern(24 << 20, 5));
    let record = session.store().find(&dest).unwrap().unwrap();
    assert!(record.offset > 0, "a checkpoint to resume from");
    // The same length and the same mtime: nginx's ETag ("mtime-size") and Last-Modified do not
    // change, so If-Range alone would splice the new bytes onto the old ones.
    let mtime = std::fs::metadata(&served).unwrap().modified().unwrap();
    let etag = |session: &nw_transfer::Session| {
        rt.block_on(session.data(&server.url("/file.bin"), 64 << 20))
            .unwrap()
            .headers
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("etag"))
            .unwrap()
            .1
    };
    let before = etag(&session);
    std::fs::write(&served, &new).unwrap();
    std::fs::File::options().write(true).open(&served).unwrap().set_modified(mtime).unwrap();
    assert_eq!(etag(&session), before, "the validator did not change");
    let (done, restarted) = resume_reporting_restart(&rt, &session, url, &dest);
    assert_eq!(restarted, Some(RestartReason::ContentChanged));
    assert_eq!(done.restarted, Some(RestartReason::ContentChanged));
    assert!(std::fs::read(&dest).unwrap() == new, "the new version, whole, never spliced");
}

#[test]
fn nginx_a_data_task_undoes_gzip_and_a_download_never_asks_for_it() {
    let scratch = Scratch::new("gzip");
    // Text compresses well: the coding must be undone, not passed on.
    let text: Vec<u8> =
        (0..20_000).flat_map(|i| format!("line {i}: the quick brown fox\n").into_bytes()).collect();
    std::fs::write(scratch.www().join("page.txt"), &text).unwrap();
    let server = nginx(&scratch, &NginxOptions { gzip: true, ..NginxOptions::default() });
    let session = session(&scratch, Configuration::default());
    let rt = runtime();
    let data = rt.block_on(session.data(&server.url("/page.txt"), 8 << 20)).unwrap();
    assert_eq!(data.decoded_from.as_deref(), Some("gzip"));
    assert!(data.body == text, "decoded byte for byte");
    assert!(data.metrics.received < text.len() as u64 / 4, "{} on the wire", data.metrics.received);
    assert!(
        !data.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-encoding")),
        "{:?}",
        data.headers
    );
    // Decoded, the body is held to the same limit as the bytes on the wire.
    let e = rt.block_on(session.data(&server.url("/page.txt"), 100_000)).unwrap_err();
    assert_eq!(e.code(), nw_transfer::Code::DataLengthExceedsMaximum);
    assert!(e.to_string().contains("decoded, the body is longer than 100000 bytes"), "{e}");
    // A download asks for no coding (a range of gzip is not a range of the file): the file.
    let dest = scratch.0.join("page.txt");
    let done = rt
        .block_on(session.download(&job(server.url("/page.txt"), &dest, false), &mut |_| {}))
        .unwrap();
    assert_eq!(done.bytes, text.len() as u64);
    assert!(std::fs::read(&dest).unwrap() == text);
}

/// nginx answering `/login` with a cookie and a redirect to `/private/file.bin`, which it
/// serves only to a request that sends the cookie back (403 otherwise): the shape of many
/// real download links.
fn cookie_gate(scratch: &Scratch) -> Nginx {
    std::fs::create_dir_all(scratch.www().join("private")).unwrap();
    let extra = r#"
        location = /login {
            add_header Set-Cookie "session=s3cr3t; Path=/private; Max-Age=3600; HttpOnly" always;
            add_header Set-Cookie "theme=dark; Path=/" always;
            return 302 /private/file.bin;
        }
        location /private/ { if ($cookie_session != "s3cr3t") { return 403; } }
    "#;
    nginx(scratch, &NginxOptions { extra: extra.into(), ..NginxOptions::default() })
}

#[test]
fn nginx_cookies_set_on_a_redirect_are_sent_back_and_kept_in_a_file() {
    let scratch = Scratch::new("cookies");
    let data = pattern(1 << 20, 7);
    std::fs::create_dir_all(scratch.www().join("private")).unwrap();
    std::fs::write(scratch.www().join("private/file.bin"), &data).unwrap();
    let server = cookie_gate(&scratch);
    let rt = runtime();

    // Without cookies the gate holds: the private file answers 403.
    let off =
        session(&scratch, Configuration { cookies: Cookies::Off, ..Configuration::default() });
    let e = rt
        .block_on(
            off.download(
                &job(server.url("/login"), &scratch.0.join("off.bin"), false),
                &mut |_| {},
            ),
        )
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");

    // With the session's jar (the default), the cookie set by the redirect goes to the next hop.
    let jar = scratch.0.join("jar.json");
    let config = Configuration { cookies: Cookies::File(jar.clone()), ..Configuration::default() };
    let with = session(&scratch, config.clone());
    let dest = scratch.0.join("file.bin");
    rt.block_on(with.download(&job(server.url("/login"), &dest, false), &mut |_| {})).unwrap();
    assert!(std::fs::read(&dest).unwrap() == data);

    // The persistent cookie is in the file (owner-only); the session cookie (no expiry) is not.
    let text = std::fs::read_to_string(&jar).unwrap();
    assert!(text.contains("s3cr3t") && !text.contains("dark"), "{text}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&jar).unwrap().permissions().mode() & 0o777, 0o600);
    // A new session with the same file goes straight through the gate.
    let again = session(&scratch, config);
    let data_task = rt.block_on(again.data(&server.url("/private/file.bin"), 2 << 20)).unwrap();
    assert_eq!(data_task.status, 200);
    assert!(data_task.body == data);

    // A jar file that is not one is refused, naming it, before any request.
    std::fs::write(&jar, "not json").unwrap();
    let bad = nw_transfer::Session::new(
        Configuration { cookies: Cookies::File(jar.clone()), ..Configuration::default() },
        &scratch.0.join("store2.db"),
    )
    .unwrap_err();
    assert!(bad.to_string().contains("not a cookie jar"), "{bad}");
    let nowhere = scratch.0.join("absent/jar.json");
    let bad = nw_transfer::Session::new(
        Configuration { cookies: Cookies::File(nowhere), ..Configuration::default() },
        &scratch.0.join("store3.db"),
    )
    .unwrap_err();
    assert!(bad.to_string().contains("does not exist"), "{bad}");
}

/// `Session::send` with a body read as it goes: a stream of unknown length (chunked over
/// HTTP/1.1), one of a declared length, a file — each stored whole by nginx's PUT over
/// HTTP/1.1 and HTTP/2, and sent whole again through a 307. A stream that can be made once
/// cannot follow the 307, and one that yields another length than it declared fails: each
/// says so, with its own code.
#[test]
fn nginx_stores_streamed_and_file_bodies_whole_and_a_307_sends_them_again() {
    use nw_transfer::body::{Body, Streamed};
    let scratch = Scratch::new("send-streamed");
    let data = bytes::Bytes::from(pattern(3_000_000, 7));
    let tls = Tls::new(&scratch);
    let redirects = [
        ("/moved-h1".to_owned(), 307, "/put/after-h1".to_owned()),
        ("/moved-h2".to_owned(), 307, "/put/after-h2".to_owned()),
    ];
    let server = nginx(
        &scratch,
        &NginxOptions {
            tls: Some((tls.cert.clone(), tls.key.clone())),
            redirects: redirects.to_vec(),
            // The redirects' locations take bodies of any size too.
            extra: "client_max_body_size 0;".into(),
            ..NginxOptions::default()
        },
    );
    let session = session(&scratch, Configuration { trust: tls.trust, ..Configuration::default() });
    let rt = runtime();
    let source = scratch.0.join("source");
    std::fs::write(&source, &data).unwrap();
    // A stream in uneven pieces, made afresh each time it is asked for.
    let pieces = {
        let data = data.clone();
        move || {
            let data = data.clone();
            futures_util::stream::iter((0..data.len()).step_by(100_003).map(move |at| {
                Ok::<_, std::io::Error>(data.slice(at..(at + 100_003).min(data.len())))
            }))
        }
    };
    let length = Some(data.len() as u64);
    let put = |url: String, body: Body| Request { method: Method::PUT, body, ..Request::get(url) };
    let stored = |name: &str| std::fs::read(scratch.www().join("put").join(name)).unwrap();
    for (label, base) in [("h1", server.url("")), ("h2", server.https_url("").unwrap())] {
        let bodies = [
            ("unknown", Body::Stream(Streamed::new(None, pieces.clone()))),
            ("declared", Body::Stream(Streamed::new(length, pieces.clone()))),
            ("file", Body::File(source.clone())),
        ];
        for (kind, body) in bodies {
            let name = format!("{label}-{kind}");
            let done = rt
                .block_on(session.send(&put(format!("{base}/put/{name}"), body.clone()), 4096))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!([201, 204].contains(&done.status), "{name}: {done:?}");
            assert!(stored(&name) == data, "{name}: the stored file differs");
            // Through a 307: the same body, whole, again.
            let _ = std::fs::remove_file(scratch.www().join("put").join(format!("after-{label}")));
            let done = rt
                .block_on(session.send(&put(format!("{base}/moved-{label}"), body), 4096))
                .unwrap_or_else(|e| panic!("{name} through a 307: {e}"));
            assert_eq!(done.metrics.redirects.len(), 1, "{name}: {done:?}");
            assert!(stored(&format!("after-{label}")) == data, "{name}: differs after the 307");
        }
        // Made once: sent once, and a 307 asking for it again fails, saying so.
        let once = || Body::Stream(Streamed::once(length, pieces()));
        let done =
            rt.block_on(session.send(&put(format!("{base}/put/{label}-once"), once()), 4096));
        assert!(done.is_ok_and(|d| d.status == 201), "{label}");
        let refused =
            rt.block_on(session.send(&put(format!("{base}/moved-{label}"), once()), 4096));
        let Err(e) = refused else { panic!("{label}: a one-time stream was sent twice") };
        assert_eq!(e.code(), nw_transfer::Code::RequestBodyStreamExhausted, "{e}");
        assert!(
            e.to_string().contains("answered 307") && e.to_string().contains("sent once"),
            "{e}"
        );
        // A stream shorter or longer than it declared fails instead of hanging or cutting.
        for (declared, word) in [(data.len() as u64 + 1, "ended after"), (1000, "or more")] {
            let body = Body::Stream(Streamed::new(Some(declared), pieces.clone()));
            let wrong =
                rt.block_on(session.send(&put(format!("{base}/put/{label}-wrong"), body), 4096));
            let Err(e) = wrong else { panic!("{label}: declared {declared}: {wrong:?}") };
            assert_eq!(e.code(), nw_transfer::Code::RequestBodyFailed, "{e}");
            assert!(e.to_string().contains(word), "{label}: {e}");
        }
        // A stream that fails midway fails the request with its error.
        let failing = Streamed::new(None, || {
            futures_util::stream::iter([
                Ok(bytes::Bytes::from_static(b"part")),
                Err(std::io::Error::other("the source broke")),
            ])
        });
        let broke = rt.block_on(
            session.send(&put(format!("{base}/put/{label}-broke"), failing.into()), 4096),
        );
        let Err(e) = broke else { panic!("{label}: {broke:?}") };
        assert!(e.to_string().contains("the source broke"), "{label}: {e}");
    }
}
