//! A link-quality monitor fed in virtual time, as a transfer layer feeds it: a minute on a
//! good link, then a minute on a congested one (throughput down to an eightieth, round trips up,
//! a failure now and then), then the good link again — and the coarse level it reports each
//! ten seconds. No network: everything here is a machine whose clock is an argument.
//!
//! ```sh
//! cargo run -p nw-quality --example link_quality
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use nw_quality::{Monitor, Sample};

/// What one second of the link carries: (bytes, round trip in ms, whether an attempt failed).
fn second(t: u64) -> (u64, u64, bool) {
    match t {
        // 40 Mbit/s, 30 ms.
        0..60 => (5_000_000, 30, false),
        // 0.48 Mbit/s, 400 ms, one attempt in four failing.
        60..120 => (60_000, 400, t.is_multiple_of(4)),
        _ => (5_000_000, 30, false),
    }
}

fn main() -> std::io::Result<()> {
    let mut monitor = Monitor::default();
    let mut out = format!("estimator: {}\n", monitor.estimator());
    for t in 0..180 {
        let at = Duration::from_secs(t);
        let (bytes, rtt_ms, failed) = second(t);
        monitor.transfer(Sample { at, bytes, duration: Duration::from_secs(1) });
        monitor.rtt(at, Duration::from_millis(rtt_ms));
        monitor.attempt(at, !failed);
        if t % 10 == 9 {
            let now = monitor.snapshot(at + Duration::from_secs(1));
            let _ = writeln!(
                out,
                "{:>4} s  {:<9} {:>6.1} Mbit/s  rtt {:>5.0} ms  {:>3.0}% failed",
                t + 1,
                format!("{:?}", now.level),
                now.throughput.unwrap_or(0.0) / 1e6,
                now.rtt_ms.unwrap_or(0.0),
                now.failure_ratio * 100.0
            );
        }
    }
    emit(&out)
}

/// Writes `text` to stdout; a reader that went away (`| head`) ends the example quietly, where
/// `println!` would panic.
fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written,
    }
}
