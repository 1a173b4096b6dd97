//! Benchmark: downloading one large file from nginx on loopback with `nw get`, curl and
//! aria2c (1 and 8 connections), to a file, in alternating runs; plus this machine's limits
//! measured in the same run (loopback HTTP into /dev/null with curl, and into a 1 MiB buffer
//! that keeps nothing, which is the CPU floor of receiving; writing a file with dd, with and
//! without fdatasync, and around the page cache; and the least download to a file, blocking
//! reads handed to an `O_DIRECT` writer thread). HTTPS rows compare HTTP/1.1 and HTTP/2 from
//! nginx with HTTP/3 from ngtcp2's gtlsserver and from our own h3 server (nginx and curl here
//! have no HTTP/3). Prints
//! medians of throughput, CPU seconds per GB (of the client) and peak RSS. Rows upload the
//! same file to nginx (WebDAV PUT) with `nw put` and `curl -T`, and piped through stdin with
//! `nw send -d @-` and `curl -T -` (no length: chunked). Rows through proxies compare
//! nw with curl through the same one: tinyproxy (plain HTTP and CONNECT), tinyproxy behind
//! stunnel as an https:// proxy, and Dante as a SOCKS4 proxy.
//!
//! Run: `cargo bench -p nw --bench download` (1 GiB, 3 runs). `NW_BENCH_SMOKE=1`: 64 MiB, one
//! run. `NW_BENCH_SIZE_MB=10240` for the 10 GB flat-memory check (free disk is checked first),
//! with `NW_BENCH_ONLY=nw,curl` (rows whose names contain one of these) to keep it short.

#![allow(clippy::disallowed_methods, reason = "benchmark: measures wall-clock time")]
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation,
    reason = "benchmark program"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use nw_lab::nginx::{Nginx, Options};
use nw_lab::ngtcp2::Gtlsserver;

/// Our own HTTP/3 server on loopback, on a thread of its own for the benchmark's life.
fn own_h3_server(root: PathBuf, issued: &nw_trust::ca::Issued) -> String {
    use rustls::pki_types::pem::PemObject;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let tls = (issued.chain.clone(), key);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let options = nw_serve::Options::default();
            let server = nw_serve::H3Server::start(addr, Some(&root), tls, &options).unwrap();
            tx.send(server.url("/big.bin")).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv().unwrap()
}

/// One run of a command: wall seconds, CPU seconds (user + system), peak RSS in MiB.
#[allow(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which also gives its rusage"
)]
fn measure(mut cmd: Command) -> (f64, f64, f64) {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, with pointers to live locals.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed().as_secs_f64();
    assert!(
        rc == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed (status {status})"
    );
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (wall, tv(usage.ru_utime) + tv(usage.ru_stime), usage.ru_maxrss as f64 / 1024.0)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn free_mb(dir: &Path) -> u64 {
    let out = Command::new("df").arg("-Pm").arg(dir).output().expect("df runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The floors of a download on this machine, as the benchmark run again as a child with
/// `NW_BENCH_RECV=URL` (plain HTTP): the answer read into one 1 MiB buffer, keeping nothing
/// (the cost of receiving); and with `NW_BENCH_TO=FILE` too, the least a download to a file can
/// be: blocking reads into four aligned 1 MiB buffers and a second thread writing them with
/// `O_DIRECT`, fdatasync at the end, no store, no checkpoints, no checks.
fn floor(url: &str, to: Option<&Path>) {
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
    const CHUNK: usize = 1 << 20;
    #[repr(align(4096))]
    struct Aligned([u8; CHUNK]);
    let rest = url.strip_prefix("http://").expect("a plain-HTTP URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let Some(to) = to else {
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        loop {
            let n = stream.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        assert!(got > 0, "nothing came from {url}");
        return;
    };
    // The head, a byte at a time (a few hundred reads, nothing next to the body).
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(to)
        .unwrap();
    let (full, filled_rx) = std::sync::mpsc::sync_channel::<(Box<Aligned>, usize, u64)>(4);
    let (empty, empty_rx) = std::sync::mpsc::channel::<Box<Aligned>>();
    let writer = std::thread::spawn(move || {
        let mut end = 0;
        for (buf, len, at) in filled_rx {
            // Direct writes are whole blocks: the last one is padded, then cut back.
            file.write_all_at(&buf.0[..len.next_multiple_of(4096)], at).unwrap();
            end = at + len as u64;
            let _ = empty.send(buf);
        }
        file.set_len(end).unwrap();
        file.sync_data().unwrap();
    });
    let mut at = 0u64;
    loop {
        let mut buf = empty_rx.try_recv().unwrap_or_else(|_| {
            // SAFETY: zeroed bytes are a valid Aligned; allocated straight on the heap.
            unsafe { Box::new_zeroed().assume_init() }
        });
        let mut len = 0;
        while len < CHUNK {
            let n = stream.read(&mut buf.0[len..]).unwrap();
            if n == 0 {
                break;
            }
            len += n;
        }
        if len > 0 {
            full.send((buf, len, at)).unwrap();
            at += len as u64;
        }
        if len < CHUNK {
            break;
        }
    }
    drop(full);
    writer.join().unwrap();
}

fn main() {
    if let Ok(url) = std::env::var("NW_BENCH_RECV") {
        floor(&url, std::env::var_os("NW_BENCH_TO").as_deref().map(Path::new));
        return;
    }
    let smoke = std::env::var_os("NW_BENCH_SMOKE").is_some();
    let size_mb: u64 = std::env::var("NW_BENCH_SIZE_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 64 } else { 1024 });
    let runs = if smoke { 1 } else { 3 };
    // On disk (O_DIRECT), and removed however the run ends (a failed peer panics, and a full
    // run leaves 3 GB).
    let scratch = nw_lab::Scratch::under(Path::new("/var/tmp"), "bench-download").unwrap();
    let dir = scratch.path().to_owned();
    std::fs::create_dir_all(dir.join("www")).unwrap();
    let free = free_mb(&dir);
    assert!(
        free > size_mb * 3 + 1024,
        "needs {} MB free in /var/tmp, has {free}",
        size_mb * 3 + 1024
    );
    let source = dir.join("www/big.bin");
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("head -c {}M /dev/urandom > {}", size_mb, source.display()))
        .status()
        .unwrap();
    assert!(ok.success());
    let ca = nw_trust::ca::TestCa::new("nw bench CA").unwrap();
    let issued = ca.server(&["127.0.0.1"]).unwrap();
    let (cert, key, anchor) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("ca.pem"));
    std::fs::write(&cert, &issued.chain_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    std::fs::write(&anchor, ca.cert_pem()).unwrap();
    let server = Nginx::start(
        &dir.join("www"),
        &Options { tls: Some((cert.clone(), key.clone())), ..Options::default() },
    )
    .unwrap_or_else(|e| panic!("the benchmark needs nginx: {e}"));
    let ngtcp2 = Gtlsserver::start(&dir.join("www"), &cert, &key)
        .unwrap_or_else(|e| panic!("the benchmark needs gtlsserver: {e}"));
    let (ngtcp2_url, own_h3_url) =
        (ngtcp2.url("/big.bin"), own_h3_server(dir.join("www"), &issued));
    let (url, https) = (server.url("/big.bin"), server.https_url("/big.bin").unwrap());
    let out = dir.join("out.bin");
    let nw = env!("CARGO_BIN_EXE_nw");
    let store = dir.join("store.db");
    let nw_get = |url: &str, extra: &[&str]| {
        let mut c = Command::new(nw);
        c.args(["get", "--force", "-o"]).arg(&out).args(extra).arg(url).env("NW_STORE", &store);
        c
    };
    let curl = |url: &str, to: &Path| {
        let mut c = Command::new("curl");
        c.args(["-sS", "-f", "--cacert"]).arg(&anchor).arg("-o").arg(to).arg(url);
        c
    };
    let aria2 = |n: &str| {
        let mut c = Command::new("aria2c");
        c.args([
            "-q",
            "--allow-overwrite=true",
            "--file-allocation=none",
            "--auto-file-renaming=false",
            "-x",
            n,
            "-s",
            n,
            "-k",
            "1M",
            "-d",
        ])
        .arg(&dir)
        .args(["-o", "out.bin", &url]);
        c
    };
    let dd = |flags: &[&str]| {
        let mut c = Command::new("dd");
        c.arg("if=/dev/zero")
            .arg(format!("of={}", out.display()))
            .arg("bs=1M")
            .arg(format!("count={size_mb}"))
            .args(flags);
        c
    };
    // The same downloads through tinyproxy (Debian's): plain HTTP forwarded in the absolute
    // form, HTTPS through a CONNECT tunnel, nw and curl alike.
    let tiny = nw_lab::proxies::Tinyproxy::start(None)
        .unwrap_or_else(|e| panic!("the benchmark needs tinyproxy: {e}"));
    let via = format!("http://127.0.0.1:{}", tiny.port());
    let curl_via = |url: &str| {
        let mut c = curl(url, &out);
        c.args(["-x", &via]);
        c
    };
    // An HTTPS proxy (stunnel in front of that tinyproxy, with the origin's certificate), and
    // SOCKS4 (Dante): nw and curl alike.
    let stunnel = nw_lab::proxies::Stunnel::start(&cert, &key, tiny.port())
        .unwrap_or_else(|e| panic!("the benchmark needs stunnel4: {e}"));
    let via_tls = format!("https://127.0.0.1:{}", stunnel.port());
    let dante = nw_lab::proxies::Dante::start()
        .unwrap_or_else(|e| panic!("the benchmark needs danted: {e}"));
    let via_socks4 = format!("socks4://127.0.0.1:{}", dante.port());
    let curl_through = |url: &str, proxy: &str| {
        let mut c = curl(url, &out);
        c.args(["-x", proxy, "--proxy-cacert"]).arg(&anchor);
        c
    };
    let uploaded = dir.join("www/put/up.bin");
    let up_url = server.url("/put/up.bin");
    type Make<'a> = Box<dyn Fn() -> Command + 'a>;
    let tools: Vec<(&str, Make<'_>)> = vec![
        (
            "limit: loopback HTTP, curl to /dev/null",
            Box::new(|| curl(&url, Path::new("/dev/null"))),
        ),
        (
            "limit: loopback HTTP, recv 1 MiB, discarded",
            Box::new(|| {
                let mut c = Command::new(std::env::current_exe().unwrap());
                c.env("NW_BENCH_RECV", &url);
                c
            }),
        ),
        (
            "limit: recv + O_DIRECT writer thread",
            Box::new(|| {
                let mut c = Command::new(std::env::current_exe().unwrap());
                c.env("NW_BENCH_RECV", &url).env("NW_BENCH_TO", &out);
                c
            }),
        ),
        ("limit: dd 1 MiB writes", Box::new(|| dd(&[]))),
        ("limit: dd 1 MiB writes + fdatasync", Box::new(|| dd(&["conv=fdatasync"]))),
        (
            "limit: dd 1 MiB O_DIRECT + fdatasync",
            Box::new(|| dd(&["oflag=direct", "conv=fdatasync"])),
        ),
        ("nw get (durable checkpoints)", Box::new(|| nw_get(&url, &[]))),
        ("nw get --no-fsync", Box::new(|| nw_get(&url, &["--no-fsync"]))),
        ("nw get --buffered (page cache)", Box::new(|| nw_get(&url, &["--buffered"]))),
        ("nw get --segments 4", Box::new(|| nw_get(&url, &["--segments", "4"]))),
        ("curl", Box::new(|| curl(&url, &out))),
        ("aria2c -x1", Box::new(|| aria2("1"))),
        ("aria2c -x8", Box::new(|| aria2("8"))),
        ("nw get https (h2)", Box::new(|| nw_get(&https, &["--anchor", anchor.to_str().unwrap()]))),
        (
            "nw get https --http1",
            Box::new(|| nw_get(&https, &["--http1", "--anchor", anchor.to_str().unwrap()])),
        ),
        (
            "nw get https --segments 4 (h2)",
            Box::new(|| nw_get(&https, &["--segments", "4", "--anchor", anchor.to_str().unwrap()])),
        ),
        ("curl https (http/1.1)", Box::new(|| curl(&https, &out))),
        (
            "nw get h3 (ngtcp2 gtlsserver)",
            Box::new(|| {
                nw_get(&ngtcp2_url, &["--http3-only", "--anchor", anchor.to_str().unwrap()])
            }),
        ),
        (
            "nw get h3 (own h3 server)",
            Box::new(|| {
                nw_get(&own_h3_url, &["--http3-only", "--anchor", anchor.to_str().unwrap()])
            }),
        ),
        ("nw get via tinyproxy", Box::new(|| nw_get(&url, &["-x", &via]))),
        ("curl via tinyproxy", Box::new(|| curl_via(&url))),
        (
            "nw get https via tinyproxy (CONNECT)",
            Box::new(|| nw_get(&https, &["-x", &via, "--anchor", anchor.to_str().unwrap()])),
        ),
        ("curl https via tinyproxy (CONNECT)", Box::new(|| curl_via(&https))),
        (
            "nw get https via https:// proxy (TLS in TLS)",
            Box::new(|| nw_get(&https, &["-x", &via_tls, "--anchor", anchor.to_str().unwrap()])),
        ),
        ("curl https via https:// proxy (TLS in TLS)", Box::new(|| curl_through(&https, &via_tls))),
        ("nw get via socks4:// (Dante)", Box::new(|| nw_get(&url, &["-x", &via_socks4]))),
        ("curl via socks4:// (Dante)", Box::new(|| curl_through(&url, &via_socks4))),
        (
            "upload: nw put (PUT to nginx)",
            Box::new(|| {
                let mut c = Command::new(nw);
                c.arg("put").arg(&source).arg(&up_url).env("NW_STORE", &store);
                c
            }),
        ),
        (
            "upload: curl -T (PUT to nginx)",
            Box::new(|| {
                let mut c = Command::new("curl");
                c.args(["-sS", "-f", "-o", "/dev/null", "-T"]).arg(&source).arg(&up_url);
                c
            }),
        ),
        // The same file piped in, of no known length: chunked over HTTP/1.1.
        (
            "upload: nw send -d @- (stdin piped, chunked)",
            Box::new(|| {
                let mut c = Command::new("sh");
                c.arg("-c").arg(r#"cat "$1" | "$2" send -X PUT -d @- "$3" > /dev/null"#).args([
                    "sh",
                    source.to_str().unwrap(),
                    nw,
                    &up_url,
                ]);
                c
            }),
        ),
        (
            "upload: curl -T - (stdin piped, chunked)",
            Box::new(|| {
                let mut c = Command::new("sh");
                c.arg("-c").arg(r#"cat "$1" | curl -sS -f -o /dev/null -T - "$2""#).args([
                    "sh",
                    source.to_str().unwrap(),
                    &up_url,
                ]);
                c
            }),
        ),
    ];
    // NW_BENCH_ONLY=a,b: only the rows whose names contain one of these (the 10 GB run).
    let only = std::env::var("NW_BENCH_ONLY").ok();
    let tools: Vec<_> = tools
        .into_iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|o| o.split(',').any(|p| name.contains(p))))
        .collect();
    let mut results: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> =
        vec![(Vec::new(), Vec::new(), Vec::new()); tools.len()];
    for _ in 0..runs {
        for (i, (_, make)) in tools.iter().enumerate() {
            let _ = (std::fs::remove_file(&out), std::fs::remove_file(&uploaded));
            if tools[i].0.starts_with("upload:") {
                // nginx writes each upload to the disk: the last run's writeback still going
                // would slow whichever row comes next (measured: the ratio swung from 0.5 to
                // 1.4 between runs without this).
                let _ = Command::new("sync").status();
            }
            let (wall, cpu, rss) = measure(make());
            if !tools[i].0.starts_with("limit: loopback") && !tools[i].0.starts_with("limit: dd") {
                let written = if tools[i].0.starts_with("upload:") { &uploaded } else { &out };
                assert_eq!(
                    std::fs::metadata(written).map(|m| m.len()).unwrap_or(0),
                    size_mb << 20,
                    "{} wrote the whole file",
                    tools[i].0
                );
            }
            results[i].0.push(size_mb as f64 * 1.048_576 / 1e3 / wall);
            results[i].1.push(cpu / (size_mb as f64 * 1.048_576 / 1e3));
            results[i].2.push(rss);
        }
    }
    let gbps: Vec<f64> = results.iter().map(|r| median(r.0.clone())).collect();
    let cpus: Vec<f64> = results.iter().map(|r| median(r.1.clone())).collect();
    let at = |name: &str, of: &[f64]| {
        tools.iter().position(|(n, _)| *n == name).map_or(f64::NAN, |i| of[i])
    };
    let find = |name: &str| at(name, &gbps);
    println!(
        "{size_mb} MiB from nginx on loopback into a file; medians of {runs} alternating runs"
    );
    println!("{:<46} {:>8} {:>12} {:>10}", "tool", "GB/s", "CPU s/GB", "peak MiB");
    for (i, (name, _)) in tools.iter().enumerate() {
        println!(
            "{name:<46} {:>8.2} {:>12.2} {:>10.0}",
            gbps[i],
            cpus[i],
            median(results[i].2.clone())
        );
    }
    let nw_plain = find("nw get (durable checkpoints)");
    println!(
        "ratios: nw/curl {:.2}, nw/aria2c-x1 {:.2}, nw/aria2c-x8 {:.2}, nw-https/curl-https {:.2}, durable/no-fsync {:.2}",
        nw_plain / find("curl"),
        nw_plain / find("aria2c -x1"),
        nw_plain / find("aria2c -x8"),
        find("nw get https (h2)")
            .max(find("nw get https --http1"))
            .max(find("nw get https --segments 4 (h2)"))
            / find("curl https (http/1.1)"),
        nw_plain / find("nw get --no-fsync"),
    );
    // What receiving and writing cost on their own: the floor of a download to a file (dd's
    // figure also pays for reading /dev/zero, so the sum is a little high).
    let (receive, write) = (
        at("limit: loopback HTTP, recv 1 MiB, discarded", &cpus),
        at("limit: dd 1 MiB O_DIRECT + fdatasync", &cpus),
    );
    println!(
        "CPU s/GB: receive {receive:.2} + direct write {write:.2} = {:.2}; least pipeline {:.2}; nw get durable {:.2}, --no-fsync {:.2}",
        receive + write,
        at("limit: recv + O_DIRECT writer thread", &cpus),
        at("nw get (durable checkpoints)", &cpus),
        at("nw get --no-fsync", &cpus),
    );
    println!(
        "uploads (nginx writes each to its disk): nw put/curl -T {:.2}; piped stdin: nw send/curl -T - {:.2}",
        find("upload: nw put (PUT to nginx)") / find("upload: curl -T (PUT to nginx)"),
        find("upload: nw send -d @- (stdin piped, chunked)")
            / find("upload: curl -T - (stdin piped, chunked)")
    );
    println!(
        "HTTP/3 next to HTTP/2: own server/nginx h2 {:.2}, gtlsserver/nginx h2 {:.2}",
        find("nw get h3 (own h3 server)") / find("nw get https (h2)"),
        find("nw get h3 (ngtcp2 gtlsserver)") / find("nw get https (h2)"),
    );
    println!(
        "through tinyproxy: nw/curl {:.2} (plain HTTP), {:.2} (HTTPS over CONNECT)",
        find("nw get via tinyproxy") / find("curl via tinyproxy"),
        find("nw get https via tinyproxy (CONNECT)") / find("curl https via tinyproxy (CONNECT)"),
    );
    println!(
        "through an https:// proxy (stunnel + tinyproxy): nw/curl {:.2}; through socks4:// (Dante): nw/curl {:.2}",
        find("nw get https via https:// proxy (TLS in TLS)")
            / find("curl https via https:// proxy (TLS in TLS)"),
        find("nw get via socks4:// (Dante)") / find("curl via socks4:// (Dante)"),
    );
    drop((server, ngtcp2, stunnel, tiny, dante, scratch));
}
