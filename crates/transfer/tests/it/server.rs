//! The embedded test server's HTTP part: downloads over HTTP/1.1 and HTTP/2 from it (whole,
//! and resumed with If-Range), its responsiveness endpoints, and the responsiveness test
//! driven against it on loopback.

use std::time::{Duration, Instant};

use nw_quality::rpm;
use nw_serve::{self as server, Embedded, HttpServer};
use nw_transfer::store::State;
use nw_transfer::{Configuration, Http3, Protocol, TransferError};

use crate::support::{
    Scratch, Tls, interrupt_and_resume, job, loopback, pattern, plain_server, runtime, session,
};

#[test]
fn server_h1_and_h2_downloads_are_byte_exact_and_resume_with_if_range() {
    let scratch = Scratch::new("server-h1h2");
    let data = pattern(24 << 20, 41);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let tls = Tls::new(&scratch);
    let rt = runtime();
    let options = server::Options { rate: Some(32 << 20), ..server::Options::default() };
    let server = rt
        .block_on(HttpServer::start(loopback(), Some(&scratch.www()), Some(tls.der()), &options))
        .unwrap();
    let plain =
        rt.block_on(HttpServer::start(loopback(), Some(&scratch.www()), None, &options)).unwrap();
    let base = Configuration {
        trust: tls.trust.clone(),
        http3: Http3::Off,
        checkpoint_bytes: 2 << 20,
        ..Configuration::default()
    };
    let cases = [
        ("h2", server.url("/file.bin"), base.clone(), Protocol::H2),
        (
            "h1",
            server.url("/file.bin"),
            Configuration { http2: false, ..base.clone() },
            Protocol::Http11,
        ),
        (
            "plain",
            plain.url("/file.bin"),
            Configuration { allow_http: true, ..base },
            Protocol::Http11,
        ),
    ];
    for (name, url, config, protocol) in cases {
        let session = session(&scratch, config);
        let dest = scratch.0.join(format!("{name}.bin"));
        let (offset, started, done) = interrupt_and_resume(&rt, &session, &url, &dest, 6 << 20);
        assert!(offset >= 2 << 20, "{name}: checkpointed {offset} bytes");
        let done = done.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(started, Some((offset, protocol, None)), "{name}: a range, resumed");
        assert_eq!(done.metrics.received, data.len() as u64 - offset, "{name}");
        assert!(std::fs::read(&dest).unwrap() == data, "{name}: the resumed file is byte-exact");
    }
}

#[test]
fn server_a_run_stopped_between_the_rename_and_the_record_resumes_to_done() {
    let scratch = Scratch::new("server-unrecorded");
    let data = pattern(3 << 20, 45);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let rt = runtime();
    let server = plain_server(&rt, &scratch);
    let config = Configuration { allow_http: true, http3: Http3::Off, ..Configuration::default() };
    let session = session(&scratch, config);
    let url = server.url("/file.bin");
    let dest = scratch.0.join("file.bin");
    rt.block_on(session.download(&job(url.clone(), &dest, false), &mut |_| {})).unwrap();
    // What a kill between the rename and the record leaves: the whole file, a record that
    // is not done.
    let id = session.store().find(&dest).unwrap().unwrap().id;
    session.store().set_state(id, State::Running, None, true).unwrap();
    // Without --resume the file is still not touched.
    let e = rt.block_on(session.download(&job(url.clone(), &dest, false), &mut |_| {}));
    assert!(e.unwrap_err().to_string().contains("exists, and replacing it was not asked for"));
    // With it, the file is checked with the server and recorded, not fetched again.
    let done = rt.block_on(session.download(&job(url, &dest, true), &mut |_| {})).unwrap();
    assert_eq!((done.metrics.received, done.resumed_from), (0, data.len() as u64));
    assert!(std::fs::read(&dest).unwrap() == data, "the file is as it was");
    assert_eq!(session.store().find(&dest).unwrap().unwrap().state, State::Done);
    assert!(!scratch.0.join("file.bin.part").exists());
}

#[test]
fn server_config_names_its_endpoints_and_bad_configurations_are_explained() {
    let scratch = Scratch::new("server-config");
    std::fs::write(scratch.www().join("not-json"), "hello").unwrap();
    let rt = runtime();
    let embedded = rt
        .block_on(Embedded::start(loopback(), Some(&scratch.www()), &server::Options::default()))
        .unwrap();
    let config = Configuration { trust: embedded.trust(), ..Configuration::default() };
    let session = session(&scratch, config);
    for path in ["/config", "/.well-known/nq"] {
        let endpoints = rt.block_on(session.rpm_config(&embedded.url(path))).unwrap();
        assert_eq!(endpoints.small, embedded.url("/small"), "{path}");
        assert_eq!(endpoints.large, embedded.url("/large"));
        assert_eq!(endpoints.upload, embedded.url("/slurp"));
    }
    let e = rt.block_on(session.rpm_config(&embedded.url("/not-json"))).unwrap_err();
    assert!(e.to_string().contains("not a responsiveness configuration"), "{e}");
    let e = rt.block_on(session.rpm_config(&embedded.url("/missing"))).unwrap_err();
    assert!(matches!(e, TransferError::Status { status: 404, .. }), "{e}");
    // The CA is this server's alone: default trust refuses it.
    let stranger =
        nw_transfer::Session::new(Configuration::default(), &scratch.0.join("s.db")).unwrap();
    let e = rt.block_on(stranger.rpm_config(&embedded.url("/config"))).unwrap_err();
    assert!(e.to_string().contains("not trusted"), "{e}");
}

#[test]
fn server_responsiveness_on_loopback_loads_both_directions_and_ends_in_time() {
    let scratch = Scratch::new("server-rpm");
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let embedded =
        rt.block_on(Embedded::start(loopback(), None, &server::Options::default())).unwrap();
    let config = Configuration { trust: embedded.trust(), ..Configuration::default() };
    let session = session(&scratch, config);
    let endpoints = rt.block_on(session.rpm_config(&embedded.url("/config"))).unwrap();
    let max_time = Duration::from_secs(6);
    let params = rpm::Params { max_time, ..rpm::Params::default() };
    #[allow(clippy::disallowed_methods, reason = "the test times the run")]
    let started = Instant::now();
    let mut ticks = 0;
    let outcome = rt.block_on(session.responsiveness(&endpoints, params, |_| ticks += 1)).unwrap();
    let took = started.elapsed();
    eprintln!("loopback responsiveness in {took:.1?}: {outcome:?}");
    assert!(took < max_time + Duration::from_secs(3), "ends within max_time: {took:?}");
    assert!(ticks >= 3, "progress once per interval: {ticks}");
    assert!(outcome.dl_throughput > 1e8, "over 100 Mbit/s down on loopback: {outcome:?}");
    assert!(outcome.ul_throughput > 1e8, "over 100 Mbit/s up on loopback: {outcome:?}");
    assert!(outcome.dl_flows >= 1 && outcome.ul_flows >= 1, "{outcome:?}");
    assert!(outcome.base_rtt > 0.0 && outcome.base_rtt < 100.0, "{outcome:?}");
    assert!(outcome.responsiveness > 0.0, "self and foreign probes came back: {outcome:?}");
    assert!(outcome.probes >= 10, "{outcome:?}");
}

#[test]
fn server_uploads_a_file_over_every_http_version_and_data_tasks_are_bounded() {
    let scratch = Scratch::new("server-upload");
    let data = pattern(20 << 20, 43);
    let source = scratch.0.join("up.bin");
    std::fs::write(&source, &data).unwrap();
    let rt = runtime();
    let embedded =
        rt.block_on(Embedded::start(loopback(), None, &server::Options::default())).unwrap();
    for (http2, http3, protocol) in [
        (true, Http3::Off, Protocol::H2),
        (false, Http3::Off, Protocol::Http11),
        (true, Http3::Only, Protocol::H3),
    ] {
        let config =
            Configuration { trust: embedded.trust(), http2, http3, ..Configuration::default() };
        let session = nw_transfer::Session::ephemeral(config).unwrap();
        // A PUT takes the pool's connection; a POST one of its own (and gives it to the pool).
        let methods = [hyper::Method::PUT, hyper::Method::POST, hyper::Method::PUT];
        for (method, reused) in methods.into_iter().zip([false, false, true]) {
            let job = nw_transfer::tasks::Upload {
                url: embedded.url("/slurp"),
                source: source.clone(),
                method,
                content_type: "application/octet-stream".into(),
                headers: Vec::new(),
            };
            let done =
                rt.block_on(session.upload(&job)).unwrap_or_else(|e| panic!("{protocol:?}: {e}"));
            assert_eq!(done.metrics.protocol, protocol);
            assert_eq!(done.metrics.reused, reused, "{protocol:?} {:?}", job.method);
            assert_eq!(done.sent, data.len() as u64);
            let answer: serde_json::Value = serde_json::from_slice(&done.response).unwrap();
            assert_eq!(
                answer["received"],
                data.len() as u64,
                "{protocol:?}: the server got it all"
            );
        }
        // A data task: any status is an answer; a body over the limit is refused.
        let config_json = rt.block_on(session.data(&embedded.url("/config"), 4096)).unwrap();
        assert_eq!(config_json.status, 200);
        assert!(
            config_json.headers.iter().any(|(k, v)| k == "content-type" && v == "application/json")
        );
        assert!(serde_json::from_slice::<serde_json::Value>(&config_json.body).is_ok());
        let missing = rt.block_on(session.data(&embedded.url("/missing"), 4096)).unwrap();
        assert_eq!(missing.status, 404, "a 404 is an answer, not an error");
        let e = rt.block_on(session.data(&embedded.url("/config"), 10)).unwrap_err();
        assert!(e.to_string().contains("longer than 10 bytes"), "{e}");
    }
    // A file that is not there is named.
    let session = nw_transfer::Session::ephemeral(Configuration {
        trust: embedded.trust(),
        ..Configuration::default()
    })
    .unwrap();
    let job = nw_transfer::tasks::Upload {
        url: embedded.url("/slurp"),
        source: scratch.0.join("absent.bin"),
        method: hyper::Method::PUT,
        content_type: "application/octet-stream".into(),
        headers: Vec::new(),
    };
    let e = rt.block_on(session.upload(&job)).unwrap_err();
    assert!(e.to_string().contains("absent.bin: cannot open it to upload"), "{e}");
}

/// A PUT on a pooled connection the server has closed meanwhile goes again on a new one: a
/// server that answers one request per connection and closes on the next without a word
/// (keep-alive in its header, as a server restarting or at its request limit would) gets
/// every PUT of a session; a POST never rides a pooled connection, so it is never in doubt.
#[test]
fn server_a_put_on_a_connection_closed_while_pooled_goes_again_on_a_new_one() {
    use std::io::{Read as _, Write as _};
    let scratch = Scratch::new("server-put-again");
    let source = scratch.0.join("up.bin");
    std::fs::write(&source, pattern(100_000, 7)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::thread::spawn(move || {
                // One request, one answer; then the next request's first bytes, and a close.
                let _ = nw_lab::http::read_request(&mut stream);
                let _ = stream.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok");
                let _ = stream.read(&mut [0u8; 1]);
            });
        }
    });
    let rt = runtime();
    let session = nw_transfer::Session::ephemeral(Configuration::default()).unwrap();
    for round in 0..3 {
        let job = nw_transfer::tasks::Upload {
            url: format!("http://127.0.0.1:{port}/put/{round}"),
            source: source.clone(),
            method: hyper::Method::PUT,
            content_type: "application/octet-stream".into(),
            headers: Vec::new(),
        };
        let done = rt.block_on(session.upload(&job)).unwrap_or_else(|e| panic!("PUT {round}: {e}"));
        assert_eq!((done.status, &done.response[..]), (201, &b"ok"[..]), "PUT {round}");
        assert!(!done.metrics.reused, "PUT {round} was answered on a new connection");
    }
    // Each PUT after the first tried the pooled connection, then a new one.
    assert_eq!(connections.load(std::sync::atomic::Ordering::Relaxed), 3);
    // The same for a data task's PUT and DELETE (`Session::send`); a POST never meets a
    // pooled connection, so it is answered on its first try.
    for (round, method) in
        [hyper::Method::PUT, hyper::Method::DELETE, hyper::Method::POST].into_iter().enumerate()
    {
        let request = nw_transfer::tasks::Request {
            method: method.clone(),
            body: "body".into(),
            ..nw_transfer::tasks::Request::get(format!("http://127.0.0.1:{port}/send/{round}"))
        };
        let done =
            rt.block_on(session.send(&request, 64)).unwrap_or_else(|e| panic!("{method}: {e}"));
        assert_eq!((done.status, &done.body[..]), (201, &b"ok"[..]), "{method}");
        assert!(!done.metrics.reused, "{method} was answered on a new connection");
    }
    assert_eq!(connections.load(std::sync::atomic::Ordering::Relaxed), 6);
}

#[test]
fn server_idle_and_trickling_clients_cannot_lock_a_real_one_out() {
    let scratch = Scratch::new("server-lockout");
    std::fs::write(scratch.www().join("f.txt"), b"hello").unwrap();
    let rt = runtime();
    let server = rt
        .block_on(HttpServer::start(
            loopback(),
            Some(&scratch.www()),
            None,
            &server::Options::default(),
        ))
        .unwrap();
    let addr = server.local_addr();
    // 300 connections, more than the server keeps: half silent, half trickling a head that
    // never ends. (Before, 256 idle connections locked every later client out.)
    // (Connected on the runtime the server runs on, so it accepts them meanwhile.)
    let held = rt.block_on(async {
        use tokio::io::AsyncWriteExt as _;
        let mut held = Vec::new();
        for i in 0..300 {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            if i % 2 == 1 {
                c.write_all(b"GET /f.txt HTTP/1.1\r\nHost: x\r\n").await.unwrap();
            }
            held.push(c);
        }
        // Let the server take them all in.
        tokio::task::yield_now().await;
        held
    });
    let session = session(
        &scratch,
        Configuration { request_timeout: Duration::from_secs(30), ..Configuration::default() },
    );
    #[allow(clippy::disallowed_methods, reason = "the test measures how long the request took")]
    let started = Instant::now();
    let data = rt.block_on(session.data(&server.url("/f.txt"), 1024)).unwrap();
    assert_eq!((data.status, &data.body[..]), (200, &b"hello"[..]));
    // Well inside the idle limit (10 s): an idle connection was closed to make room.
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    drop(held);
}
