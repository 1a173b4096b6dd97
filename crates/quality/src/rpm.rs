//! The responsiveness test (draft-ietf-ippm-responsiveness, "Responsiveness under Working
//! Conditions") as a pure machine: it says when to open load-generating flows and send probes,
//! is told the bytes moved and the probes' timings, detects saturation, and computes RPM.
//!
//! The method, with the draft's default parameters (§4.4; §4.1 for the formula):
//! - Load-generating flows (a large download, or an upload) are added one per interval
//!   (ID = 1 s) while the goodput is not stable, up to MNP = 16 per direction.
//! - Every interval the instantaneous aggregate goodput is recorded; its moving average over the
//!   last MAD = 4 intervals is stable when the standard deviation of the last MAD moving
//!   averages is within SDT = 5% of their mean.
//! - Probes run all along: foreign probes on new connections (TCP, TLS and HTTP times) and
//!   self probes on the loaded connections (HTTP time). Responsiveness is stable by the same
//!   rule, over per-interval values.
//! - Responsiveness = 60000 / (1/6 · (TM(tcp_f) + TM(tls_f) + TM(http_f)) + 1/2 · TM(http_s))
//!   with times in ms and TM the mean of the lowest 95% (the draft's trimmed mean), over the
//!   probes of the last MAD intervals.
//!
//! Ours: one direction after the other (download, then upload), each with half the time left;
//! a base RTT from five foreign probes on the idle link first (what networkQuality reports as
//! `base_rtt`); a probe round (one foreign, one self) every 100 ms, at most 20 probes
//! outstanding — well under the draft's limit of 100 probes a second.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

/// The test's parameters.
#[derive(Debug, Clone)]
pub struct Params {
    /// ID: how often goodput and responsiveness are evaluated.
    pub interval: Duration,
    /// MAD: the moving-average distance, in intervals.
    pub mad: usize,
    /// SDT: stable when the standard deviation is within this share of the mean.
    pub sdt: f64,
    /// TMP: the share of the lowest samples the trimmed mean keeps.
    pub trim: f64,
    /// MNP: the most load-generating flows per direction.
    pub max_flows: usize,
    /// A probe round (one foreign, one self) this often.
    pub probe_every: Duration,
    /// The most probes outstanding at once.
    pub max_outstanding: usize,
    /// Foreign probes on the idle link, for the base RTT.
    pub idle_probes: usize,
    /// The whole test ends within this.
    pub max_time: Duration,
    /// Which directions are measured, in order.
    pub directions: Vec<Direction>,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            mad: 4,
            sdt: 0.05,
            trim: 0.95,
            max_flows: 16,
            probe_every: Duration::from_millis(100),
            max_outstanding: 20,
            idle_probes: 5,
            max_time: Duration::from_secs(20),
            directions: vec![Direction::Download, Direction::Upload],
        }
    }
}

/// Which way the load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Server to client.
    Download,
    /// Client to server.
    Upload,
}

/// What the driver is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open one more load-generating flow in this direction (and keep it busy).
    OpenFlow(Direction),
    /// Stop every load-generating flow of this direction.
    StopFlows(Direction),
    /// Send a probe and report its timings with [`Rpm::probe`] under `id`.
    Probe {
        /// The probe's number, for `Rpm::probe`.
        id: u64,
        /// Where it goes.
        kind: ProbeKind,
    },
    /// The test is over: [`Rpm::outcome`] has the result.
    Finish,
}

/// Where a probe goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// On a new connection, with nothing else going on (base RTT).
    Idle,
    /// On a new connection while the load runs.
    Foreign,
    /// On one of the load-generating connections.
    OnLoad,
}

/// A probe's timings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timing {
    /// A new connection: the TCP handshake, the TLS handshake (when there was TLS), and the
    /// HTTP request to the first byte of its response.
    Foreign {
        /// The TCP handshake.
        tcp: Duration,
        /// The TLS handshake, when there was TLS.
        tls: Option<Duration>,
        /// The request to the first byte of its response.
        http: Duration,
    },
    /// A request on a loaded connection.
    OnLoad {
        /// The request to the first byte of its response.
        http: Duration,
    },
}

/// The result, with the key names networkQuality's JSON uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outcome {
    /// Bits per second.
    pub dl_throughput: f64,
    /// Bits per second.
    pub ul_throughput: f64,
    /// Round trips per minute under working conditions, both directions' probes together.
    pub responsiveness: f64,
    /// Round trips per minute from the download's probes.
    pub dl_responsiveness: f64,
    /// Round trips per minute from the upload's probes.
    pub ul_responsiveness: f64,
    /// The idle link's round trip, in ms.
    pub base_rtt: f64,
    /// Load-generating flows at the end of the download.
    pub dl_flows: usize,
    /// Load-generating flows at the end of the upload.
    pub ul_flows: usize,
    /// Whether goodput and responsiveness became stable (otherwise the time ran out).
    pub dl_saturated: bool,
    /// The same for the upload.
    pub ul_saturated: bool,
    /// Probes that came back.
    pub probes: usize,
    /// What the responsiveness is made of (trimmed means over the probes it counts, in ms):
    /// foreign probes' TCP handshake, TLS handshake and request, and self probes' request.
    pub foreign_tcp_ms: f64,
    /// See `foreign_tcp_ms`.
    pub foreign_tls_ms: f64,
    /// See `foreign_tcp_ms`.
    pub foreign_http_ms: f64,
    /// See `foreign_tcp_ms`.
    pub self_http_ms: f64,
}

#[derive(Debug)]
enum Phase {
    Idle,
    /// Leg `index` runs until it is stable or `deadline` comes.
    Load {
        index: usize,
        deadline: Duration,
    },
    Done,
}

/// Probes of one interval: foreign components and self times, in ms.
#[derive(Debug, Default, Clone)]
struct Probes {
    tcp: Vec<f64>,
    tls: Vec<f64>,
    http_f: Vec<f64>,
    http_s: Vec<f64>,
}

impl Probes {
    fn extend(&mut self, other: &Self) {
        self.tcp.extend(&other.tcp);
        self.tls.extend(&other.tls);
        self.http_f.extend(&other.http_f);
        self.http_s.extend(&other.http_s);
    }

    /// RPM from these probes, when there are foreign ones. Without self probes (loaded
    /// connections over HTTP/1.1 cannot carry them) the foreign ones stand for the whole.
    fn rpm(&self, trim: f64) -> Option<f64> {
        let foreign = [&self.tcp, &self.tls, &self.http_f]
            .iter()
            .filter_map(|v| trimmed_mean(v, trim))
            .collect::<Vec<_>>();
        if foreign.is_empty() {
            return None;
        }
        // The draft's 1/6 per foreign component is 1/2 shared over three; with TLS absent the
        // half is shared over the two there are.
        let foreign = foreign.iter().sum::<f64>() / foreign.len() as f64;
        let ms = match trimmed_mean(&self.http_s, trim) {
            Some(own) => 0.5 * foreign + 0.5 * own,
            None => foreign,
        };
        (ms > 0.0).then(|| 60_000.0 / ms)
    }
}

/// The mean of the lowest `keep` share of `values`.
pub fn trimmed_mean(values: &[f64], keep: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    // The count kept, rounded up: ceil(len · keep) ≤ len, so it fits.
    #[allow(clippy::cast_possible_truncation, reason = "bounded by the length, see above")]
    let n = ((v.len() as f64 * keep.clamp(0.0, 1.0)).ceil() as usize).clamp(1, v.len());
    Some(v[..n].iter().sum::<f64>() / n as f64)
}

/// Stable: at least `mad` values, whose standard deviation is within `sdt` of their mean.
fn stable(values: &VecDeque<f64>, mad: usize, sdt: f64) -> bool {
    if values.len() < mad || mad == 0 {
        return false;
    }
    let last: Vec<f64> = values.iter().rev().take(mad).copied().collect();
    let mean = last.iter().sum::<f64>() / mad as f64;
    let var = last.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / mad as f64;
    mean > 0.0 && var.sqrt() <= sdt * mean
}

/// One direction's measurements.
#[derive(Debug, Default)]
struct Leg {
    flows: usize,
    bytes: u64,
    instantaneous: VecDeque<f64>,
    goodput: VecDeque<f64>,
    responsiveness: VecDeque<f64>,
    /// Probes per interval, the last MAD kept.
    probes: VecDeque<Probes>,
    current: Probes,
    saturated: bool,
}

/// The machine.
#[derive(Debug)]
pub struct Rpm {
    params: Params,
    phase: Phase,
    next_interval: Duration,
    /// When the current interval began.
    interval_start: Duration,
    next_probe: Duration,
    next_id: u64,
    outstanding: std::collections::BTreeMap<u64, (ProbeKind, usize)>,
    idle: Vec<f64>,
    legs: Vec<Leg>,
    /// Per direction, the probes of its last MAD intervals.
    finals: Vec<Probes>,
    probes: usize,
    started: Option<Duration>,
}

impl Rpm {
    /// A test that has not started; drive it with its `handle_*` and `poll_*` methods.
    pub fn new(params: Params) -> Self {
        let legs = params.directions.iter().map(|_| Leg::default()).collect();
        Self {
            params,
            phase: Phase::Idle,
            next_interval: Duration::ZERO,
            interval_start: Duration::ZERO,
            next_probe: Duration::ZERO,
            next_id: 0,
            outstanding: Default::default(),
            idle: Vec::new(),
            legs,
            finals: Vec::new(),
            probes: 0,
            started: None,
        }
    }

    /// What to do at `now`. Call at every [`Self::poll_timeout`] and after every report.
    pub fn poll(&mut self, now: Duration) -> Vec<Action> {
        let started = *self.started.get_or_insert(now);
        let mut actions = Vec::new();
        match self.phase {
            Phase::Idle => {
                let sent = usize::try_from(self.next_id).unwrap_or(usize::MAX);
                if sent < self.params.idle_probes && self.outstanding.is_empty() {
                    actions.push(self.send_probe(ProbeKind::Idle, usize::MAX));
                }
                let time_out = now.saturating_sub(started) >= self.params.max_time / 4;
                if time_out
                    || (self.idle.len() >= self.params.idle_probes && self.outstanding.is_empty())
                {
                    self.outstanding.clear();
                    actions.extend(self.begin(0, now));
                }
            }
            Phase::Load { index, deadline } => {
                let dir = self.params.directions[index];
                if now >= self.next_interval {
                    // The interval is what really elapsed: a driver that wakes late must not
                    // make the bytes of a longer span look like a faster link.
                    let secs = now.saturating_sub(self.interval_start).as_secs_f64();
                    self.interval_start = now;
                    self.next_interval = now + self.params.interval;
                    let leg = &mut self.legs[index];
                    leg.instantaneous.push_back(leg.bytes as f64 * 8.0 / secs.max(1e-3));
                    leg.bytes = 0;
                    let mad = self.params.mad;
                    let recent = leg.instantaneous.iter().rev().take(mad);
                    let ma = recent.clone().sum::<f64>() / recent.count().max(1) as f64;
                    leg.goodput.push_back(ma);
                    let interval_probes = std::mem::take(&mut leg.current);
                    if let Some(r) = interval_probes.rpm(self.params.trim) {
                        leg.responsiveness.push_back(r);
                    }
                    leg.probes.push_back(interval_probes);
                    while leg.probes.len() > mad {
                        leg.probes.pop_front();
                    }
                    let goodput_stable = stable(&leg.goodput, mad, self.params.sdt);
                    let rpm_stable = stable(&leg.responsiveness, mad, self.params.sdt);
                    if goodput_stable && rpm_stable {
                        leg.saturated = true;
                    }
                    if !goodput_stable && leg.flows < self.params.max_flows {
                        leg.flows += 1;
                        actions.push(Action::OpenFlow(dir));
                    }
                    if leg.saturated {
                        actions.push(Action::StopFlows(dir));
                        actions.extend(self.begin(index + 1, now));
                    }
                }
                if now >= deadline
                    && matches!(self.phase, Phase::Load { index: i, .. } if i == index)
                {
                    actions.push(Action::StopFlows(dir));
                    actions.extend(self.begin(index + 1, now));
                }
                if matches!(self.phase, Phase::Load { .. }) {
                    while now >= self.next_probe {
                        self.next_probe += self.params.probe_every;
                        if self.outstanding.len() + 2 <= self.params.max_outstanding {
                            actions.push(self.send_probe(ProbeKind::Foreign, index));
                            actions.push(self.send_probe(ProbeKind::OnLoad, index));
                        }
                    }
                }
            }
            Phase::Done => {}
        }
        actions
    }

    /// Starts leg `index` (or finishes).
    fn begin(&mut self, index: usize, now: Duration) -> Vec<Action> {
        if let Phase::Load { index: i, .. } = self.phase {
            let leg = &self.legs[i];
            let mut last = Probes::default();
            for p in &leg.probes {
                last.extend(p);
            }
            self.finals.push(last);
        }
        self.outstanding.retain(|_, (kind, _)| *kind == ProbeKind::Idle);
        if index >= self.params.directions.len() {
            self.phase = Phase::Done;
            return vec![Action::Finish];
        }
        // Each leg gets an equal share of the time left.
        let end = self.started.unwrap_or(now) + self.params.max_time;
        let legs_left = u32::try_from(self.params.directions.len() - index).unwrap_or(1);
        let deadline = now + end.saturating_sub(now) / legs_left.max(1);
        self.phase = Phase::Load { index, deadline };
        self.next_interval = now + self.params.interval;
        self.interval_start = now;
        self.next_probe = now;
        self.legs[index].flows = 1;
        let mut actions = vec![Action::OpenFlow(self.params.directions[index])];
        actions.extend(self.poll(now));
        actions
    }

    fn send_probe(&mut self, kind: ProbeKind, leg: usize) -> Action {
        let id = self.next_id;
        self.next_id += 1;
        self.outstanding.insert(id, (kind, leg));
        Action::Probe { id, kind }
    }

    /// `bytes` moved by the load-generating flows of `direction`.
    pub fn bytes(&mut self, direction: Direction, bytes: u64) {
        if let Phase::Load { index, .. } = self.phase
            && self.params.directions[index] == direction
        {
            self.legs[index].bytes += bytes;
        }
    }

    /// Probe `id` came back with `timing` (or failed: `None`, which counts as nothing).
    pub fn probe(&mut self, id: u64, timing: Option<Timing>) {
        let Some((kind, leg)) = self.outstanding.remove(&id) else { return };
        let Some(timing) = timing else { return };
        self.probes += 1;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        match (kind, timing) {
            (ProbeKind::Idle, Timing::Foreign { http, .. }) => self.idle.push(ms(http)),
            (ProbeKind::Foreign, Timing::Foreign { tcp, tls, http }) => {
                if let Some(l) = self.legs.get_mut(leg) {
                    l.current.tcp.push(ms(tcp));
                    l.current.tls.extend(tls.map(ms));
                    l.current.http_f.push(ms(http));
                }
            }
            (ProbeKind::OnLoad, Timing::OnLoad { http } | Timing::Foreign { http, .. }) => {
                if let Some(l) = self.legs.get_mut(leg) {
                    l.current.http_s.push(ms(http));
                }
            }
            _ => {}
        }
    }

    /// When to poll next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        match self.phase {
            Phase::Idle => self.started.map(|s| s + self.params.max_time / 4),
            Phase::Load { deadline, .. } => {
                Some(self.next_interval.min(self.next_probe).min(deadline))
            }
            Phase::Done => None,
        }
    }

    /// Whether the test is over.
    pub fn done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// The result so far (final once [`Action::Finish`] came).
    pub fn outcome(&self) -> Outcome {
        let trim = self.params.trim;
        let mut all = Probes::default();
        for p in &self.finals {
            all.extend(p);
        }
        let tm = |v: &[f64]| trimmed_mean(v, trim).unwrap_or(0.0);
        let mut out = Outcome {
            foreign_tcp_ms: tm(&all.tcp),
            foreign_tls_ms: tm(&all.tls),
            foreign_http_ms: tm(&all.http_f),
            self_http_ms: tm(&all.http_s),
            responsiveness: all.rpm(trim).unwrap_or(0.0),
            base_rtt: median(&self.idle).unwrap_or(0.0),
            probes: self.probes,
            ..Outcome::default()
        };
        for (i, dir) in self.params.directions.iter().enumerate() {
            let leg = &self.legs[i];
            let goodput = leg.goodput.back().copied().unwrap_or(0.0);
            let rpm = self.finals.get(i).and_then(|p| p.rpm(trim)).unwrap_or(0.0);
            match dir {
                Direction::Download => {
                    (out.dl_throughput, out.dl_responsiveness) = (goodput, rpm);
                    (out.dl_flows, out.dl_saturated) = (leg.flows, leg.saturated);
                }
                Direction::Upload => {
                    (out.ul_throughput, out.ul_responsiveness) = (goodput, rpm);
                    (out.ul_flows, out.ul_saturated) = (leg.flows, leg.saturated);
                }
            }
        }
        out
    }
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}
