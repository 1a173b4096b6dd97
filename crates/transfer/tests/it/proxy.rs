//! Downloads through the conditioner's loopback proxy (no root): a connection reset in the
//! middle of the body fails the download with its checkpoint kept, and the resume is
//! byte-exact; a connection that stalls fails after the request timeout instead of hanging, for
//! a download and for an upload alike.

use std::time::{Duration, Instant};

use nw_conditioner::Profile;
use nw_conditioner::{Faults, Proxy, ProxyConfig};
use nw_transfer::tasks::Upload;
use nw_transfer::{Configuration, Event, Http3, Method};

use crate::support::{Scratch, job, loopback, pattern, plain_server, runtime, session};

#[test]
fn proxy_a_reset_mid_body_keeps_the_checkpoint_and_a_stall_times_out() {
    let scratch = Scratch::new("proxy-faults");
    let data = pattern(16 << 20, 51);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let rt = runtime();
    let origin = plain_server(&rt, &scratch);
    let faults = Faults { reset_after: Some(5 << 20), ..Faults::default() };
    let config = ProxyConfig { faults, ..ProxyConfig::new(Profile::default(), Profile::default()) };
    let proxy = Proxy::tcp(origin.local_addr(), config).unwrap();
    let url = format!("http://{}/file.bin", proxy.local_addr());
    let config = Configuration {
        allow_http: true,
        http3: Http3::Off,
        checkpoint_bytes: 1 << 20,
        request_timeout: Duration::from_secs(2),
        ..Configuration::default()
    };
    let first = session(&scratch, config.clone());

    // Reset after 5 MiB (headers included): the download fails, and says why.
    let dest = scratch.0.join("reset.bin");
    let e = rt.block_on(first.download(&job(url.clone(), &dest, false), &mut |_| {}));
    let e = e.unwrap_err();
    eprintln!("through a reset after 5 MiB: {e}");
    assert!(e.transient(), "a reset is worth retrying: {e:?}");
    let offset = first.store().find(&dest).unwrap().unwrap().offset;
    // How much arrives before the reset depends on how far the reader got (a reset discards
    // what the kernel still held), but every byte that arrived is checkpointed, the last
    // partial chunk included.
    assert!(offset > 0 && offset <= 5 << 20, "checkpointed {offset} bytes");
    assert!(e.to_string().contains(&format!("after {offset} bytes of the body")), "{offset}: {e}");
    assert!(!dest.exists(), "never a half-written file");

    // The fault gone, the resume fetches the rest and the file is byte-exact.
    proxy.set_faults(Faults::default());
    let done = rt.block_on(first.download(&job(url.clone(), &dest, true), &mut |_| {})).unwrap();
    assert_eq!(done.metrics.received, data.len() as u64 - offset);
    assert!(std::fs::read(&dest).unwrap() == data, "the resumed file is byte-exact");

    // A stall after 3 MiB: the download fails once no byte came for the request timeout.
    // Faults apply to new connections, so a new session, with a pool of its own.
    proxy.set_faults(Faults { stall_after: Some(3 << 20), ..Faults::default() });
    let session = session(&scratch, config);
    let dest = scratch.0.join("stall.bin");
    #[allow(clippy::disallowed_methods, reason = "the test times the failure")]
    let started = Instant::now();
    let e = rt.block_on(session.download(&job(url, &dest, false), &mut |_| {})).unwrap_err();
    let took = started.elapsed();
    eprintln!("through a stall after 3 MiB: failed after {took:?}: {e}");
    assert!(e.to_string().starts_with("timed out"), "{e:?}");
    assert!(e.to_string().contains("resuming the download continues from there"), "{e}");
    assert_eq!(e.code(), nw_transfer::Code::TimedOut);
    assert!(took < Duration::from_secs(8), "the 2 s timeout fired, no hang: {took:?}");
}

#[test]
fn proxy_an_upload_or_a_data_task_into_a_stall_times_out_instead_of_hanging() {
    let scratch = Scratch::new("proxy-upload-stall");
    let source = scratch.0.join("up.bin");
    std::fs::write(&source, pattern(32 << 20, 52)).unwrap();
    let rt = runtime();
    let origin = plain_server(&rt, &scratch);
    // Accepted, then never read from nor answered.
    let faults = Faults { stall_after: Some(0), ..Faults::default() };
    let config = ProxyConfig { faults, ..ProxyConfig::new(Profile::default(), Profile::default()) };
    let proxy = Proxy::tcp(origin.local_addr(), config).unwrap();
    let config = Configuration {
        allow_http: true,
        http3: Http3::Off,
        request_timeout: Duration::from_secs(2),
        ..Configuration::default()
    };
    let session = session(&scratch, config);
    let job = Upload {
        url: format!("http://{}/slurp", proxy.local_addr()),
        source,
        method: Method::PUT,
        content_type: "application/octet-stream".into(),
        headers: Vec::new(),
    };
    let mut last = 0;
    #[allow(clippy::disallowed_methods, reason = "the test times the failure")]
    let started = Instant::now();
    let e = rt
        .block_on(session.upload_observed(&job, &mut |e| {
            if let Event::Progress { written, .. } = e {
                last = written;
            }
        }))
        .unwrap_err();
    let took = started.elapsed();
    eprintln!("an upload into a stall: failed after {took:?} with {last} bytes handed over: {e}");
    assert!(e.to_string().starts_with("timed out") && e.transient(), "{e:?}");
    assert!(e.to_string().contains("no progress for 2 s"), "{e}");
    assert!(last < 32 << 20, "the stalled peer took at most the socket buffers: {last}");
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "{took:?}");

    // A data task whose answer stalls after its headers and 100 kB of body: a timeout too.
    std::fs::write(scratch.www().join("small.bin"), pattern(1 << 20, 53)).unwrap();
    proxy.set_faults(Faults { stall_after: Some(100_000), ..Faults::default() });
    let url = format!("http://{}/small.bin", proxy.local_addr());
    #[allow(clippy::disallowed_methods, reason = "the test times the failure")]
    let started = Instant::now();
    let e = rt.block_on(session.data(&url, 2 << 20)).unwrap_err();
    let took = started.elapsed();
    eprintln!("a data task into a stall: failed after {took:?}: {e}");
    assert!(e.to_string().starts_with("timed out") && e.to_string().contains("of the answer"));
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "{took:?}");
}

/// A file that shrinks while it is being uploaded fails the upload at once, naming the file and
/// what happened, over HTTP/1.1 and HTTP/2, instead of waiting for an answer the server never
/// sends (it still waits for the length it was promised) until the request timeout.
#[test]
fn proxy_an_upload_whose_file_shrinks_fails_at_once_saying_so() {
    let scratch = Scratch::new("proxy-upload-shrinks");
    let rt = runtime();
    let options = nw_serve::Options::default();
    let embedded = rt.block_on(nw_serve::Embedded::start(loopback(), None, &options)).unwrap();
    // 40 Mbit/s toward the server: the 32 MiB would take about 7 s.
    let up = Profile { rate_bps: Some(40_000_000), ..Profile::default() };
    let proxy = Proxy::tcp(embedded.http.local_addr(), ProxyConfig::new(up, Profile::default()));
    let proxy = proxy.unwrap();
    for (http2, protocol) in [(false, "HTTP/1.1"), (true, "HTTP/2")] {
        let source = scratch.0.join(format!("up-{}.bin", u8::from(http2)));
        std::fs::write(&source, pattern(32 << 20, 54)).unwrap();
        let config = Configuration {
            trust: embedded.trust(),
            http2,
            http3: Http3::Off,
            request_timeout: Duration::from_secs(30),
            ..Configuration::default()
        };
        let session = nw_transfer::Session::ephemeral(config).unwrap();
        let job = Upload {
            url: format!("https://{}/slurp", proxy.local_addr()),
            source: source.clone(),
            method: Method::PUT,
            content_type: "application/octet-stream".into(),
            headers: Vec::new(),
        };
        let mut cut = None;
        #[allow(clippy::disallowed_methods, reason = "the test times the failure")]
        let started = Instant::now();
        let e = rt
            .block_on(session.upload_observed(&job, &mut |e| {
                // At the first progress report, the file is emptied.
                if let Event::Progress { written, .. } = e
                    && cut.is_none()
                {
                    let file = std::fs::OpenOptions::new().write(true).open(&source).unwrap();
                    file.set_len(0).unwrap();
                    cut = Some(written);
                }
            }))
            .unwrap_err();
        let took = started.elapsed();
        eprintln!("{protocol}: emptied after {cut:?} bytes; failed after {took:?}: {e}");
        assert!(cut.is_some_and(|n| n < 32 << 20), "{protocol}: emptied mid-upload: {cut:?}");
        let text = e.to_string();
        assert!(text.contains("up-") && text.contains("changed mid-upload"), "{protocol}: {e}");
        assert!(took < Duration::from_secs(10), "{protocol}: not the 30 s timeout: {took:?}");
    }
}

/// An upload whose source is a named pipe nothing writes to fails at once, saying the file is
/// not a regular one, instead of holding the runtime's thread in open(2) for ever.
#[test]
fn proxy_an_upload_of_a_pipe_fails_at_once_instead_of_waiting_for_a_writer() {
    let scratch = Scratch::new("upload-pipe");
    let pipe = scratch.0.join("pipe");
    let c = std::ffi::CString::new(pipe.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let job = Upload {
        url: "http://127.0.0.1:9/up".into(),
        source: pipe,
        method: Method::PUT,
        content_type: "application/octet-stream".into(),
        headers: Vec::new(),
    };
    // On a thread of its own: a runtime stuck in open(2) could not even time out.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let session = nw_transfer::Session::ephemeral(Configuration::default()).unwrap();
        let _ = tx.send(runtime().block_on(session.upload(&job)).map(|_| ()));
    });
    let sent = rx.recv_timeout(Duration::from_secs(10));
    let e = sent.expect("the upload waited on the pipe").unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
}
