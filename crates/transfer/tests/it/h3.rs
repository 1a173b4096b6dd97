//! HTTP/3: interop with ngtcp2's server, downloads and resumes against our own h3 server,
//! discovery through Alt-Svc from a real nginx, and the fall back to TCP when UDP goes
//! unanswered.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use nw_lab::nginx::Options as NginxOptions;
use nw_lab::ngtcp2::Gtlsserver;
use nw_serve::{self as server, H3Server};
use nw_transfer::{Configuration, Http3, Protocol, TransferError};

use crate::support::{
    Scratch, Tls, interrupt_and_resume, job, loopback, nginx, pattern, runtime, session,
};

fn h3_config(tls: &Tls, http3: Http3) -> Configuration {
    Configuration { trust: tls.trust.clone(), http3, ..Configuration::default() }
}

#[test]
fn h3_interop_with_ngtcp2_gtlsserver_is_byte_exact() {
    let scratch = Scratch::new("h3-ngtcp2");
    let data = pattern(16 << 20, 31);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let tls = Tls::new(&scratch);
    let server = Gtlsserver::start(&scratch.www(), &tls.cert, &tls.key)
        .unwrap_or_else(|e| panic!("gtlsserver could not start: {e}"));
    let session = session(&scratch, h3_config(&tls, Http3::Only));
    let dest = scratch.0.join("file.bin");
    let done = runtime()
        .block_on(session.download(&job(server.url("/file.bin"), &dest, false), &mut |_| {}))
        .unwrap_or_else(|e| panic!("HTTP/3 from gtlsserver: {e}"));
    assert_eq!(done.metrics.protocol, Protocol::H3);
    assert!(done.metrics.tls.as_deref().is_some_and(|t| t.contains("QUIC")), "{:?}", done.metrics);
    assert_eq!(done.bytes, data.len() as u64);
    assert!(std::fs::read(&dest).unwrap() == data, "byte-exact from ngtcp2");
}

#[test]
fn h3_own_server_resumes_byte_exact_with_if_range() {
    let scratch = Scratch::new("h3-resume");
    let data = pattern(32 << 20, 32);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let tls = Tls::new(&scratch);
    let rt = runtime();
    let _enter = rt.enter();
    let options = server::Options { rate: Some(16 << 20), ..server::Options::default() };
    let server = H3Server::start(loopback(), Some(&scratch.www()), tls.der(), &options).unwrap();
    let config = Configuration { checkpoint_bytes: 2 << 20, ..h3_config(&tls, Http3::Only) };
    let session = session(&scratch, config);
    let dest = scratch.0.join("file.bin");
    let url = server.url("/file.bin");
    let (offset, started, done) = interrupt_and_resume(&rt, &session, &url, &dest, 6 << 20);
    assert!(offset >= 2 << 20, "checkpointed {offset} bytes");
    let done = done.unwrap();
    assert_eq!(started, Some((offset, Protocol::H3, None)), "a range over HTTP/3");
    assert_eq!(done.metrics.received, data.len() as u64 - offset);
    assert!(std::fs::read(&dest).unwrap() == data, "the resumed file is byte-exact");
}

#[test]
fn h3_own_server_ranges() {
    // Our server's reading of Range, against RFC 9110 §14.1.2's forms.
    assert_eq!(server::range(None, 100), Ok(None));
    assert_eq!(server::range(Some("bytes=10-"), 100), Ok(Some((10, 99))));
    assert_eq!(server::range(Some("bytes=10-19"), 100), Ok(Some((10, 19))));
    assert_eq!(server::range(Some("bytes=90-200"), 100), Ok(Some((90, 99))));
    assert_eq!(server::range(Some("bytes=-5"), 100), Ok(Some((95, 99))));
    assert_eq!(server::range(Some("bytes=100-"), 100), Err(()));
    assert_eq!(server::range(Some("bytes=0-1,5-6"), 100), Ok(None), "several: the whole file");
    assert_eq!(server::range(Some("items=0-1"), 100), Ok(None));
}

#[test]
fn h3_alt_svc_from_nginx_moves_the_next_download_to_http3() {
    let scratch = Scratch::new("h3-altsvc");
    let data = pattern(4 << 20, 33);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let tls = Tls::new(&scratch);
    let rt = runtime();
    let _enter = rt.enter();
    let h3 =
        H3Server::start(loopback(), Some(&scratch.www()), tls.der(), &server::Options::default())
            .unwrap();
    let nginx = nginx(
        &scratch,
        &NginxOptions {
            tls: Some((tls.cert.clone(), tls.key.clone())),
            alt_svc: Some(format!("h3=\":{}\"; ma=60", h3.local_addr().port())),
            ..NginxOptions::default()
        },
    );
    let session = session(&scratch, h3_config(&tls, Http3::Discover));
    let url = nginx.https_url("/file.bin").unwrap();
    let mut protocols = Vec::new();
    for name in ["first.bin", "second.bin"] {
        let dest = scratch.0.join(name);
        let done = rt.block_on(session.download(&job(url.clone(), &dest, false), &mut |_| {}));
        let done = done.unwrap();
        assert!(std::fs::read(&dest).unwrap() == data);
        protocols.push(done.metrics.protocol);
    }
    assert_eq!(protocols, [Protocol::H2, Protocol::H3], "Alt-Svc learned from the first answer");
}

#[test]
fn h3_unanswered_udp_falls_back_to_tcp_within_the_head_start() {
    let scratch = Scratch::new("h3-fallback");
    let data = pattern(1 << 20, 34);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let tls = Tls::new(&scratch);
    let nginx = nginx(
        &scratch,
        &NginxOptions { tls: Some((tls.cert.clone(), tls.key.clone())), ..NginxOptions::default() },
    );
    let url = nginx.https_url("/file.bin").unwrap();
    let port: u16 = url.rsplit(':').next().unwrap().split('/').next().unwrap().parse().unwrap();
    // A UDP socket on nginx's port number that reads nothing: a path that drops QUIC silently
    // (no ICMP error to act on).
    let _black_hole = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    let rt = runtime();

    let assumed = session(&scratch, h3_config(&tls, Http3::Assume));
    let dest = scratch.0.join("file.bin");
    #[allow(clippy::disallowed_methods, reason = "test: measures the fallback")]
    let start = Instant::now();
    let done = rt.block_on(assumed.download(&job(url.clone(), &dest, false), &mut |_| {})).unwrap();
    let took = start.elapsed();
    assert_eq!(done.metrics.protocol, Protocol::H2);
    let why = done.metrics.h3_fallback.clone().unwrap_or_default();
    assert!(why.contains("HTTP/3 was not ready"), "{why}");
    assert!(took < Duration::from_secs(5), "fell back in {took:?}, not a hang");
    assert!(std::fs::read(&dest).unwrap() == data);

    // HTTP/3 alone has nothing to fall back to: a clear failure within the request timeout.
    let config =
        Configuration { request_timeout: Duration::from_secs(2), ..h3_config(&tls, Http3::Only) };
    let session = session(&scratch, config);
    let dest = scratch.0.join("only.bin");
    #[allow(clippy::disallowed_methods, reason = "test: measures the failure")]
    let start = Instant::now();
    let result = rt.block_on(session.download(&job(url, &dest, false), &mut |_| {}));
    assert!(matches!(result, Err(TransferError::Connect(_))), "{result:?}");
    assert!(start.elapsed() < Duration::from_secs(10), "failed in {:?}", start.elapsed());
    assert!(!dest.exists());
}
