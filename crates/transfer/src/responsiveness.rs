//! The responsiveness test's HTTP driving: nw-quality's [`Rpm`] machine decides; this opens
//! the load-generating connections, sends the probes, and tells the machine the bytes moved
//! and the probes' timings.
//!
//! - The configuration (draft-ietf-ippm-responsiveness, the JSON networkQuality reads) names a
//!   small object, a large one and an upload URL; [`Session::rpm_config`] reads it.
//! - A download flow is a connection of its own carrying one GET of the large object; an upload
//!   flow one POST of zeros that never ends. Bytes are counted as they are received, or as
//!   the request body hands them to the connection.
//! - A foreign probe is a new connection (its TCP and TLS handshake times from nw-connection's
//!   report) and one GET of the small object on it. A self probe is a GET of the small object
//!   on one of the loaded connections, side by side with the load: that needs a protocol that
//!   multiplexes (HTTP/2, which the embedded server and networkQuality's servers speak). Over
//!   HTTP/1.1 there are no self probes and responsiveness comes from foreign probes alone.
//! - Everything runs over TCP (HTTP/3 is not raced): the handshake times are part of the result.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use nw_connection::Parameters;
use nw_connection::Url;
use nw_quality::rpm::{Action, Direction, Outcome, ProbeKind, Rpm, Timing};
use tokio::task::{AbortHandle, JoinSet};

use crate::http::{self, Connection};
use crate::{Session, TransferError};

/// Where the test sends its requests: the configuration's three URLs.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// `small_https_download_url`: the probes' object.
    pub small: String,
    /// `large_https_download_url`: what download flows fetch.
    pub large: String,
    /// `https_upload_url`: where upload flows send.
    pub upload: String,
}

/// The configuration's size limit: it is a few hundred bytes of JSON.
const CONFIG_LIMIT: usize = 64 << 10;
/// What an upload flow sends, piece after piece: zeros, never read from anywhere.
static ZEROS: [u8; 256 << 10] = [0; 256 << 10];

#[derive(serde::Deserialize)]
struct Config {
    urls: Urls,
}

#[derive(serde::Deserialize)]
struct Urls {
    small_https_download_url: String,
    large_https_download_url: String,
    https_upload_url: String,
}

/// Where the test stands, once per interval.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Time since the test started.
    pub elapsed: Duration,
    /// The direction loaded now (`None` while measuring the idle link or once done).
    pub direction: Option<Direction>,
    /// The figures so far.
    pub outcome: Outcome,
}

/// What the flows and probes share with the loop.
#[derive(Default)]
struct Shared {
    /// Bytes moved since the loop last looked, per direction (download, upload).
    bytes: [AtomicU64; 2],
    /// Handles on loaded connections that multiplex, for self probes.
    loaded: Mutex<Vec<(Direction, Connection)>>,
    /// The first reason a flow or probe failed.
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn failed(&self, why: String) {
        let mut first = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if first.is_none() {
            tracing::debug!("responsiveness: {why}");
            *first = Some(why);
        }
    }

    fn counter(&self, direction: Direction) -> &AtomicU64 {
        &self.bytes[usize::from(direction == Direction::Upload)]
    }
}

/// A URL the test will load, with its connection parameters.
#[derive(Debug, Clone)]
struct Target {
    text: String,
    url: Url,
    params: Parameters,
}

impl Session {
    /// Reads the responsiveness configuration at `url` (networkQuality's format: `urls` with
    /// `small_https_download_url`, `large_https_download_url` and `https_upload_url`).
    pub async fn rpm_config(&self, url: &str) -> Result<Endpoints, TransferError> {
        let data = self.data(url, CONFIG_LIMIT).await?;
        if data.status != 200 {
            return Err(TransferError::Status {
                url: url.to_owned(),
                status: data.status,
                retry_after: None,
            });
        }
        let config: Config = serde_json::from_slice(&data.body).map_err(|e| {
            TransferError::Http(format!(
                "{url}: not a responsiveness configuration ({e}); it should be JSON with urls.small_https_download_url, urls.large_https_download_url and urls.https_upload_url"
            ))
        })?;
        let urls = config.urls;
        Ok(Endpoints {
            small: urls.small_https_download_url,
            large: urls.large_https_download_url,
            upload: urls.https_upload_url,
        })
    }

    /// `text` as a URL the policy allows, with TCP parameters for it.
    async fn target(&self, text: &str) -> Result<Target, TransferError> {
        let (url, security) = self.allowed(text)?;
        let params = self.routes(&url, security).await?.tcp;
        Ok(Target { text: text.to_owned(), url, params })
    }

    /// Runs the responsiveness test against `endpoints` with `params`; `progress` hears where
    /// it stands once per interval. Ends within `params.max_time` (and a few seconds' grace
    /// should a connection not let go).
    #[allow(clippy::disallowed_methods, reason = "the driver runs the machine on real time")]
    pub async fn responsiveness(
        &self,
        endpoints: &Endpoints,
        params: nw_quality::rpm::Params,
        mut progress: impl FnMut(&Progress),
    ) -> Result<Outcome, TransferError> {
        let small = self.target(&endpoints.small).await?;
        let large = self.target(&endpoints.large).await?;
        let upload = self.target(&endpoints.upload).await?;
        let interval = params.interval;
        let hard_stop = params.max_time + Duration::from_secs(5);
        let started = tokio::time::Instant::now();
        let mut rpm = Rpm::new(params);
        let shared = Arc::new(Shared::default());
        let mut tasks = JoinSet::new();
        let mut flows: Vec<(Direction, AbortHandle)> = Vec::new();
        let (report, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let mut direction = None;
        let mut next_progress = interval;
        let mut next_self = 0usize;
        loop {
            let now = started.elapsed();
            // Finished probes and flows: let go of them.
            while tasks.try_join_next().is_some() {}
            for d in [Direction::Download, Direction::Upload] {
                rpm.bytes(d, shared.counter(d).swap(0, Ordering::Relaxed));
            }
            let mut finished = false;
            for action in rpm.poll(now) {
                match action {
                    Action::OpenFlow(d) => {
                        direction = Some(d);
                        let target = if d == Direction::Download { &large } else { &upload };
                        let flow = load(target.clone(), d, self.resolver.clone(), shared.clone());
                        flows.push((d, tasks.spawn(flow)));
                    }
                    Action::StopFlows(d) => {
                        for (_, handle) in flows.extract_if(.., |(f, _)| *f == d) {
                            handle.abort();
                        }
                        lock(&shared.loaded).retain(|(f, _)| *f != d);
                        direction = None;
                    }
                    Action::Probe { id, kind } => {
                        let report = report.clone();
                        let conn = match kind {
                            ProbeKind::OnLoad => {
                                let loaded = lock(&shared.loaded);
                                next_self = next_self.wrapping_add(1);
                                let pick = loaded.get(next_self % loaded.len().max(1));
                                pick.and_then(|(_, c)| c.multiplexed())
                            }
                            ProbeKind::Idle | ProbeKind::Foreign => None,
                        };
                        let probe = probe(small.clone(), conn, self.resolver.clone());
                        let shared = shared.clone();
                        tasks.spawn(async move {
                            let timing = match probe.await {
                                Ok(t) => Some(t),
                                Err(e) => {
                                    shared.failed(format!("a probe failed: {e}"));
                                    None
                                }
                            };
                            let _ = report.send((id, timing));
                        });
                    }
                    Action::Finish => finished = true,
                }
            }
            if finished || rpm.done() || now >= hard_stop {
                break;
            }
            if now >= next_progress {
                next_progress = now + interval;
                progress(&Progress { elapsed: now, direction, outcome: rpm.outcome() });
            }
            let wake =
                rpm.poll_timeout().unwrap_or(now + interval).min(next_progress).min(hard_stop);
            tokio::select! {
                Some((id, timing)) = reports.recv() => rpm.probe(id, timing),
                () = tokio::time::sleep_until(started + wake) => {}
            }
        }
        tasks.abort_all();
        let outcome = rpm.outcome();
        progress(&Progress {
            elapsed: started.elapsed(),
            direction: None,
            outcome: outcome.clone(),
        });
        if outcome.dl_throughput == 0.0 && outcome.ul_throughput == 0.0 && outcome.probes == 0 {
            let why = lock(&shared.failure).take().unwrap_or_else(|| "nothing came back".into());
            return Err(TransferError::Http(format!(
                "the responsiveness test measured nothing: {why}"
            )));
        }
        Ok(outcome)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One load-generating flow: a connection of its own, kept busy until aborted.
async fn load(
    target: Target,
    direction: Direction,
    resolver: Arc<dyn nw_connection::Resolve>,
    shared: Arc<Shared>,
) {
    let flow = async {
        let mut conn = http::connect(&target.url, &target.params, None, resolver, 1).await?;
        if let Some(handle) = conn.multiplexed() {
            lock(&shared.loaded).push((direction, handle));
        }
        let counter = shared.clone();
        let mut response = match direction {
            Direction::Download => conn.get(&target.url, &[]).await?,
            Direction::Upload => {
                let zeros = futures_util::stream::repeat_with(move || {
                    let piece = Bytes::from_static(&ZEROS);
                    counter
                        .counter(Direction::Upload)
                        .fetch_add(piece.len() as u64, Ordering::Relaxed);
                    Ok::<_, std::io::Error>(Frame::data(piece))
                });
                let body = StreamBody::new(zeros).boxed();
                let headers = [("content-type", "application/octet-stream".to_owned())];
                conn.request(hyper::Method::POST, &target.url, &headers, Some(body)).await?
            }
        };
        if response.status != 200 {
            return Err(TransferError::status_of(&target.text, &response));
        }
        while let Some(piece) = response.body.data().await {
            let n = piece?.len() as u64;
            if direction == Direction::Download {
                shared.counter(direction).fetch_add(n, Ordering::Relaxed);
            }
        }
        Ok::<_, TransferError>(())
    };
    if let Err(e) = flow.await {
        shared.failed(format!("a {direction:?} flow failed: {e}").to_lowercase());
    }
}

/// One probe: on `conn` (a loaded connection) when given, else on a new connection.
#[allow(clippy::disallowed_methods, reason = "a probe is timed on real time")]
async fn probe(
    target: Target,
    conn: Option<Connection>,
    resolver: Arc<dyn nw_connection::Resolve>,
) -> Result<Timing, TransferError> {
    let (mut conn, handshakes) = match conn {
        Some(c) => (c, None),
        None => {
            let c = http::connect(&target.url, &target.params, None, resolver, 1).await?;
            let handshakes = c.report.handshakes().unwrap_or_default();
            (c, Some(handshakes))
        }
    };
    let asked = tokio::time::Instant::now();
    let mut response = conn.get(&target.url, &[]).await?;
    while let Some(piece) = response.body.data().await {
        let _: Bytes = piece?;
    }
    if response.status != 200 {
        return Err(TransferError::status_of(&target.text, &response));
    }
    let http = asked.elapsed();
    Ok(match handshakes {
        Some((tcp, tls)) => Timing::Foreign { tcp, tls, http },
        None => Timing::OnLoad { http },
    })
}
