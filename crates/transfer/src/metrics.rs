//! Task metrics, the URLSessionTaskMetrics analogue: where the time went and what was used.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::http::{Connection, Protocol};

/// One request's timings (milliseconds from the task's start) and facts.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    /// The first address answer (absent for an IP literal or a cached name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_ms: Option<f64>,
    /// The connection was ready: TCP, and TLS when there is TLS.
    pub connected_ms: f64,
    /// The request went out.
    pub request_ms: f64,
    /// The response head arrived.
    pub first_byte_ms: f64,
    /// Receiving the body took this long.
    pub transfer_ms: f64,
    /// The HTTP version used.
    pub protocol: Protocol,
    /// Why HTTP/3 was tried and not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h3_fallback: Option<String>,
    /// The TLS version and cipher suite, over TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// The TLS handshake resumed an earlier session of this session's (absent without TLS,
    /// and over QUIC, where the stack does not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_resumed: Option<bool>,
    /// The address connected to: the proxy's, when there is a proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    /// The proxy the request went through (its URL without credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Whether the connection had carried an earlier request.
    pub reused: bool,
    /// Body bytes received in this run.
    pub received: u64,
    /// Bytes already on disk that this run resumed after.
    pub resumed_from: u64,
    /// The redirects answered before this request, in order: each hop's URL, status and
    /// timings (from the task's start, as this request's), as URLSessionTaskMetrics lists a
    /// transaction per request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<Hop>,
}

/// One redirect answered on the way to the final request.
#[derive(Debug, Clone, Serialize)]
pub struct Hop {
    /// The URL asked.
    pub url: String,
    /// Its redirect status (301, 302, 303, 307, 308).
    pub status: u16,
    /// How that request went (no body was read: `transfer_ms` and `received` are 0).
    #[serde(flatten)]
    pub metrics: Metrics,
}

impl Hop {
    /// The request to `url` on `conn`, which `status` answered: connected, asked and answered
    /// at these times from the task's start.
    pub(crate) fn new(
        url: String,
        status: u16,
        conn: &Connection,
        (connected, request, first_byte): (Duration, Duration, Duration),
    ) -> Self {
        Self {
            url,
            status,
            metrics: Metrics::new(conn, connected, request, first_byte, Duration::ZERO, 0, 0),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Metrics {
    pub(crate) fn new(
        conn: &Connection,
        connected: Duration,
        request: Duration,
        first_byte: Duration,
        transfer: Duration,
        received: u64,
        resumed_from: u64,
    ) -> Self {
        let report = &conn.report;
        let race_start = connected.saturating_sub(report.ready_after().unwrap_or_default());
        let dns = report.events.iter().find_map(|e| match e {
            nw_connection::happy_eyeballs::Event::Answer { at, .. } => Some(*at),
            _ => None,
        });
        Self {
            // A pooled connection's race happened for an earlier request.
            dns_ms: dns.filter(|_| !conn.reused).map(|d| ms(race_start + d)),
            connected_ms: ms(connected),
            request_ms: ms(request),
            first_byte_ms: ms(first_byte),
            transfer_ms: ms(transfer),
            protocol: conn.protocol,
            h3_fallback: conn.h3_fallback.clone(),
            tls: report.tls.as_ref().map(|t| format!("{} {}", t.version, t.cipher)),
            tls_resumed: report.tls.as_ref().and_then(|t| t.resumed),
            remote: report.connected,
            proxy: report.proxy.clone(),
            reused: conn.reused,
            received,
            resumed_from,
            redirects: Vec::new(),
        }
    }
}
