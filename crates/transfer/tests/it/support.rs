//! What the transfer tests share: scratch directories, test data, sessions and jobs.

use std::path::{Path, PathBuf};

use nw_transfer::download::{Download, Event};
use nw_transfer::{Configuration, Session};

/// nginx serving the scratch's `www/`, or the test fails saying why.
pub(crate) fn nginx(scratch: &Scratch, options: &nw_lab::nginx::Options) -> nw_lab::nginx::Nginx {
    nw_lab::nginx::Nginx::start(&scratch.www(), options)
        .unwrap_or_else(|e| panic!("nginx could not start: {e}"))
}

/// A scratch directory removed on drop.
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nw-transfer-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("www")).unwrap();
        Self(dir)
    }

    pub(crate) fn www(&self) -> PathBuf {
        self.0.join("www")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic, incompressible-looking bytes (SplitMix64).
pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub(crate) fn session(scratch: &Scratch, config: Configuration) -> Session {
    Session::new(config, &scratch.0.join("store.db")).unwrap()
}

pub(crate) fn job(url: String, dest: &Path, resume: bool) -> Download {
    Download {
        url,
        dest: dest.to_owned(),
        sha256: None,
        resume,
        force: false,
        segments: 1,
        headers: Vec::new(),
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Starts `job` and drops it once `at_least` bytes are written: an interruption mid-body.
#[allow(clippy::disallowed_methods, reason = "a test polls for the lock to be let go")]
pub(crate) async fn interrupt(session: &Session, job: &Download, at_least: u64) {
    let (tx, mut rx) = tokio::sync::watch::channel(0u64);
    let mut on = move |e: Event| {
        if let Event::Progress { written, .. } = e {
            let _ = tx.send(written);
        }
    };
    let download = session.download(job, &mut on);
    tokio::select! {
        r = download => panic!("the download ended before it could be interrupted: {r:?}"),
        _ = rx.wait_for(|w| *w >= at_least) => {}
    }
    // The writer and checkpoint threads finish on their own (as they would after a crash of
    // the caller): the last checkpoint is made when they let go of the `.part` lock.
    let part = nw_transfer::download::part_path(&std::path::absolute(&job.dest).unwrap());
    let file = std::fs::File::open(&part).unwrap();
    for _ in 0..500 {
        if file.try_lock().is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{} is still locked 5 s after the download was dropped", part.display());
}

/// A server certificate for 127.0.0.1 from a private CA, as PEM files in the scratch directory
/// and as DER, and the trust settings that anchor it.
pub(crate) struct Tls {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    issued: nw_trust::ca::Issued,
    pub(crate) trust: nw_trust::Options,
}

impl Tls {
    pub(crate) fn new(scratch: &Scratch) -> Self {
        let ca = nw_trust::ca::TestCa::new("nw-transfer test CA").unwrap();
        let issued = ca.server(&["127.0.0.1"]).unwrap();
        let (cert, key) = (scratch.0.join("cert.pem"), scratch.0.join("key.pem"));
        std::fs::write(&cert, &issued.chain_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        let trust = nw_trust::Options {
            anchors: vec![nw_trust::Anchor {
                der: ca.cert_der(),
                class: nw_trust::AnchorClass::Custom,
            }],
            ..nw_trust::Options::default()
        };
        Self { cert, key, issued, trust }
    }

    /// The chain and key, for a server in this process.
    pub(crate) fn der(
        &self,
    ) -> (Vec<rustls::pki_types::CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>)
    {
        use rustls::pki_types::pem::PemObject;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(self.issued.key_pem.as_bytes())
            .unwrap();
        (self.issued.chain.clone(), key)
    }
}

/// The embedded HTTP server, plain (no TLS), serving the scratch's `www` on loopback.
pub(crate) fn plain_server(
    rt: &tokio::runtime::Runtime,
    scratch: &Scratch,
) -> nw_serve::HttpServer {
    let options = nw_serve::Options::default();
    rt.block_on(nw_serve::HttpServer::start(loopback(), Some(&scratch.www()), None, &options))
        .unwrap()
}

/// 127.0.0.1 with port 0: a server picks a free port.
pub(crate) fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0))
}

/// What `started` says of a download: where it starts, over what, and why it restarted.
pub(crate) type Started = (u64, nw_transfer::Protocol, Option<nw_transfer::resume::RestartReason>);

/// Downloads `url` to `dest`, interrupted once `at` bytes are written, then resumed: the
/// offset the store had checkpointed in between, what the resumed run's `started` said, and
/// how it ended.
pub(crate) fn interrupt_and_resume(
    rt: &tokio::runtime::Runtime,
    session: &Session,
    url: &str,
    dest: &Path,
    at: u64,
) -> (u64, Option<Started>, Result<nw_transfer::Finished, nw_transfer::TransferError>) {
    rt.block_on(interrupt(session, &job(url.to_owned(), dest, false), at));
    let checkpoint = session.store().find(dest).unwrap().unwrap().offset;
    let mut started = None;
    let done = rt.block_on(session.download(&job(url.to_owned(), dest, true), &mut |e| {
        if let Event::Started { from, protocol, restarted, .. } = e {
            started = Some((from, protocol, restarted));
        }
    }));
    (checkpoint, started, done)
}

/// An HTTPS origin on port 443, as the pool and the Alt-Svc cache key them.
pub(crate) fn https_origin(host: &str) -> nw_http::altsvc::Origin {
    ("https".to_owned(), host.to_owned(), 443)
}

/// The start of virtual time for tests of pure machines: read once, then only added to.
#[allow(clippy::disallowed_methods, reason = "an origin for virtual time; never read again")]
pub(crate) fn virtual_start() -> std::time::Instant {
    std::time::Instant::now()
}
