//! The connection pool: its rules in virtual time, reuse against nginx, and the one retry on a
//! fresh connection when a pooled one turns out dead.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use nw_http::pool::{IDLE_LIMIT, Pool, Pooled};
use nw_lab::nginx::Options as NginxOptions;
use nw_transfer::Configuration;

use crate::support::{Scratch, https_origin, job, nginx, pattern, runtime, session, virtual_start};

#[derive(Debug, PartialEq)]
struct Fake {
    name: &'static str,
    closed: bool,
    reused: bool,
    /// It carries requests side by side (HTTP/2).
    multiplexed: bool,
}

impl Pooled for Fake {
    fn is_closed(&self) -> bool {
        self.closed
    }
    fn reuse(&mut self) {
        self.reused = true;
    }
    fn share(&self) -> Option<Self> {
        self.multiplexed.then_some(Self { reused: true, ..*self })
    }
    fn id(&self) -> u64 {
        // Names are unique in these tests.
        self.name.bytes().fold(0, |h, b| h * 31 + u64::from(b))
    }
}

fn any(_: &Fake) -> bool {
    true
}

fn fake(name: &'static str, closed: bool) -> Fake {
    Fake { name, closed, reused: false, multiplexed: false }
}

fn h2(name: &'static str) -> Fake {
    Fake { name, closed: false, reused: false, multiplexed: true }
}

#[test]
fn pool_hands_out_open_fresh_connections_of_the_origin_on_the_same_path() {
    let a = https_origin("a.example");
    let b = https_origin("b.example");
    let pool = Pool::default();
    let t0 = virtual_start();
    let path = Some(1);
    assert_eq!(pool.take(&a, path, t0, any), None);
    pool.put(a.clone(), fake("a1", false), path, t0);
    assert_eq!(pool.take(&b, path, t0, any), None, "another origin's connection is not offered");
    let got = pool.take(&a, path, t0 + Duration::from_secs(1), any).unwrap();
    assert_eq!((got.name, got.reused), ("a1", true));
    // Closed by the peer, or idle too long: skipped and dropped.
    pool.put(a.clone(), fake("closed", true), path, t0);
    assert_eq!(pool.take(&a, path, t0, any), None);
    pool.put(a.clone(), fake("old", false), path, t0);
    assert_eq!(pool.take(&a, path, t0 + IDLE_LIMIT, any), None);
    assert_eq!(pool.idle(), 0);
    // A changed path flushes every origin.
    pool.put(a.clone(), fake("a2", false), path, t0);
    pool.put(b.clone(), fake("b1", false), path, t0);
    assert_eq!(pool.idle(), 2);
    assert_eq!(pool.take(&b, Some(2), t0, any), None, "the path changed");
    assert_eq!(pool.idle(), 0);
    pool.put(b.clone(), fake("b2", false), Some(2), t0);
    assert_eq!(pool.take(&b, Some(2), t0, any).map(|c| c.name), Some("b2"));
}

#[test]
fn pool_shares_a_multiplexed_connection_and_keeps_it_once() {
    let a = https_origin("a.example");
    let pool = Pool::default();
    let t0 = virtual_start();
    let path = Some(1);
    // Made, and offered at once.
    pool.made(&a, Some(&h2("mux")), path, t0);
    assert_eq!(pool.idle(), 1);
    let (one, two) = (pool.take(&a, path, t0, any).unwrap(), pool.take(&a, path, t0, any).unwrap());
    assert_eq!((one.name, two.name, one.reused), ("mux", "mux", true));
    assert_eq!(pool.idle(), 1, "a shared connection stays in the pool while handles are out");
    // Handles coming back do not make copies; each marks the connection used.
    let later = t0 + IDLE_LIMIT / 2;
    pool.put(a.clone(), one, path, later);
    pool.put(a.clone(), two, path, t0);
    assert_eq!(pool.idle(), 1);
    assert!(pool.take(&a, path, later + IDLE_LIMIT / 2 + Duration::from_secs(1), any).is_some());
    // An HTTP/1.1 connection is handed to one request at a time.
    let b = https_origin("b.example");
    pool.made(&b, Some(&fake("h1", false)), path, t0);
    assert_eq!(pool.take(&b, path, t0, any), None, "not offered before it is put back");
}

#[test]
fn pool_turns_make_a_burst_wait_for_one_connection_until_it_is_known_not_to_multiplex() {
    use futures_util::FutureExt as _;
    let a = https_origin("a.example");
    let pool: Pool<Fake> = Pool::default();
    let t0 = virtual_start();
    // Not known yet: one request connects, the next waits its turn.
    let first = pool.turn(&a).now_or_never().expect("the first turn is free").unwrap();
    assert!(pool.turn(&a).now_or_never().is_none(), "the second waits");
    pool.made(&a, Some(&h2("mux")), Some(1), t0);
    drop(first);
    let second = pool.turn(&a).now_or_never().expect("free again").unwrap();
    assert_eq!(pool.take(&a, Some(1), t0, any).map(|c| c.name), Some("mux"));
    drop(second);
    // Requests queued behind one that found HTTP/1.1 get no turn: they connect side by side.
    let c = https_origin("c.example");
    let leader = pool.turn(&c).now_or_never().unwrap().unwrap();
    let mut queued = Box::pin(pool.turn(&c));
    assert!((&mut queued).now_or_never().is_none());
    pool.made(&c, Some(&fake("c-h1", false)), Some(1), t0);
    drop(leader);
    assert!(queued.now_or_never().expect("the turn came").is_none(), "no turn held");
    // An origin that answered over HTTP/1.1, or could not be reached: no waiting.
    pool.made(&a, Some(&fake("h1", false)), Some(1), t0);
    let _held = pool.turn(&a).now_or_never().unwrap();
    assert!(pool.turn(&a).now_or_never().expect("no wait").is_none());
    let b = https_origin("b.example");
    let held = pool.turn(&b).now_or_never().unwrap();
    pool.made(&b, None, Some(1), t0);
    drop(held);
    assert!(pool.turn(&b).now_or_never().expect("no wait").is_none());
}

#[test]
fn pool_reuses_a_connection_to_nginx_for_the_next_download() {
    let scratch = Scratch::new("pool-reuse");
    let data = pattern(1 << 20, 41);
    std::fs::write(scratch.www().join("one.bin"), &data).unwrap();
    std::fs::write(scratch.www().join("two.bin"), &data).unwrap();
    let server = nginx(&scratch, &NginxOptions::default());
    let session = session(&scratch, Configuration::default());
    let rt = runtime();
    let mut reused = Vec::new();
    for name in ["one.bin", "two.bin"] {
        let dest = scratch.0.join(name);
        let url = server.url(&format!("/{name}"));
        let done = rt.block_on(session.download(&job(url, &dest, false), &mut |_| {})).unwrap();
        assert!(std::fs::read(&dest).unwrap() == data);
        reused.push(done.metrics.reused);
    }
    assert_eq!(reused, [false, true]);
}

/// Reads one request head; false when the peer closed first.
fn read_head(reader: &mut BufReader<std::net::TcpStream>) -> bool {
    let mut line = String::new();
    let mut any = false;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line == "\r\n" => return any,
            Ok(_) => any = true,
        }
    }
}

#[test]
fn pool_retries_once_on_a_fresh_connection_when_the_pooled_one_is_dead() {
    let scratch = Scratch::new("pool-stale");
    let session = session(&scratch, Configuration::default());
    // A server that answers one request per connection with keep-alive, then closes the
    // connection when the next request arrives, unanswered: what a server's idle timeout
    // racing a client's request looks like.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = pattern(100_000, 42);
    let served = body.clone();
    let server = std::thread::spawn(move || {
        let mut connections = 0;
        for stream in listener.incoming().take(2) {
            let stream = stream.unwrap();
            connections += 1;
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if !read_head(&mut reader) {
                continue;
            }
            let mut out = stream;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"v1\"\r\n\r\n",
                served.len()
            );
            out.write_all(head.as_bytes()).unwrap();
            out.write_all(&served).unwrap();
            if connections == 1 {
                // The next request on this connection is read, then the connection closed.
                let _ = read_head(&mut reader);
            }
        }
        connections
    });
    let rt = runtime();
    let url = |n: &str| format!("http://127.0.0.1:{port}/{n}");
    let first = rt
        .block_on(
            session.download(&job(url("a.bin"), &scratch.0.join("a.bin"), false), &mut |_| {}),
        )
        .unwrap();
    assert!(!first.metrics.reused);
    let second = rt
        .block_on(
            session.download(&job(url("b.bin"), &scratch.0.join("b.bin"), false), &mut |_| {}),
        )
        .unwrap_or_else(|e| panic!("the retry on a fresh connection should have saved this: {e}"));
    assert!(!second.metrics.reused, "served by the fresh connection");
    assert!(std::fs::read(scratch.0.join("b.bin")).unwrap() == body);
    assert_eq!(server.join().unwrap(), 2, "one dead pooled connection, one fresh");
}

#[test]
fn pool_requests_that_waited_for_a_connection_that_could_not_be_made_fail_within_one_timeout() {
    let scratch = Scratch::new("pool-turn-timeout");
    // Accepts and never says a word: every TLS handshake waits out the timeout.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let timeout = Duration::from_secs(3);
    let config = Configuration { request_timeout: timeout, ..Configuration::default() };
    let session = session(&scratch, config);
    let url = format!("https://127.0.0.1:{port}/x");
    let rt = runtime();
    #[allow(clippy::disallowed_methods, reason = "the test times the failures")]
    let started = Instant::now();
    let all = rt.block_on(futures_util::future::join_all((0..8).map(|_| session.data(&url, 64))));
    let took = started.elapsed();
    assert!(all.iter().all(Result::is_err), "{all:?}");
    // One request connects while the others wait their turn (an HTTPS origin may multiplex);
    // when it fails, they have the rest of their time, not a timeout more. 2 s of slack.
    assert!(took >= timeout - Duration::from_millis(100), "{took:?}");
    assert!(took < timeout + Duration::from_secs(2), "took {took:?}, two timeouts");
}
