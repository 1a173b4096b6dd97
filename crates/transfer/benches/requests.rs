//! Benchmark: the CPU time of 1,000 sequential HTTP/1.1 requests (1 KiB GETs as data tasks) on
//! one keep-alive connection to nginx on loopback, as the session runs them now — the pool
//! reads the path from the process's path service — and with the kernel dump per request the
//! pool made before the path service (`nw_path::current` on the blocking pool, which is what
//! `pool::path_fingerprint` did), in alternating rounds of the same run. nginx is the peer in
//! both and runs in its own process, so the CPU counted (this process's, user + system) is the
//! client's alone. Prints each side's median CPU per request, wall time, and the ratio.
//!
//! Run: `cargo bench -p nw-transfer --bench requests`. `NW_BENCH_SMOKE=1` runs a tiny version
//! so CI keeps it compiling and running.

#![allow(clippy::disallowed_methods, reason = "benchmark: measures wall-clock time")]
#![allow(clippy::print_stdout, clippy::unwrap_used, reason = "benchmark program")]

use std::time::{Duration, Instant};

use nw_lab::Scratch;
use nw_lab::nginx::{Nginx, Options};
use nw_transfer::{Configuration, Http3, Session};

fn main() {
    let smoke = std::env::var_os("NW_BENCH_SMOKE").is_some();
    let (rounds, per_round) = if smoke { (2, 50) } else { (5, 1_000) };
    let scratch = Scratch::new("bench-requests").unwrap();
    let www = scratch.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("small"), vec![b'x'; 1024]).unwrap();
    let nginx = Nginx::start(&www, &Options::default())
        .unwrap_or_else(|e| panic!("the benchmark needs nginx (apt-get install nginx-light): {e}"));
    let url = nginx.url("/small");
    let config = Configuration { http2: false, http3: Http3::Off, ..Configuration::default() };
    let session = Session::new(config, &scratch.path().join("s.db")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mut now, mut before) = (Vec::new(), Vec::new());
    rt.block_on(async {
        // Warm up: the connection, the path service's first reading.
        session.data(&url, 4096).await.unwrap();
        for _ in 0..rounds {
            now.push(
                round(per_round, async || {
                    let got = session.data(&url, 4096).await.unwrap();
                    assert_eq!((got.status, got.body.len()), (200, 1024));
                })
                .await,
            );
            before.push(
                round(per_round, async || {
                    let dump = tokio::task::spawn_blocking(|| {
                        nw_path::current(&nw_path::Conditions::default()).ok()
                    });
                    assert!(dump.await.unwrap().is_some(), "the path could not be read");
                    let got = session.data(&url, 4096).await.unwrap();
                    assert_eq!((got.status, got.body.len()), (200, 1024));
                })
                .await,
            );
        }
    });
    let (n, b) = (median(&now), median(&before));
    println!(
        "{per_round} sequential 1 KiB GETs over HTTP/1.1 keep-alive to nginx, {rounds} alternating rounds"
    );
    println!(
        "  with a kernel dump per request (before)   median CPU {:7.1} µs/request, wall {:6.1} µs/request",
        b.0, b.1
    );
    println!(
        "  reading the path service (now)            median CPU {:7.1} µs/request, wall {:6.1} µs/request",
        n.0, n.1
    );
    println!("  CPU ratio now / before                    {:.2}", n.0 / b.0);
    drop(nginx);
}

/// Runs `request` `n` times; returns (CPU µs per request, wall µs per request).
async fn round(n: u32, mut request: impl AsyncFnMut()) -> (f64, f64) {
    let (cpu, wall) = (cpu_time(), Instant::now());
    for _ in 0..n {
        request().await;
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    (per(cpu_time().saturating_sub(cpu)), per(wall.elapsed()))
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

fn median(xs: &[(f64, f64)]) -> (f64, f64) {
    let mut cpu: Vec<f64> = xs.iter().map(|x| x.0).collect();
    let mut wall: Vec<f64> = xs.iter().map(|x| x.1).collect();
    cpu.sort_by(f64::total_cmp);
    wall.sort_by(f64::total_cmp);
    (cpu[cpu.len() / 2], wall[wall.len() / 2])
}
