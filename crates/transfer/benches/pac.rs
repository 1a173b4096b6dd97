//! Benchmark: how fast a PAC file answers, nw's QuickJS sandbox against pacparser (Debian's
//! python3-pacparser, SpiderMonkey underneath), in the same run, with the same script and the
//! same URLs. The script is shaped like a company's: plain names and internal domains direct,
//! patterns to one proxy, address ranges checked on IP literals, the rest to a proxy list; it
//! makes no name lookups, so the resolver is not what is measured.
//!
//! nw's figure is per answer as a session sees it: the question sent to the script's thread
//! and the answer awaited, one at a time. pacparser's is its `find_proxy` called in a Python
//! loop in one process (timed inside it, so Python's start is not counted; its loop adds well
//! under a microsecond a call). Rounds alternate, which one goes first alternating too; the
//! medians and their ratio are printed.
//!
//! Run: `cargo bench -p nw-transfer --bench pac`. `NW_BENCH_SMOKE=1` runs a tiny version so CI
//! keeps it compiling and running.

#![allow(clippy::disallowed_methods, reason = "benchmark: measures wall-clock time")]
#![allow(clippy::print_stdout, clippy::unwrap_used, reason = "benchmark program")]

use std::sync::Arc;
use std::time::Instant;

use nw_connection::{MemoryResolver, Resolve, Url};
use nw_http::pac::Pac;

const SCRIPT: &str = r#"
var direct = [".corp.example", ".lab.example", ".intranet.example"];
var media = ["*.video.example/*", "*.cdn.example/*", "http://*.stream.example/*"];
function FindProxyForURL(url, host) {
  if (isPlainHostName(host) || host === "localhost") return "DIRECT";
  for (var i = 0; i < direct.length; i++) {
    if (dnsDomainIs(host, direct[i])) return "DIRECT";
  }
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) {
    if (isInNet(host, "10.0.0.0", "255.0.0.0") || isInNet(host, "192.168.0.0", "255.255.0.0"))
      return "DIRECT";
  }
  for (var j = 0; j < media.length; j++) {
    if (shExpMatch(url, media[j])) return "PROXY media-proxy.corp.example:3128";
  }
  if (url.substring(0, 6) === "https:") return "PROXY proxy1.corp.example:8080; PROXY proxy2.corp.example:8080";
  return "PROXY proxy1.corp.example:8080; DIRECT";
}
"#;

/// The questions: (URL as the script sees it, host).
const ASKED: [(&str, &str); 8] = [
    ("http://wiki/", "wiki"),
    ("https://build.corp.example/", "build.corp.example"),
    ("http://10.4.5.6/status", "10.4.5.6"),
    ("http://203.0.113.9/", "203.0.113.9"),
    ("http://a.video.example/movie.mp4", "a.video.example"),
    ("https://www.example.org/", "www.example.org"),
    ("http://news.example.net/today", "news.example.net"),
    ("https://api.service.example:8443/", "api.service.example"),
];

fn url(text: &str, host: &str) -> Url {
    let https = text.starts_with("https:");
    let rest = text.split_once("://").unwrap().1;
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    let port = rest.split('/').next().unwrap().rsplit_once(':').map(|(_, p)| p.parse().unwrap());
    Url {
        scheme: if https { "https" } else { "http" }.into(),
        host: host.into(),
        port: port.unwrap_or(if https { 443 } else { 80 }),
        path: path.into(),
    }
}

/// nw: µs per answer over `n` answers, and the answers to the questions once.
fn nw(pac: &Pac, n: usize, rt: &tokio::runtime::Runtime) -> (f64, Vec<String>) {
    let resolver: Arc<dyn Resolve> = Arc::new(MemoryResolver::new());
    let urls: Vec<Url> = ASKED.iter().map(|(u, h)| url(u, h)).collect();
    rt.block_on(async {
        let mut answers = Vec::new();
        for u in &urls {
            answers.push(pac.answer(u, resolver.clone()).await.unwrap());
        }
        let started = Instant::now();
        for i in 0..n {
            pac.answer(&urls[i % urls.len()], resolver.clone()).await.unwrap();
        }
        (started.elapsed().as_secs_f64() * 1e6 / n as f64, answers)
    })
}

/// pacparser: µs per answer over `n` answers, and its answers to the questions once.
fn pacparser(file: &std::path::Path, n: usize) -> (f64, Vec<String>) {
    let out = std::process::Command::new("/usr/bin/python3")
        .args(["-c", PEER, file.to_str().unwrap(), &n.to_string()])
        .args(ASKED.iter().flat_map(|(u, h)| [*u, *h]))
        .output()
        .expect("/usr/bin/python3 with python3-pacparser (scripts/test installs it)");
    assert!(out.status.success(), "pacparser: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let us: f64 = lines.next().unwrap().parse().unwrap();
    (us, lines.map(str::to_owned).collect())
}

const PEER: &str = r#"
import sys, time
import pacparser
pacparser.init()
pacparser.parse_pac_file(sys.argv[1])
n = int(sys.argv[2])
pairs = list(zip(sys.argv[3::2], sys.argv[4::2]))
answers = [pacparser.find_proxy(u, h) for u, h in pairs]
started = time.perf_counter()
for i in range(n):
    u, h = pairs[i % len(pairs)]
    pacparser.find_proxy(u, h)
print((time.perf_counter() - started) * 1e6 / n)
print("\n".join(answers))
pacparser.cleanup()
"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let smoke = std::env::var_os("NW_BENCH_SMOKE").is_some();
    let (rounds, n) = if smoke { (2, 200) } else { (7, 50_000) };
    let dir = std::env::temp_dir().join(format!("nw-bench-pac-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("company.pac");
    std::fs::write(&file, SCRIPT).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let started = Instant::now();
    let pac = Pac::read(&file).unwrap();
    let load_ms = started.elapsed().as_secs_f64() * 1e3;

    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let run_nw = |ours: &mut Vec<f64>| {
            let (us, answers) = nw(&pac, n, &rt);
            ours.push(us);
            answers
        };
        let (a, b) = if round % 2 == 0 {
            let a = run_nw(&mut ours);
            let (us, b) = pacparser(&file, n);
            theirs.push(us);
            (a, b)
        } else {
            let (us, b) = pacparser(&file, n);
            theirs.push(us);
            (run_nw(&mut ours), b)
        };
        assert_eq!(a, b, "nw and pacparser answer the same");
    }
    // The same questions to a script that answers at once: what the hand-over to the
    // script's thread and back costs, apart from running the script.
    std::fs::write(&file, "function FindProxyForURL(u, h) { return 'DIRECT'; }").unwrap();
    let trivial = Pac::read(&file).unwrap();
    let handover = median((0..rounds).map(|_| nw(&trivial, n, &rt).0).collect());
    let (ours, theirs) = (median(ours), median(theirs));
    println!("PAC answers, {n} per round, {rounds} rounds, a company-shaped script (no lookups):");
    println!("  nw (QuickJS, own thread)   median {ours:8.2} µs/answer   loading {load_ms:.2} ms");
    println!("  pacparser (SpiderMonkey)   median {theirs:8.2} µs/answer");
    println!("  ratio pacparser / nw       {:.2}   (above 1: nw answers faster)", theirs / ours);
    println!(
        "  nw, a script answering at once: {handover:.2} µs/answer (the hand-over to its thread and back)"
    );
    std::fs::remove_dir_all(&dir).ok();
}
