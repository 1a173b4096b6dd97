//! Resume decisions, as pure logic: what to ask for given what is already on disk, and what a
//! response means for the bytes already there.
//!
//! The rule that keeps a resumed file correct: every ranged request carries `If-Range` with a
//! strong validator, so a server whose file changed answers with the whole new file (200)
//! instead of a range of it (RFC 9110 §13.1.5). A weak ETag may not be used there, and a
//! Last-Modified date only when it is strong — at least a second older than the response's
//! `Date` (RFC 9110 §8.8.2.2). Without a usable validator nothing is resumed: the download
//! restarts from zero and says so.
//!
//! A validator can stay the same while the bytes change (nginx's ETag is the mtime and size,
//! so a file rewritten within the same second at the same length keeps it). So a resume also
//! asks again for up to [`OVERLAP`] bytes before its checkpoint and compares them with the
//! bytes on disk; a difference restarts the download ([`RestartReason::ContentChanged`]). And
//! a range whose total differs from the recorded length restarts it too. On a slow link it
//! asks for less ([`overlap_for`]): 64 KiB again at 20 KB/s is three seconds, and a load
//! allowed two seconds that spends them all on bytes it had would never move on.

/// How many bytes before a checkpoint a resume fetches again to compare with the disk, at
/// most.
pub const OVERLAP: u64 = 64 << 10;

/// The fewest it fetches again, however slow the link.
pub const OVERLAP_MIN: u64 = 4 << 10;

/// How many bytes before its checkpoint a resume asks again, given the bytes per second the
/// download last received (`rate`) and the time the whole load is allowed (`budget`): what the
/// link carries in a second, or in a tenth of the budget when that is shorter, between
/// [`OVERLAP_MIN`] and [`OVERLAP`]; [`OVERLAP`] when no rate was measured.
pub fn overlap_for(rate: Option<u64>, budget: Option<Duration>) -> u64 {
    let Some(rate) = rate else { return OVERLAP };
    let spend_ms = budget.map_or(1000, |b| (b.as_millis() / 10).min(1000));
    let bytes = u128::from(rate) * spend_ms / 1000;
    u64::try_from(bytes).unwrap_or(u64::MAX).clamp(OVERLAP_MIN, OVERLAP)
}

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What identifies one version of the resource, as the server gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Validator {
    /// A strong entity tag, quotes included (`"5f1-64a"`).
    Etag(String),
    /// A Last-Modified date that is strong (an HTTP-date, as sent).
    LastModified(String),
}

impl Validator {
    /// The strong validator a response offers, if any: its ETag unless weak, else its
    /// Last-Modified when that is at least a second before its Date.
    pub fn from_response(
        etag: Option<&str>,
        last_modified: Option<&str>,
        date: Option<&str>,
    ) -> Result<Self, Unusable> {
        if let Some(tag) = etag.map(str::trim) {
            if tag.starts_with("W/") {
                return Err(Unusable::WeakEtag(tag.to_owned()));
            }
            if tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"') {
                return Ok(Self::Etag(tag.to_owned()));
            }
        }
        let Some(modified) = last_modified.map(str::trim) else { return Err(Unusable::None) };
        let parsed = httpdate::parse_http_date(modified);
        let date = date.and_then(|d| httpdate::parse_http_date(d.trim()).ok());
        match (parsed, date) {
            (Ok(m), Some(d))
                if d.duration_since(m).unwrap_or_default() >= Duration::from_secs(1) =>
            {
                Ok(Self::LastModified(modified.to_owned()))
            }
            (Ok(_), _) => Err(Unusable::RecentDate(modified.to_owned())),
            (Err(_), _) => Err(Unusable::None),
        }
    }

    /// The value for `If-Range`.
    pub fn header(&self) -> &str {
        match self {
            Self::Etag(v) | Self::LastModified(v) => v,
        }
    }

    /// Whether a response's headers name this same version (strong comparison).
    pub fn matches(&self, etag: Option<&str>, last_modified: Option<&str>) -> bool {
        match self {
            Self::Etag(v) => etag.is_some_and(|e| e.trim() == v),
            Self::LastModified(v) => {
                let ours = httpdate::parse_http_date(v).ok();
                let theirs = last_modified.and_then(|m| httpdate::parse_http_date(m.trim()).ok());
                ours.is_some() && ours == theirs
            }
        }
    }
}

/// Why a response offers no validator a resume could rely on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// Neither an ETag nor a Last-Modified date.
    None,
    /// Only a weak ETag, which If-Range may not carry.
    WeakEtag(String),
    /// A Last-Modified date less than a second before the response's Date, or no Date: the
    /// file may change again within the same second.
    RecentDate(String),
}

impl Unusable {
    /// A sentence for the user.
    pub fn explain(&self) -> String {
        match self {
            Self::None => "the server sent neither an ETag nor a Last-Modified date".into(),
            Self::WeakEtag(t) => {
                format!("the server's ETag {t} is weak, and a range needs a strong one")
            }
            Self::RecentDate(d) => {
                format!("the Last-Modified date {d} is too recent to tell versions apart")
            }
        }
    }
}

/// What was already downloaded, as the store recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Partial {
    /// Bytes on disk, durable, that the checkpoint vouches for.
    pub offset: u64,
    /// The version they belong to, if a strong validator was recorded.
    pub validator: Option<Validator>,
    /// The full length, when known.
    pub total: Option<u64>,
    /// A segmented download's ranges and how much of each is durable (empty when the file was
    /// written front to back). `offset` is then the durable prefix.
    pub segments: Vec<Segment>,
    /// Bytes per second the last attempt received on a connection, when measured.
    pub rate: Option<u64>,
}

/// One byte range `[start, end)` of a segmented download, of which the first `done` bytes are
/// durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// The range's first byte.
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
    /// Bytes of it that are durable.
    pub done: u64,
}

impl Segment {
    /// Whether every byte of it is durable.
    pub fn complete(&self) -> bool {
        self.start + self.done >= self.end
    }
}

/// Segments under this length are not worth a connection of their own.
pub const MIN_SEGMENT: u64 = 4 << 20;

/// Splits `[from, total)` into at most `n` segments of at least [`MIN_SEGMENT`] bytes, their
/// boundaries on MiB multiples. One segment (or none, when nothing is left) means the range
/// is not worth splitting.
pub fn split(from: u64, total: u64, n: usize) -> Vec<Segment> {
    const ALIGN: u64 = 1 << 20;
    let left = total.saturating_sub(from);
    let n = (n as u64).min(left / MIN_SEGMENT).max(1);
    let step = (left / n).div_ceil(ALIGN) * ALIGN;
    let mut out = Vec::new();
    let mut start = from;
    while start < total {
        let end = if out.len() as u64 + 1 == n { total } else { (start + step).min(total) };
        out.push(Segment { start, end, done: 0 });
        start = end;
    }
    out
}

/// The parts of `segments` still to fetch, as fresh segments.
pub fn remaining(segments: &[Segment]) -> Vec<Segment> {
    segments
        .iter()
        .filter(|s| !s.complete())
        .map(|s| Segment { start: s.start + s.done, end: s.end, done: 0 })
        .collect()
}

/// How many bytes from the start of the file are durable, when `segments` are the ranges not
/// yet durable at the start of the run (everything outside them is) and `total` the length.
pub fn durable_prefix(segments: &[Segment], total: u64) -> u64 {
    segments.iter().filter(|s| !s.complete()).map(|s| s.start + s.done).min().unwrap_or(total)
}

/// What to ask the server for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The whole resource.
    Whole,
    /// The whole resource again, discarding the bytes on disk, and why.
    Restart(RestartReason),
    /// `Range: bytes=from-` (or `from-(to - 1)` when `to` is given) with
    /// `If-Range: validator`; the first `check` bytes of the answer are already on disk and
    /// must match them.
    From {
        /// The first byte asked for.
        from: u64,
        /// One past the last byte asked for, for a segment.
        to: Option<u64>,
        /// The validator sent in `If-Range`.
        if_range: Validator,
        /// Bytes of the answer that are already on disk and must match.
        check: u64,
    },
}

/// Why bytes already downloaded were given up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartReason {
    /// No strong validator was recorded, so nothing says the bytes on disk are of the current
    /// version.
    NoValidator,
    /// A partial file was found with no record of what it holds.
    NoRecord,
    /// The server's version changed since the bytes on disk were fetched.
    Changed,
    /// The server ignored the Range header and sent the whole resource.
    RangeIgnored,
    /// The server answered a range other than the one asked for.
    WrongRange,
    /// The server refused the range (416) and the recorded length does not say the file is
    /// complete.
    RangeRefused,
    /// The bytes before the checkpoint, fetched again, differ from the ones on disk: the file
    /// changed behind an unchanged validator.
    ContentChanged,
    /// The server's range names a total length other than the one recorded.
    TotalChanged,
}

impl RestartReason {
    /// A sentence for the user.
    pub fn explain(&self) -> &'static str {
        match self {
            Self::NoValidator => {
                "no validator was recorded for the partial file, so it cannot be trusted to match the server's current version"
            }
            Self::NoRecord => "a partial file exists but the store has no record of what it holds",
            Self::Changed => {
                "the file changed on the server since the partial download (its validator differs)"
            }
            Self::RangeIgnored => "the server ignored the range request and sent the whole file",
            Self::WrongRange => "the server sent a different range from the one asked for",
            Self::RangeRefused => "the server refused the range (416)",
            Self::ContentChanged => {
                "the bytes before the checkpoint differ from the server's: the file changed behind an unchanged validator"
            }
            Self::TotalChanged => "the server's file is no longer the length recorded",
        }
    }
}

/// The request to make for `partial`: the rest of the file, or the first unfinished segment of
/// a segmented download.
pub fn plan(partial: &Partial) -> Plan {
    let segment = partial.segments.iter().find(|s| !s.complete());
    match (&partial.validator, partial.offset, segment) {
        (Some(v), _, Some(s)) => {
            Plan::From { from: s.start + s.done, to: Some(s.end), if_range: v.clone(), check: 0 }
        }
        (_, 0, None) => Plan::Whole,
        (None, _, _) => Plan::Restart(RestartReason::NoValidator),
        (Some(v), from, None) => Plan::From { from, to: None, if_range: v.clone(), check: 0 },
    }
}

impl Plan {
    /// The same request, asking again for up to [`overlap_for`] bytes before its start that
    /// `partial` holds (within the segment it resumes), to compare with the disk; `budget`:
    /// the time the whole load is allowed, if limited.
    #[must_use]
    pub fn overlapped(self, partial: &Partial, budget: Option<Duration>) -> Self {
        match self {
            Self::From { from, to, if_range, check: 0 } => {
                let floor = partial
                    .segments
                    .iter()
                    .find(|s| s.start + s.done == from && s.start < from)
                    .map_or(0, |s| s.start);
                let check = (from - floor.min(from)).min(overlap_for(partial.rate, budget));
                Self::From { from: from - check, to, if_range, check }
            }
            other => other,
        }
    }

    /// How many bytes at the start of the answer are already on disk, to compare.
    pub fn check(&self) -> u64 {
        match self {
            Self::From { check, .. } => *check,
            Self::Whole | Self::Restart(_) => 0,
        }
    }

    /// The request headers that ask for it.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::From { from, to, if_range, .. } => vec![
                (
                    "range",
                    match to {
                        Some(to) => format!("bytes={from}-{}", to.saturating_sub(1)),
                        None => format!("bytes={from}-"),
                    },
                ),
                ("if-range", if_range.header().to_owned()),
            ],
            Self::Whole | Self::Restart(_) => Vec::new(),
        }
    }
}

/// The parts of a response a decision needs.
#[derive(Debug, Clone, Default)]
pub struct Response<'a> {
    /// The status code.
    pub status: u16,
    /// `ETag`.
    pub etag: Option<&'a str>,
    /// `Last-Modified`.
    pub last_modified: Option<&'a str>,
    /// `Date`.
    pub date: Option<&'a str>,
    /// `Content-Length`.
    pub content_length: Option<u64>,
    /// `Content-Range`.
    pub content_range: Option<&'a str>,
}

/// What to do with the body of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Write the body from offset 0 (truncating what is there). `total` is the full length
    /// when the server gave it; `validator` is what to record (or why there is none);
    /// `restarted` says why earlier bytes were dropped, if there were any.
    Fresh {
        /// The full length, when the server gave it.
        total: Option<u64>,
        /// The validator to record, or why there is none.
        validator: Result<Validator, Unusable>,
        /// Why earlier bytes were dropped, if there were any.
        restarted: Option<RestartReason>,
    },
    /// Append the body at `from`; the full length is `total`.
    Append {
        /// The offset to append at.
        from: u64,
        /// The full length, when known.
        total: Option<u64>,
    },
    /// Nothing to fetch: the bytes on disk are the whole file.
    Complete,
    /// Ask again for the whole resource, without a range, for this reason.
    Retry(RestartReason),
    /// The server failed the request.
    Status(u16),
}

/// What `response` means after asking as `plan` said.
pub fn decide(plan: &Plan, partial: &Partial, response: &Response<'_>) -> Decision {
    let validator =
        || Validator::from_response(response.etag, response.last_modified, response.date);
    let (asked_from, asked_to) = match plan {
        Plan::From { from, to, .. } => (Some(*from), *to),
        Plan::Whole | Plan::Restart(_) => (None, None),
    };
    match response.status {
        200 => Decision::Fresh {
            total: response.content_length,
            validator: validator(),
            restarted: match (plan, asked_from) {
                (Plan::Restart(reason), _) => Some(reason.clone()),
                (Plan::From { if_range, .. }, Some(_)) => {
                    Some(if if_range.matches(response.etag, response.last_modified) {
                        RestartReason::RangeIgnored
                    } else {
                        RestartReason::Changed
                    })
                }
                _ => None,
            },
        },
        206 => {
            let Some(from) = asked_from else { return Decision::Retry(RestartReason::WrongRange) };
            let Some(range) = response.content_range.and_then(ContentRange::parse) else {
                return Decision::Retry(RestartReason::WrongRange);
            };
            let same = match plan {
                Plan::From { if_range, .. } => {
                    if_range.matches(response.etag, response.last_modified)
                }
                _ => false,
            };
            if !same {
                // If-Range should have prevented this; the bytes on disk may be of another version.
                return Decision::Retry(RestartReason::Changed);
            }
            match range {
                ContentRange::Bytes { total: Some(t), .. }
                    if partial.total.is_some_and(|recorded| recorded != t) =>
                {
                    Decision::Retry(RestartReason::TotalChanged)
                }
                ContentRange::Bytes { first, last, total }
                    if first == from && asked_to.is_none_or(|to| last + 1 == to) =>
                {
                    Decision::Append { from, total }
                }
                _ => Decision::Retry(RestartReason::WrongRange),
            }
        }
        416 => {
            let total =
                response.content_range.and_then(ContentRange::parse).and_then(|r| match r {
                    ContentRange::Unsatisfied { total } => Some(total),
                    ContentRange::Bytes { .. } => None,
                });
            match (asked_from, total, partial.total) {
                (Some(from), Some(t), Some(recorded)) if t == from && recorded == from => {
                    Decision::Complete
                }
                _ => Decision::Retry(RestartReason::RangeRefused),
            }
        }
        s => Decision::Status(s),
    }
}

/// A `Content-Range` header (RFC 9110 §14.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes FIRST-LAST/TOTAL` (`TOTAL` may be `*`).
    Bytes {
        /// The first byte.
        first: u64,
        /// The last byte.
        last: u64,
        /// The full length, when given.
        total: Option<u64>,
    },
    /// `bytes */TOTAL`, with 416.
    Unsatisfied {
        /// The full length.
        total: u64,
    },
}

impl ContentRange {
    /// Parses the header's value; `None` when it is not a byte range this client reads.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.trim().strip_prefix("bytes ")?.trim_start();
        let (range, total) = rest.split_once('/')?;
        let total = match total.trim() {
            "*" => None,
            t => Some(t.parse().ok()?),
        };
        if range == "*" {
            return Some(Self::Unsatisfied { total: total? });
        }
        let (first, last) = range.split_once('-')?;
        let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
        if last < first || total.is_some_and(|t| last >= t) {
            return None;
        }
        Some(Self::Bytes { first, last, total })
    }
}
