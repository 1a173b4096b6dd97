//! Benchmark: the small-request rate of nw-transfer's data tasks against reqwest's, in the same
//! run, on the same runtime, to the same nginx on loopback: 1 KiB GETs over HTTP/1.1 keep-alive
//! (plain HTTP) and over HTTP/2 (TLS, a private anchor), with 1 and with 64 requests in flight.
//! Each case runs the two clients in alternating rounds (which one goes first alternates too),
//! each on a runtime of its own;
//! it prints each client's median rate and CPU per request, and the ratio of the rates.
//!
//! nginx runs in its own process, so the CPU counted (this process's, user + system, every
//! thread) is the client's alone. nginx gets a CPU of its own and the clients the others, as
//! across a network: left to the scheduler, the same client's rate with one request in
//! flight swung between about 13k and 27k requests/s from run to run (and round to round) on
//! this 2-CPU machine, as its threads and nginx's came to share a CPU or not — noise larger
//! than any difference between the clients. Placed, it holds within a few per cent. Both clients are warmed up first (connections made, pools
//! filled), as an application that has been running would be.
//!
//! Run: `cargo bench -p nw-transfer --bench requests`. `NW_BENCH_SMOKE=1` runs a tiny version
//! so CI keeps it compiling and running. `NW_BENCH_CASES=h2-64,h1-1` runs some cases only;
//! `NW_BENCH_CLIENT=nw` (or `reqwest`) runs one client only, for a profiler;
//! `NW_BENCH_RT=current` gives each client a current-thread runtime instead of tokio's
//! default multi-thread one.

#![allow(clippy::disallowed_methods, reason = "benchmark: measures wall-clock time")]
#![allow(clippy::print_stdout, clippy::unwrap_used, reason = "benchmark program")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use nw_lab::Scratch;
use nw_lab::nginx::{Nginx, Options};
use nw_transfer::{Configuration, Http3, Session};

/// One client under test.
#[derive(Clone)]
enum Client {
    Nw(Arc<Session>),
    Reqwest(reqwest::Client),
}

impl Client {
    async fn get(&self, url: &str) {
        match self {
            Self::Nw(session) => {
                let got = session.data(url, 4096).await.unwrap();
                assert_eq!((got.status, got.body.len()), (200, 1024));
            }
            Self::Reqwest(client) => {
                let got = client.get(url).send().await.unwrap();
                assert_eq!(got.status(), 200);
                assert_eq!(got.bytes().await.unwrap().len(), 1024);
            }
        }
    }
}

/// What one round measured: requests per second, CPU µs per request.
#[derive(Clone, Copy)]
struct Round {
    rate: f64,
    cpu_us: f64,
}

fn main() {
    let smoke = std::env::var_os("NW_BENCH_SMOKE").is_some();
    let (rounds, per_round) = if smoke { (2, 128) } else { (7, 4_096) };
    let only = std::env::var("NW_BENCH_CASES").ok();
    let client = std::env::var("NW_BENCH_CLIENT").ok();

    let scratch = Scratch::new("bench-requests").unwrap();
    let www = scratch.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("small"), vec![b'x'; 1024]).unwrap();
    let ca = nw_trust::ca::TestCa::new("nw bench CA").unwrap();
    let issued = ca.server(&["127.0.0.1"]).unwrap();
    let (cert, key) = (scratch.path().join("cert.pem"), scratch.path().join("key.pem"));
    std::fs::write(&cert, &issued.chain_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    // nginx is started on the last CPU this process may use (it inherits this thread's
    // placement), the clients' runtimes on the rest.
    let allowed = cpus();
    let placed = allowed.len() >= 2;
    if placed {
        pin(&allowed[allowed.len() - 1..]);
    }
    let nginx = Nginx::start(&www, &Options { tls: Some((cert, key)), ..Options::default() })
        .unwrap_or_else(|e| panic!("the benchmark needs nginx (apt-get install nginx-light): {e}"));
    let (http, https) = (nginx.url("/small"), nginx.https_url("/small").unwrap());
    if placed {
        pin(&allowed[..allowed.len() - 1]);
    }

    let trust = nw_trust::Options {
        anchors: vec![nw_trust::Anchor {
            der: ca.cert_der(),
            class: nw_trust::AnchorClass::Custom,
        }],
        ..nw_trust::Options::default()
    };
    let nw = |http2: bool| {
        let config = Configuration {
            http2,
            http3: Http3::Off,
            trust: trust.clone(),
            ..Configuration::default()
        };
        Client::Nw(Arc::new(Session::ephemeral(config).unwrap()))
    };
    let theirs = |http2: bool| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der()).unwrap();
        let mut tls =
            rustls::ClientConfig::builder_with_provider(nw_connection::crypto::provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        tls.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        let builder = reqwest::Client::builder().no_proxy().tls_backend_preconfigured(tls);
        let builder = if http2 { builder } else { builder.http1_only() };
        Client::Reqwest(builder.build().unwrap())
    };

    let cases = [
        ("h1-1", "HTTP/1.1 keep-alive, 1 in flight", false, 1),
        ("h1-64", "HTTP/1.1 keep-alive, 64 in flight", false, 64),
        ("h2-1", "HTTP/2 over TLS, 1 in flight", true, 1),
        ("h2-64", "HTTP/2 over TLS, 64 in flight", true, 64),
    ];
    // A runtime each (tokio's default, a worker per core), as each would have in an
    // application of its own: one client's tasks never keep the other's workers awake.
    let current = std::env::var("NW_BENCH_RT").is_ok_and(|r| r == "current");
    let runtimes = [(); 2].map(|()| {
        if current {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
        } else {
            tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
        }
    });
    println!("{per_round} GETs of 1 KiB per round, {rounds} alternating rounds, nginx on loopback");
    if placed {
        println!(
            "nginx on CPU {}, the clients on CPU {:?}",
            allowed[allowed.len() - 1],
            &allowed[..allowed.len() - 1]
        );
    } else {
        println!("one CPU: nginx and the clients share it");
    }
    for (name, what, http2, in_flight) in cases {
        if only.as_deref().is_some_and(|o| !o.split(',').any(|c| c == name)) {
            continue;
        }
        let url = if http2 { &https } else { &http };
        let clients = [("nw", nw(http2)), ("reqwest", theirs(http2))];
        let mut got: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
        for (k, (_, c)) in clients.iter().enumerate() {
            runtimes[k].block_on(round(c, url, in_flight, in_flight * 4));
        }
        for r in 0..rounds {
            for k in [r % 2, 1 - r % 2] {
                if client.as_deref().is_some_and(|c| c != clients[k].0) {
                    got[k].push(Round { rate: f64::NAN, cpu_us: f64::NAN });
                    continue;
                }
                got[k].push(runtimes[k].block_on(round(&clients[k].1, url, in_flight, per_round)));
            }
        }
        let (ours, theirs) = (median(&got[0]), median(&got[1]));
        println!("{what}");
        for ((label, _), m) in clients.iter().zip([ours, theirs]) {
            println!(
                "  {label:8} median {:9.0} requests/s, CPU {:6.1} µs/request",
                m.rate, m.cpu_us
            );
        }
        println!(
            "  rate nw / reqwest {:.2}, CPU per request nw / reqwest {:.2}",
            ours.rate / theirs.rate,
            ours.cpu_us / theirs.cpu_us
        );
    }
    drop(nginx);
}

/// `n` GETs of `url` by `client`, `in_flight` at a time.
async fn round(client: &Client, url: &str, in_flight: usize, n: usize) -> Round {
    let (cpu, wall) = (cpu_time(), Instant::now());
    let workers: Vec<_> = (0..in_flight)
        .map(|w| {
            let (client, url) = (client.clone(), url.to_owned());
            let mine = n / in_flight + usize::from(w < n % in_flight);
            tokio::spawn(async move {
                for _ in 0..mine {
                    client.get(&url).await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let (cpu, wall) = (cpu_time().saturating_sub(cpu), wall.elapsed());
    let n = n as f64;
    Round { rate: n / wall.as_secs_f64(), cpu_us: cpu.as_secs_f64() * 1e6 / n }
}

/// The CPUs this thread may run on.
fn cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the zeroed set we own, of the size we pass.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &raw mut set);
        set
    };
    // SAFETY: CPU_ISSET reads the set we own, below its size in bits.
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// Keeps this thread (and the threads and processes it starts from now on) on `cpus`.
fn pin(cpus: &[usize]) {
    // SAFETY: CPU_ZERO and CPU_SET write the set we own; sched_setaffinity reads it.
    let done = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set)
    };
    assert_eq!(done, 0, "cannot place the benchmark on CPUs {cpus:?}");
}

/// This process's CPU time so far, user and system, every thread included.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes one rusage into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), 0)
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The median round by rate, and the median CPU per request.
fn median(xs: &[Round]) -> Round {
    let mut rate: Vec<f64> = xs.iter().map(|x| x.rate).collect();
    let mut cpu: Vec<f64> = xs.iter().map(|x| x.cpu_us).collect();
    rate.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    Round { rate: rate[rate.len() / 2], cpu_us: cpu[cpu.len() / 2] }
}
