use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nw_connection::Io;
use nw_connection::tls::{self, ClientOptions};
use nw_connection::{Handler, Listener, ListenerConfig};
use nw_trust::ca::TestCa;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Echoes one line back, then closes.
fn echo() -> Handler {
    Arc::new(|stream: Box<dyn Io>, _peer: SocketAddr| {
        Box::pin(async move {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).await.is_ok() {
                let mut stream = reader.into_inner();
                let _ = stream.write_all(line.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
        })
    })
}

/// A11: "simply connections that open and then immediately close" — the real client is served
/// while hundreds of those, plain-text clients and a port scan hit the same TLS port; nothing
/// leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_is_served_through_a_flood_and_nothing_leaks() {
    let ca = TestCa::new("nwkit test CA").unwrap();
    let issued = ca.server(&["localhost"]).unwrap();
    let server = tls::server_config(issued.chain.clone(), issued.key().unwrap(), &[]).unwrap();
    let baseline = open_fds();
    let config = ListenerConfig {
        tls: Some(server),
        // Every flood client leaves at once, so no handshake waits for this; it is long so
        // that a stalled VM cannot cut the real client's handshake short.
        handshake_timeout: Duration::from_secs(10),
        ..ListenerConfig::default()
    };
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), config, echo()).await.unwrap();
    let at = listener.local_addr();

    let flood = tokio::task::spawn_blocking(move || {
        for i in 0..350 {
            match std::net::TcpStream::connect(at) {
                // Every seventh speaks plain text to the TLS port; the rest just leave.
                Ok(mut s) if i % 7 == 0 => {
                    drop(std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\n\r\n"))
                }
                Ok(s) => drop(s),
                Err(e) => panic!("connect {i}: {e}"),
            }
        }
        // A connect scan's probe: a full handshake, then gone. Only our own port is probed:
        // a neighbouring port may be another test's listener. The generous timeout keeps a
        // stalled VM from abandoning the probe half-way, which would make the count below
        // one short.
        match std::net::TcpStream::connect_timeout(&at, Duration::from_secs(10)) {
            Ok(s) => drop(s),
            Err(e) => panic!("scan probe: {e}"),
        }
    });

    let client = ClientOptions { extra_anchors: vec![ca.root_der()], ..ClientOptions::default() }
        .config()
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(at).await.expect("the real client's connect");
    let mut s = tokio_rustls::TlsConnector::from(client)
        .connect(tls::server_name("localhost").unwrap(), tcp)
        .await
        .unwrap_or_else(|e| panic!("the real client's handshake: {e}; {:?}", listener.stats()));
    s.write_all(b"ping\n").await.expect("the real client's request");
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.expect("the real client's reply");
    assert_eq!(reply, "ping\n");
    drop(s);
    flood.await.expect("the flood (its panic is above)");

    // Let the handshakes of the last flood clients fail, then shut down.
    let start = Instant::now();
    while listener.stats().handshake_failed < 351 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counts = listener.stats();
    eprintln!("flood: {counts:?}");
    assert!(counts.accepted >= 352 && counts.handshake_failed >= 351, "{counts:?}");
    assert_eq!(counts.served, 1, "{counts:?}");
    listener.shutdown(Duration::from_millis(500)).await;
    let start = Instant::now();
    while open_fds() > baseline && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open_fds(), baseline, "descriptors leaked");
}

/// Whether the listener has accepted `n` connections within a generous 10 s.
async fn accepted_within(listener: &Listener, n: u64) -> bool {
    let start = Instant::now();
    while listener.stats().accepted < n && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    listener.stats().accepted >= n
}

/// At the connection limit, new clients wait in the backlog and are served as slots free up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_leaves_excess_clients_in_the_backlog() {
    let release = Arc::new(Notify::new());
    let r = release.clone();
    let handler: Handler = Arc::new(move |mut stream: Box<dyn Io>, _| {
        let r = r.clone();
        Box::pin(async move {
            r.notified().await;
            let _ = stream.write_all(b"served\n").await;
        })
    });
    let config = ListenerConfig { max_connections: 2, ..ListenerConfig::default() };
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), config, handler).await.unwrap();
    let at = listener.local_addr();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(tokio::net::TcpStream::connect(at).await.unwrap());
    }
    assert!(accepted_within(&listener, 2).await, "{:?}", listener.stats());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(listener.stats().accepted, 2, "the third waits in the backlog");
    release.notify_one();
    assert!(accepted_within(&listener, 3).await, "a freed slot admits it: {:?}", listener.stats());
    release.notify_waiters();
    release.notify_one();
    listener.shutdown(Duration::from_secs(1)).await;
}

/// Shutdown lets running handlers finish within the grace period, then cancels the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_handlers_then_cancels() {
    let handler: Handler = Arc::new(|mut stream: Box<dyn Io>, _| {
        Box::pin(async move {
            let mut first = [0u8; 1];
            let _ = stream.read_exact(&mut first).await;
            let (delay, text) =
                if first[0] == b's' { (200, "done\n") } else { (60_000, "never\n") };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let _ = stream.write_all(text.as_bytes()).await;
        })
    });
    let listener =
        Listener::bind("127.0.0.1:0".parse().unwrap(), ListenerConfig::default(), handler)
            .await
            .unwrap();
    let at = listener.local_addr();
    let mut quick = tokio::net::TcpStream::connect(at).await.unwrap();
    let mut stuck = tokio::net::TcpStream::connect(at).await.unwrap();
    quick.write_all(b"s").await.unwrap();
    stuck.write_all(b"x").await.unwrap();
    // Both accepted before the shutdown (which stops accepting); a busy VM may take a while.
    assert!(accepted_within(&listener, 2).await, "{:?}", listener.stats());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = Instant::now();
    listener.shutdown(Duration::from_millis(400)).await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(350) && took < Duration::from_secs(2), "{took:?}");
    let mut got = String::new();
    quick.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "done\n", "a handler inside the grace period finishes");
    let mut got = String::new();
    let _ = stuck.read_to_string(&mut got).await;
    assert_eq!(got, "", "a handler past it is cancelled and its connection closed");
    assert!(tokio::net::TcpStream::connect(at).await.is_err(), "no longer accepting");
}

/// QUIC to `localhost`, trusting `root`, offering `alpn`.
fn quic_params(
    root: rustls::pki_types::CertificateDer<'static>,
    alpn: &[u8],
) -> nw_connection::Parameters {
    let client = ClientOptions {
        extra_anchors: vec![root],
        alpn: vec![alpn.to_vec()],
        ..ClientOptions::default()
    }
    .config()
    .unwrap();
    nw_connection::Parameters {
        transport: nw_connection::Transport::Quic,
        tls: Some(client),
        server_name: Some("localhost".into()),
        ..Default::default()
    }
}

/// QUIC through the race to a QUIC listener: echo over the first bidirectional stream, every
/// byte back before the close (a shutdown waits for the peer's acknowledgement).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_echo_through_the_race_to_a_quic_listener() {
    use nw_connection::happy_eyeballs::Protocol;
    use nw_connection::{SystemConfig, SystemResolver, connect};
    let ca = TestCa::new("nwkit test CA").unwrap();
    let issued = ca.server(&["localhost", "127.0.0.1"]).unwrap();
    let tls =
        tls::server_config(issued.chain.clone(), issued.key().unwrap(), &[b"nwkit-echo".to_vec()])
            .unwrap();
    let echo: Handler = Arc::new(|stream: Box<dyn Io>, _| {
        Box::pin(async move {
            let (mut rd, mut wr) = tokio::io::split(stream);
            let _ = tokio::io::copy(&mut rd, &mut wr).await;
            let _ = wr.shutdown().await;
        })
    });
    let config = ListenerConfig { tls: Some(tls), ..ListenerConfig::default() };
    let server = Listener::bind_quic("127.0.0.1:0".parse().unwrap(), config, echo).await.unwrap();
    let params = quic_params(ca.root_der(), b"nwkit-echo");
    let resolver = Arc::new(SystemResolver::new(SystemConfig::parse("", "")));
    let port = server.local_addr().port();
    let mut c = connect("127.0.0.1", port, &params, resolver).await.unwrap();
    assert_eq!(c.report.protocol, Some(Protocol::Quic), "{:?}", c.report);
    assert_eq!(c.report.tls.as_ref().and_then(|t| t.alpn.as_deref()), Some("nwkit-echo"));
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    c.stream.write_all(&payload).await.unwrap();
    c.stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    c.stream.read_to_end(&mut back).await.unwrap();
    assert!(back == payload, "echoed {} of {} bytes", back.len(), payload.len());
    server.shutdown(Duration::from_millis(200)).await;
}

/// At its limit a QUIC listener refuses at once (the client fails over instead of timing out);
/// shutdown cancels what outlives the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_listener_refuses_at_the_limit_and_shuts_down() {
    use nw_connection::SystemConfig;
    use nw_connection::{ConnectError, SystemResolver, connect};
    let ca = TestCa::new("nwkit test CA").unwrap();
    let issued = ca.server(&["localhost"]).unwrap();
    let server =
        tls::server_config(issued.chain.clone(), issued.key().unwrap(), &[b"t".to_vec()]).unwrap();
    let hold: Handler = Arc::new(|stream: Box<dyn Io>, _| {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(stream);
        })
    });
    let config =
        ListenerConfig { tls: Some(server), max_connections: 1, ..ListenerConfig::default() };
    let listener = Listener::bind_quic("127.0.0.1:0".parse().unwrap(), config, hold).await.unwrap();
    let port = listener.local_addr().port();
    let params = quic_params(ca.root_der(), b"t");
    let resolver = Arc::new(SystemResolver::new(SystemConfig::parse("", "")));
    let mut first = connect("127.0.0.1", port, &params, resolver.clone()).await.unwrap();
    first.stream.write_all(b"x").await.unwrap(); // opens the stream on the server's side
    let start = Instant::now();
    let second = connect("127.0.0.1", port, &params, resolver).await;
    let took = start.elapsed();
    let Err(ConnectError::Race { error, .. }) = second else { panic!("second: {second:?}") };
    eprintln!("refused in {took:?}: {error}");
    assert!(took < Duration::from_secs(2), "refused at once, not timed out: {took:?}");
    let start = Instant::now();
    while listener.stats().served < 1 && start.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let counts = listener.stats();
    assert_eq!((counts.served, counts.refused), (1, 1), "{counts:?}");
    let start = Instant::now();
    listener.shutdown(Duration::from_millis(300)).await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), first.stream.read_to_end(&mut rest));
    assert!(read.await.is_ok(), "the cancelled connection is closed, not left hanging");
}

/// A peer that accepts the TCP connection and then says nothing (no TLS server behind it): the
/// attempt times out saying it was connected and the TLS handshake is what did not finish,
/// where a blackholed address says only that nothing answered.
#[tokio::test]
async fn a_tls_attempt_that_connects_and_then_hears_nothing_says_the_handshake_stalled() {
    use nw_connection::{SystemConfig, SystemResolver, connect};
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let ca = TestCa::new("nwkit test CA").unwrap();
    let client = ClientOptions { extra_anchors: vec![ca.root_der()], ..ClientOptions::default() }
        .config()
        .unwrap();
    let mut params = nw_connection::Parameters {
        tls: Some(client),
        server_name: Some("localhost".into()),
        ..Default::default()
    };
    params.race.attempt_timeout = Duration::from_millis(300);
    let resolver = Arc::new(SystemResolver::new(SystemConfig::parse("", "")));
    let Err(e) = connect("127.0.0.1", port, &params, resolver).await else {
        panic!("a silent peer completed a TLS handshake")
    };
    let text = e.to_string();
    assert!(
        text.contains("connected in ") && text.contains("then the TLS handshake did not finish"),
        "{text}"
    );
    // The same when the race's own limit runs out first: the attempt it cut short says how
    // far it got.
    params.race.attempt_timeout = Duration::from_secs(10);
    params.race.timeout = Duration::from_millis(300);
    let resolver = Arc::new(SystemResolver::new(SystemConfig::parse("", "")));
    let Err(e) = connect("127.0.0.1", port, &params, resolver).await else {
        panic!("a silent peer completed a TLS handshake")
    };
    let text = e.to_string();
    assert!(text.contains("no attempt was ready within 300ms"), "{text}");
    assert!(
        text.contains("connected in ") && text.contains("the TLS handshake unfinished"),
        "{text}"
    );
    drop(silent);
}
