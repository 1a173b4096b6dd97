//! Benchmark: time from a kernel change to the path monitor's update, printed next to what
//! `ip monitor` (the kernel's own notification, read by iproute2) sees in the same run.
//!
//! Each round makes one change in a lab namespace after a quiet period (so it is the "first
//! change", reported at once) and stamps when each observer prints it. Changes alternate
//! between adding and removing an address, which the kernel notifies at once (carrier changes
//! are held by linkwatch for up to a second, which would measure the kernel, not us).
//!
//! Run: `cargo bench -p nw --bench path_monitor` (as root). `NW_BENCH_SMOKE=1` does 3 rounds.

#![allow(clippy::disallowed_methods, reason = "benchmark: measures wall-clock latency")]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    reason = "benchmark program"
)]

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nw_lab::{Child, Lab, Namespace};

fn main() {
    let rounds = if std::env::var_os("NW_BENCH_SMOKE").is_some() { 3 } else { 25 };
    let lab = Lab::new().unwrap_or_else(|e| panic!("the benchmark needs the lab: {e}"));
    let pair = lab.pair().unwrap_or_else(|e| panic!("lab setup failed: {e}"));
    let ns = &pair.cli;

    let mut nw_cmd = ns.command(env!("CARGO_BIN_EXE_nw"));
    nw_cmd.args(["path", "--watch", "--json"]);
    let (_nw, nw_lines) = stamped(ns, nw_cmd);
    let mut ip_cmd = ns.command("ip");
    ip_cmd.args(["monitor", "address"]);
    let (_ip, ip_lines) = stamped(ns, ip_cmd);
    // Let IPv6 link-local DAD finish (its address events land 1–2 s after link-up).
    std::thread::sleep(Duration::from_millis(2_500));

    let (mut ours, mut kernel) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(400)); // longer than the 250 ms window
        drain(&nw_lines);
        drain(&ip_lines);
        let verb = if round % 2 == 0 { "add" } else { "del" };
        let t0 = Instant::now();
        ns.ip(["addr", verb, "198.51.100.200/24", "dev", "eth0"]).unwrap();
        let limit = Duration::from_secs(3);
        let ip_at = ip_lines.recv_timeout(limit).expect("ip monitor saw the change");
        let nw_at = nw_lines.recv_timeout(limit).expect("nw path --watch saw the change");
        kernel.push(ms(ip_at - t0));
        ours.push(ms(nw_at - t0));
    }
    let (k, o) = (median(&kernel), median(&ours));
    println!(
        "path monitor: kernel change → update, {rounds} rounds (address add/del, quiet 400 ms between)"
    );
    println!("  ip monitor address (peer)   median {k:7.2} ms   max {:7.2} ms", max(&kernel));
    println!("  nw path --watch --json      median {o:7.2} ms   max {:7.2} ms", max(&ours));
    println!(
        "  ratio nw / ip monitor       {:.2}   (nw adds {:.2} ms: a full dump, evaluation, JSON)",
        o / k,
        o - k
    );
}

fn stamped(ns: &Namespace, mut cmd: std::process::Command) -> (Child, mpsc::Receiver<Instant>) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = ns.spawn(cmd).unwrap();
    let out = child.stdout().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            // ip monitor prints continuation lines indented; count each event once.
            if !line.starts_with(' ') && tx.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

fn drain(rx: &mpsc::Receiver<Instant>) {
    while rx.try_recv().is_ok() {}
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn max(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(0.0, f64::max)
}
