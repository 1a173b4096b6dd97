//! Benchmark: connection setups per second on loopback — `driver::connect` (the whole race
//! machinery, an IP literal so no DNS) against a bare tokio `TcpStream::connect` loop, in
//! alternating rounds of the same run. Prints each side's median rate and the ratio. Then
//! the cost of local network privacy for a destination that is not local: the same connects
//! with the check on (a store with a hundred decisions) next to off, alternating, with the
//! median time per connect and the ratio (goal: within 2 %).
//!
//! Run: `cargo bench -p nw-connection --bench connect_rate`. `NW_BENCH_SMOKE=1` runs a tiny
//! version so CI keeps it compiling and running.

#![allow(clippy::disallowed_methods, reason = "benchmark: measures wall-clock time")]
#![allow(clippy::print_stdout, clippy::unwrap_used, reason = "benchmark program")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use nw_connection::SystemConfig;
use nw_connection::{Parameters, SystemResolver, connect};

fn main() {
    let smoke = std::env::var_os("NW_BENCH_SMOKE").is_some();
    let (rounds, per_round) = if smoke { (2, 50) } else { (7, 2_000) };
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        // Accept and close at once, so the backlog never fills.
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        });
        let resolver = Arc::new(SystemResolver::new(SystemConfig::parse("", "")));
        let params = Parameters::default();
        let (mut ours, mut bare) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let start = Instant::now();
            for _ in 0..per_round {
                let c = connect("127.0.0.1", at.port(), &params, resolver.clone()).await.unwrap();
                drop(c);
            }
            ours.push(rate(per_round, start.elapsed()));
            let start = Instant::now();
            for _ in 0..per_round {
                drop(tokio::net::TcpStream::connect(at).await.unwrap());
            }
            bare.push(rate(per_round, start.elapsed()));
        }
        // Local network privacy on vs off, to a destination that is not local (loopback).
        let dir = std::env::temp_dir().join(format!("nw-bench-lnp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut store = String::from("check = \"on\"\n[apps]\n");
        for i in 0..100 {
            store += &format!("\"exe:/opt/app{i}\" = \"deny\"\n");
        }
        std::fs::write(dir.join("on.toml"), store).unwrap();
        let with = |file: &str| {
            let mut p = Parameters::default();
            p.local_network.paths = nw_connection::LocalNetworkPaths {
                store: dir.join(file),
                policy: dir.join("no-policy.toml"),
            };
            p
        };
        let (on_params, off_params) = (with("on.toml"), with("off.toml"));
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            for (params, out) in [(&off_params, &mut off), (&on_params, &mut on)] {
                let start = Instant::now();
                for _ in 0..per_round {
                    drop(connect("127.0.0.1", at.port(), params, resolver.clone()).await.unwrap());
                }
                out.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(per_round));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        let (o, b) = (median(&ours), median(&bare));
        println!(
            "connect rate on loopback, {rounds} alternating rounds of {per_round} connections"
        );
        println!("  bare tokio TcpStream::connect (peer)   median {b:9.0} /s");
        println!("  nw-connection driver::connect          median {o:9.0} /s");
        println!("  ratio nw / bare                        {:.2}   (target ≥ 0.90)", o / b);
        let (on, off) = (median(&on), median(&off));
        println!("connect to a destination that is not local, local network privacy on vs off");
        println!("  check off                              median {off:9.1} µs per connect");
        println!("  check on (100 decisions stored)        median {on:9.1} µs per connect");
        println!("  ratio on / off                         {:.3}  (goal ≤ 1.02)", on / off);
    });
}

fn rate(n: u32, took: Duration) -> f64 {
    f64::from(n) / took.as_secs_f64()
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
