//! Loads through real proxies from Debian on loopback: tinyproxy (HTTPS over a `CONNECT`
//! tunnel with Basic authentication, plain HTTP in the absolute form) and microsocks (SOCKS5
//! with username and password, the name resolved by the proxy); the environment's proxies as
//! curl reads them, loopback going direct unless `<-loopback>` says otherwise; a PAC file
//! choosing between them per load; tinyproxy behind stunnel as an HTTPS proxy; Dante for
//! SOCKS4.

use nw_http::proxy::{Proxies, Proxy};
use nw_lab::nginx::Options as NginxOptions;
use nw_lab::proxies::{Dante, Microsocks, Stunnel, Tinyproxy};
use nw_transfer::{Configuration, Http3, Protocol, TransferError};

use crate::support::{Scratch, Tls, job, nginx, pattern, runtime, session};

fn proxy(text: &str) -> Proxies {
    Proxies::every(Proxy::parse(text).unwrap(), None)
}

fn download(
    scratch: &Scratch,
    config: Configuration,
    url: String,
    name: &str,
) -> Result<nw_transfer::Finished, TransferError> {
    let session = session(scratch, config);
    let dest = scratch.0.join(name);
    runtime().block_on(session.download(&job(url, &dest, false), &mut |_| {}))
}

/// An origin serving `file.bin` over HTTP and HTTPS (a test CA's certificate for 127.0.0.1),
/// and tinyproxy asking for `alice:s3cret`.
struct Origin {
    scratch: Scratch,
    data: Vec<u8>,
    tls: Tls,
    server: nw_lab::nginx::Nginx,
    tiny: Tinyproxy,
}

impl Origin {
    fn new(name: &str, len: usize, seed: u64) -> Self {
        let scratch = Scratch::new(name);
        let data = pattern(len, seed);
        std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
        let tls = Tls::new(&scratch);
        let options = NginxOptions {
            tls: Some((tls.cert.clone(), tls.key.clone())),
            ..NginxOptions::default()
        };
        let server = nginx(&scratch, &options);
        let tiny = Tinyproxy::start(Some(("alice", "s3cret"))).unwrap_or_else(|e| panic!("{e}"));
        Self { scratch, data, tls, server, tiny }
    }
}

#[test]
fn proxies_https_through_a_connect_tunnel_with_basic_auth_and_plain_http_in_absolute_form() {
    let Origin { scratch, data, tls, server, tiny } = Origin::new("proxies-http", 3 << 20, 61);
    let via = format!("http://alice:s3cret@127.0.0.1:{}", tiny.port());
    let https = server.https_url("/file.bin").unwrap();

    // HTTPS: a tunnel, TLS end to end (the anchors are the origin's; the proxy sees ciphertext).
    let config = Configuration {
        trust: tls.trust.clone(),
        proxies: proxy(&via),
        ..Configuration::default()
    };
    let done = download(&scratch, config, https.clone(), "tunnel.bin").unwrap();
    assert_eq!(std::fs::read(scratch.0.join("tunnel.bin")).unwrap(), data);
    assert_eq!(done.metrics.protocol, Protocol::H2, "ALPN is negotiated with the origin");
    assert_eq!(
        done.metrics.proxy.as_deref(),
        Some(format!("http://127.0.0.1:{}", tiny.port()).as_str())
    );
    let authority = https.trim_start_matches("https://").trim_end_matches("/file.bin");
    assert!(tiny.log().contains(&format!("CONNECT {authority} HTTP/1.1")), "{}", tiny.log());

    // Plain HTTP: the request goes to the proxy in the absolute form, with the credentials.
    let config = Configuration { proxies: proxy(&via), ..Configuration::default() };
    let plain = server.url("/file.bin");
    download(&scratch, config, plain.clone(), "forwarded.bin").unwrap();
    assert_eq!(std::fs::read(scratch.0.join("forwarded.bin")).unwrap(), data);
    assert!(tiny.log().contains(&format!("GET {plain} HTTP/1.1")), "{}", tiny.log());

    // The wrong password: said plainly, nothing written.
    let wrong = format!("http://alice:nope@127.0.0.1:{}", tiny.port());
    let config = Configuration {
        trust: tls.trust.clone(),
        proxies: proxy(&wrong),
        ..Configuration::default()
    };
    let e = download(&scratch, config, https, "refused.bin").unwrap_err();
    assert_eq!(e.code(), nw_transfer::Code::ProxyFailed);
    assert!(!e.transient(), "wrong credentials stay wrong: not retried");
    let e = e.to_string();
    assert!(e.contains("the proxy refused the credentials given (40"), "{e}");
    assert!(!scratch.0.join("refused.bin.part").exists(), "an empty .part is not left behind");
}

#[test]
fn proxies_an_https_proxy_is_checked_by_its_certificate_and_carries_tls_inside_tls() {
    // One test CA for the origin and the proxy (both 127.0.0.1).
    let Origin { scratch, data, tls, server, tiny } = Origin::new("proxies-https", 2 << 20, 65);
    let stunnel =
        Stunnel::start(&tls.cert, &tls.key, tiny.port()).unwrap_or_else(|e| panic!("{e}"));
    let via = format!("https://alice:s3cret@127.0.0.1:{}", stunnel.port());
    let shown = format!("https://127.0.0.1:{}", stunnel.port());
    let https = server.https_url("/file.bin").unwrap();

    // HTTPS: TLS with the proxy, a CONNECT inside it, TLS with the origin inside the tunnel.
    let config = Configuration {
        trust: tls.trust.clone(),
        proxies: proxy(&via),
        ..Configuration::default()
    };
    let done = download(&scratch, config.clone(), https.clone(), "tunnel.bin")
        .unwrap_or_else(|e| panic!("{e}\nstunnel: {}", stunnel.log()));
    assert_eq!(std::fs::read(scratch.0.join("tunnel.bin")).unwrap(), data);
    assert_eq!(done.metrics.protocol, Protocol::H2, "ALPN is the origin's, not the proxy's");
    assert_eq!(done.metrics.proxy.as_deref(), Some(shown.as_str()));
    let authority = https.trim_start_matches("https://").trim_end_matches("/file.bin");
    assert!(tiny.log().contains(&format!("CONNECT {authority} HTTP/1.1")), "{}", tiny.log());

    // Plain HTTP: the absolute form, to the proxy, inside TLS with it.
    let plain = server.url("/file.bin");
    download(&scratch, config, plain.clone(), "forwarded.bin").unwrap();
    assert_eq!(std::fs::read(scratch.0.join("forwarded.bin")).unwrap(), data);
    assert!(tiny.log().contains(&format!("GET {plain} HTTP/1.1")), "{}", tiny.log());

    // A proxy certificate nothing vouches for: refused, said to be the proxy's, not retried.
    let config = Configuration { proxies: proxy(&via), ..Configuration::default() };
    let e = download(&scratch, config, plain.clone(), "untrusted.bin").unwrap_err();
    assert_eq!(e.code(), nw_transfer::Code::ServerCertificateUntrusted, "{e}");
    assert!(!e.transient(), "{e}");
    let text = e.to_string();
    assert!(text.contains(&shown) && text.contains("with the proxy itself"), "{text}");
    assert!(text.contains("not trusted") && !text.contains("s3cret"), "{text}");

    // https:// for a proxy that speaks plain HTTP: the handshake's time limit, or tinyproxy's
    // plain-text answer to the ClientHello, and a hint either way.
    let wrong = format!("https://127.0.0.1:{}", tiny.port());
    let config = Configuration {
        trust: tls.trust.clone(),
        proxies: proxy(&wrong),
        request_timeout: std::time::Duration::from_secs(2),
        ..Configuration::default()
    };
    let e = download(&scratch, config, plain.clone(), "plain.bin").unwrap_err().to_string();
    assert!(e.contains("is it an https:// proxy?"), "{e}");

    // In a PAC file, that proxy gives way to the next entry, as one that cannot be reached
    // does; a proxy whose certificate is not trusted does not.
    let script = |first: &str| {
        let pac = format!(
            "function FindProxyForURL(u, h) {{ return 'HTTPS {first}; PROXY 127.0.0.1:{}'; }}",
            tiny.port()
        );
        Proxies::pac(nw_http::pac::Pac::new(&pac, "test.pac").unwrap())
    };
    let config = |first: &str, trust: nw_trust::Options| Configuration {
        trust,
        proxies: script(first),
        request_timeout: std::time::Duration::from_secs(1),
        ..Configuration::default()
    };
    let silent = format!("127.0.0.1:{}", tiny.port());
    let over = download(&scratch, config(&silent, tls.trust.clone()), plain.clone(), "over.bin");
    // The PROXY entry is tinyproxy itself, which wants credentials a PAC file cannot give:
    // its 407 shows the load got there.
    let e = over.expect_err("tinyproxy asks for credentials");
    assert!(e.to_string().contains("answered 407"), "it fell over: {e}");
    let untrusted = format!("127.0.0.1:{}", stunnel.port());
    let e = download(&scratch, config(&untrusted, nw_trust::Options::default()), plain, "no.bin")
        .unwrap_err();
    assert!(e.to_string().contains("not trusted"), "it did not fall over: {e}");
}

#[test]
fn proxies_socks5_resolves_at_the_proxy_and_checks_credentials() {
    let scratch = Scratch::new("proxies-socks");
    let data = pattern(1 << 20, 62);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let server = nginx(&scratch, &NginxOptions::default());
    let socks = Microsocks::start(Some(("bob", "pw"))).unwrap_or_else(|e| panic!("{e}"));
    // A name the proxy resolves (socks5h): `localhost`, not an address.
    let url = server.url("/file.bin").replace("127.0.0.1", "localhost");
    let via = format!("socks5h://bob:pw@127.0.0.1:{}", socks.port());
    let config =
        Configuration { proxies: proxy(&via), http3: Http3::Off, ..Configuration::default() };
    let done = download(&scratch, config, url.clone(), "socks.bin").unwrap();
    assert_eq!(std::fs::read(scratch.0.join("socks.bin")).unwrap(), data);
    assert_eq!(done.metrics.remote.map(|a| a.port()), Some(socks.port()));

    let no_credentials = format!("socks5h://127.0.0.1:{}", socks.port());
    let config = Configuration { proxies: proxy(&no_credentials), ..Configuration::default() };
    let e = download(&scratch, config, url.clone(), "anon.bin").unwrap_err().to_string();
    assert!(e.contains("the SOCKS5 proxy requires authentication"), "{e}");
    let wrong = format!("socks5h://bob:nope@127.0.0.1:{}", socks.port());
    let config = Configuration { proxies: proxy(&wrong), ..Configuration::default() };
    let e = download(&scratch, config, url, "wrong.bin").unwrap_err().to_string();
    assert!(e.contains("refused the username and password"), "{e}");
}

#[test]
fn proxies_socks4_sends_an_ipv4_address_and_says_why_names_and_ipv6_cannot_go() {
    let scratch = Scratch::new("proxies-socks4");
    let data = pattern(1 << 20, 66);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let server = nginx(&scratch, &NginxOptions::default());
    let dante = Dante::start().unwrap_or_else(|e| panic!("{e}"));
    let config = |via: String| Configuration {
        proxies: proxy(&via),
        request_timeout: std::time::Duration::from_secs(10),
        ..Configuration::default()
    };
    // By the name localhost, resolved here to its IPv4 address (a user id, which Dante lets be).
    let url = server.url("/file.bin").replace("127.0.0.1", "localhost");
    let via = format!("socks4://tester@127.0.0.1:{}", dante.port());
    let done = download(&scratch, config(via), url.clone(), "socks4.bin").unwrap();
    assert_eq!(std::fs::read(scratch.0.join("socks4.bin")).unwrap(), data);
    assert_eq!(done.metrics.proxy, Some(format!("socks4://127.0.0.1:{}", dante.port())));
    assert!(dante.log().contains("pass(1): tcp/connect"), "{}", dante.log());

    // Dante has no SOCKS 4A: a name is refused, and the error says what to try.
    let via = format!("socks4a://127.0.0.1:{}", dante.port());
    let e = download(&scratch, config(via), url, "named.bin").unwrap_err().to_string();
    assert!(e.contains("(reply 91)") && e.contains("try socks4://"), "{e}");
    // SOCKS4 has no IPv6: said before anything is sent.
    let v6 = server.url("/file.bin").replace("127.0.0.1", "[::1]");
    let via = format!("socks4://127.0.0.1:{}", dante.port());
    let e = download(&scratch, config(via), v6, "v6.bin").unwrap_err();
    assert!(!e.transient(), "{e}");
    assert!(e.to_string().contains("only IPv4 destinations, not ::1"), "{e}");
}

#[test]
fn proxies_from_the_environment_spare_loopback_unless_told() {
    let scratch = Scratch::new("proxies-env");
    let data = pattern(64 << 10, 63);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let server = nginx(&scratch, &NginxOptions::default());
    let tiny = Tinyproxy::start(None).unwrap_or_else(|e| panic!("{e}"));
    let env = |no_proxy: &'static str| {
        let all = format!("http://127.0.0.1:{}", tiny.port());
        Proxies::from_vars(move |name| match name {
            "all_proxy" => Some(all.clone()),
            "no_proxy" => Some(no_proxy.to_owned()),
            _ => None,
        })
    };
    let url = server.url("/file.bin");
    let config = Configuration { proxies: env(""), ..Configuration::default() };
    let done = download(&scratch, config, url.clone(), "direct.bin").unwrap();
    assert_eq!(done.metrics.proxy, None, "loopback goes direct");
    assert!(!tiny.log().contains("GET http://"), "{}", tiny.log());

    let config = Configuration { proxies: env("<-loopback>"), ..Configuration::default() };
    let done = download(&scratch, config, url.clone(), "proxied.bin").unwrap();
    assert!(done.metrics.proxy.is_some());
    assert_eq!(std::fs::read(scratch.0.join("proxied.bin")).unwrap(), data);
    assert!(tiny.log().contains(&format!("GET {url} HTTP/1.1")), "{}", tiny.log());
}

#[test]
fn proxies_a_pac_file_chooses_per_load_falls_over_and_a_failing_one_fails_the_load() {
    let scratch = Scratch::new("proxies-pac");
    let data = pattern(256 << 10, 64);
    for name in ["a.bin", "b.bin", "c.bin"] {
        std::fs::write(scratch.www().join(name), &data).unwrap();
    }
    let server = nginx(&scratch, &NginxOptions::default());
    let tiny = Tinyproxy::start(None).unwrap_or_else(|e| panic!("{e}"));
    let socks = Microsocks::start(None).unwrap_or_else(|e| panic!("{e}"));
    let script = format!(
        r#"function FindProxyForURL(url, host) {{
            if (shExpMatch(url, "*/a.bin")) return "QUIC nowhere.test:443; PROXY 127.0.0.1:{}";
            if (host === "localhost") return "SOCKS5 127.0.0.1:{}; DIRECT";
            if (isInNet(host, "127.0.0.0", "255.0.0.0")) return "DIRECT";
            return "PROXY 192.0.2.1:9";
        }}"#,
        tiny.port(),
        socks.port()
    );
    let pac_file = scratch.0.join("proxy.pac");
    std::fs::write(&pac_file, script).unwrap();
    let pac = || Proxies::pac(nw_http::pac::Pac::read(&pac_file).unwrap());
    let config = || Configuration { proxies: pac(), http3: Http3::Off, ..Configuration::default() };

    // a.bin through tinyproxy (the QUIC entry passed over), in the absolute form.
    let a = server.url("/a.bin");
    let done = download(&scratch, config(), a.clone(), "a.bin").unwrap();
    assert_eq!(done.metrics.proxy, Some(format!("http://127.0.0.1:{}", tiny.port())));
    assert!(tiny.log().contains(&format!("GET {a} HTTP/1.1")), "{}", tiny.log());
    // b.bin by the name localhost: through microsocks, which resolves it.
    let b = server.url("/b.bin").replace("127.0.0.1", "localhost");
    let done = download(&scratch, config(), b, "b.bin").unwrap();
    assert_eq!(done.metrics.remote.map(|a| a.port()), Some(socks.port()));
    // c.bin by address: direct.
    let done = download(&scratch, config(), server.url("/c.bin"), "c.bin").unwrap();
    assert_eq!(done.metrics.proxy, None);
    for name in ["a.bin", "b.bin", "c.bin"] {
        assert_eq!(std::fs::read(scratch.0.join(name)).unwrap(), data, "{name}");
    }
    // In one session, the same origin by two routes: the idle keep-alive connection to nginx
    // that c.bin leaves serves c.bin again, and is not taken for a.bin, which the script
    // sends through the proxy (tinyproxy closes its connections, so the other way round
    // cannot be seen here).
    let (one, rt) = (session(&scratch, config()), runtime());
    let via = |url: &str| {
        let got = rt.block_on(one.data(url, 1 << 20)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.body, data);
        (got.metrics.proxy, got.metrics.reused)
    };
    let tinyproxy = Some(format!("http://127.0.0.1:{}", tiny.port()));
    assert_eq!(via(&server.url("/c.bin")), (None, false));
    assert_eq!(via(&server.url("/c.bin")), (None, true));
    assert_eq!(via(&a), (tinyproxy, false));

    // A proxy that cannot be reached gives way to the next entry: another proxy, or DIRECT.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().port();
    drop(closed);
    let script = format!(
        r#"function FindProxyForURL(url, host) {{
            if (shExpMatch(url, "*/a.bin")) return "PROXY 127.0.0.1:{dead}; PROXY 127.0.0.1:{}";
            return "PROXY 127.0.0.1:{dead}; DIRECT";
        }}"#,
        tiny.port()
    );
    std::fs::write(&pac_file, script).unwrap();
    let done = download(&scratch, config(), a, "a2.bin").unwrap();
    assert_eq!(done.metrics.proxy, Some(format!("http://127.0.0.1:{}", tiny.port())));
    let done = download(&scratch, config(), server.url("/c.bin"), "c2.bin").unwrap();
    assert_eq!(done.metrics.proxy, None);
    for name in ["a2.bin", "c2.bin"] {
        assert_eq!(std::fs::read(scratch.0.join(name)).unwrap(), data, "{name}");
    }

    // A script that never answers fails the load within its limit, and leaves nothing.
    std::fs::write(&pac_file, "function FindProxyForURL(u, h) { for (;;) {} }").unwrap();
    #[allow(clippy::disallowed_methods, reason = "the test measures how long the failure took")]
    let started = std::time::Instant::now();
    let e = download(&scratch, config(), server.url("/c.bin"), "never.bin").unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.code(), nw_transfer::Code::ProxyFailed);
    assert!(took < nw_http::pac::TIME_LIMIT * 3, "{took:?}");
    assert!(e.to_string().contains("did not answer within 2s"), "{e}");
    assert!(!scratch.0.join("never.bin.part").exists());
    assert!(!scratch.0.join("never.bin").exists());
}

#[test]
fn proxies_a_pac_file_at_a_url_is_fetched_directly_once_and_a_missing_one_is_named() {
    let scratch = Scratch::new("proxies-pac-url");
    let data = pattern(128 << 10, 65);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let tiny = Tinyproxy::start(None).unwrap_or_else(|e| panic!("{e}"));
    let script = format!(
        "function FindProxyForURL(url, host) {{ return 'PROXY 127.0.0.1:{}'; }}",
        tiny.port()
    );
    std::fs::write(scratch.www().join("proxy.pac"), script).unwrap();
    let fetches = scratch.0.join("pac.log");
    let extra = format!("location = /proxy.pac {{ access_log {}; }}", fetches.display());
    let server = nginx(&scratch, &NginxOptions { extra, ..NginxOptions::default() });
    let config = |pac: &str| Configuration {
        proxies: Proxies::pac_url(&server.url(pac)),
        http3: Http3::Off,
        ..Configuration::default()
    };

    // The file itself is fetched directly (the script would send it through the proxy); the
    // downloads go through the proxy, and the file is fetched once per session.
    let session = session(&scratch, config("/proxy.pac"));
    let url = server.url("/file.bin");
    for name in ["a.bin", "b.bin"] {
        let dest = scratch.0.join(name);
        let done =
            runtime().block_on(session.download(&job(url.clone(), &dest, false), &mut |_| {}));
        let done = done.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.metrics.proxy, Some(format!("http://127.0.0.1:{}", tiny.port())));
        assert_eq!(std::fs::read(&dest).unwrap(), data);
    }
    let log = tiny.log();
    assert!(!log.contains("proxy.pac"), "{log}");
    assert_eq!(log.matches(&format!("GET {url} HTTP/1.1")).count(), 2, "{log}");
    let fetched = std::fs::read_to_string(&fetches).unwrap();
    assert_eq!(fetched.matches("GET /proxy.pac ").count(), 1, "{fetched}");

    // A PAC URL that answers 404 fails the load, saying so.
    let e = download(&scratch, config("/missing.pac"), url, "c.bin").unwrap_err();
    assert_eq!(e.code(), nw_transfer::Code::ProxyFailed);
    let e = e.to_string();
    assert!(e.contains("cannot fetch the PAC file: the server answered 404"), "{e}");
    assert!(!scratch.0.join("c.bin.part").exists());
}

/// A proxy that cannot be reached and does not say so: a loopback listener whose backlog is
/// full, so the kernel drops further handshakes (as a firewall that drops them would).
fn black_hole() -> (socket2::Socket, Vec<std::net::TcpStream>, u16) {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let fill = (0..2)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(300)).ok()
        })
        .collect();
    (socket, fill, addr.port())
}

#[test]
fn proxies_a_pac_proxy_that_timed_out_is_tried_last_for_a_while() {
    let scratch = Scratch::new("proxies-pac-dead");
    let data = pattern(64 << 10, 66);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let server = nginx(&scratch, &NginxOptions::default());
    let tiny = Tinyproxy::start(None).unwrap_or_else(|e| panic!("{e}"));
    let (_hole, _fill, dead) = black_hole();
    let script = format!(
        "function FindProxyForURL(u, h) {{ return 'PROXY 127.0.0.1:{dead}; PROXY 127.0.0.1:{}'; }}",
        tiny.port()
    );
    let pac = nw_http::pac::Pac::new(&script, "dead-first.pac").unwrap();
    let timeout = std::time::Duration::from_secs(1);
    let config = Configuration {
        proxies: Proxies::pac(pac),
        request_timeout: timeout,
        http3: Http3::Off,
        ..Configuration::default()
    };
    let (session, rt) = (session(&scratch, config), runtime());
    let url = server.url("/file.bin");
    let load = || {
        #[allow(clippy::disallowed_methods, reason = "the test times the loads")]
        let started = std::time::Instant::now();
        let got = rt.block_on(session.data(&url, 1 << 20)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.body, data);
        assert_eq!(got.metrics.proxy, Some(format!("http://127.0.0.1:{}", tiny.port())));
        started.elapsed()
    };
    // The first load waits out the dead proxy's time to connect, then goes through the next.
    let first = load();
    assert!(first >= timeout.mul_f32(0.9), "{first:?}");
    // The next ones go to the live proxy first, without waiting for the dead one again.
    for _ in 0..3 {
        let next = load();
        assert!(next < timeout / 2, "the dead proxy was tried again: {next:?} after {first:?}");
    }
}
