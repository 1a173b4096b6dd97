//! Resume decisions: validator kept, changed, missing; 206 against 200; 416.

use nw_transfer::resume::{
    ContentRange, Decision, MIN_SEGMENT, OVERLAP, OVERLAP_MIN, Partial, Plan, Response,
    RestartReason, Segment, Unusable, Validator, decide, durable_prefix, overlap_for, plan,
    remaining, split,
};

const DATE: &str = "Sat, 21 Nov 2026 10:00:00 GMT";
const EARLIER: &str = "Fri, 20 Nov 2026 09:00:00 GMT";

fn etag(v: &str) -> Validator {
    Validator::Etag(v.to_owned())
}

fn partial(offset: u64, validator: Option<Validator>) -> Partial {
    Partial { offset, validator, total: Some(1000), segments: Vec::new(), rate: None }
}

#[test]
fn a_strong_etag_is_preferred_and_a_weak_one_is_refused() {
    assert_eq!(
        Validator::from_response(Some("\"abc\""), Some(EARLIER), Some(DATE)),
        Ok(etag("\"abc\""))
    );
    // A weak ETag may not go in If-Range; a strong Last-Modified can stand in for it.
    assert_eq!(
        Validator::from_response(Some("W/\"abc\""), Some(EARLIER), Some(DATE)),
        Err(Unusable::WeakEtag("W/\"abc\"".into()))
    );
    assert_eq!(
        Validator::from_response(None, Some(EARLIER), Some(DATE)),
        Ok(Validator::LastModified(EARLIER.into()))
    );
    // Modified in the same second as the response: not strong (RFC 9110 §8.8.2.2).
    assert_eq!(
        Validator::from_response(None, Some(DATE), Some(DATE)),
        Err(Unusable::RecentDate(DATE.into()))
    );
    assert_eq!(Validator::from_response(None, None, Some(DATE)), Err(Unusable::None));
    assert!(Unusable::None.explain().contains("neither an ETag nor a Last-Modified"));
}

#[test]
fn a_partial_file_with_a_validator_is_resumed_with_if_range() {
    assert_eq!(plan(&partial(0, None)), Plan::Whole);
    assert_eq!(
        plan(&partial(400, Some(etag("\"v1\"")))),
        Plan::From { from: 400, to: None, if_range: etag("\"v1\""), check: 0 }
    );
    // Without a validator nothing says the bytes are of the current version.
    assert_eq!(plan(&partial(400, None)), Plan::Restart(RestartReason::NoValidator));
    // Overlapped: the bytes before the checkpoint are asked again to compare, at most OVERLAP.
    let v1 = || etag("\"v1\"");
    assert_eq!(
        plan(&partial(400, Some(v1()))).overlapped(&partial(400, Some(v1())), None),
        Plan::From { from: 0, to: None, if_range: v1(), check: 400 }
    );
    let big = partial(1 << 20, Some(v1()));
    let asked = plan(&big).overlapped(&big, None);
    assert_eq!(
        asked,
        Plan::From { from: (1 << 20) - OVERLAP, to: None, if_range: v1(), check: OVERLAP }
    );
    assert_eq!(asked.headers()[0], ("range", format!("bytes={}-", (1 << 20) - OVERLAP)));
    assert_eq!(Plan::Whole.overlapped(&big, None), Plan::Whole);
}

/// On a slow link a resume asks again for what the link carries in a second, or in a tenth of
/// the load's time limit, never less than a page: 64 KiB at 20 KB/s would be three seconds, and
/// a two-second load would spend them all on bytes it already had.
#[test]
fn a_resume_over_a_slow_link_asks_again_for_less() {
    let secs = |s| Some(std::time::Duration::from_secs(s));
    assert_eq!(overlap_for(None, None), OVERLAP, "nothing measured: the most");
    assert_eq!(overlap_for(None, secs(2)), OVERLAP);
    assert_eq!(overlap_for(Some(100_000_000), None), OVERLAP, "a fast link: the most");
    assert_eq!(overlap_for(Some(20_000), None), 20_000, "a second's worth");
    assert_eq!(overlap_for(Some(20_000), secs(2)), OVERLAP_MIN, "a tenth of 2 s is 2 KB");
    assert_eq!(overlap_for(Some(200_000), secs(2)), 40_000, "a tenth of 2 s");
    assert_eq!(overlap_for(Some(40_000), secs(60)), 40_000, "a second at most");
    assert_eq!(overlap_for(Some(0), None), OVERLAP_MIN);
    assert_eq!(overlap_for(Some(u64::MAX), secs(u64::MAX)), OVERLAP);
    let slow = Partial { rate: Some(20_000), ..partial(1 << 20, Some(etag("\"v1\""))) };
    assert_eq!(
        plan(&slow).overlapped(&slow, secs(2)),
        Plan::From {
            from: (1 << 20) - OVERLAP_MIN,
            to: None,
            if_range: etag("\"v1\""),
            check: OVERLAP_MIN
        }
    );
}

#[test]
fn a_206_whose_total_differs_from_the_recorded_one_restarts() {
    let p = Partial { total: Some(1000), ..partial(400, Some(etag("\"v1\""))) };
    let response = |range| Response {
        status: 206,
        etag: Some("\"v1\""),
        content_range: Some(range),
        ..Response::default()
    };
    let asked = plan(&p);
    assert_eq!(
        decide(&asked, &p, &response("bytes 400-1199/1200")),
        Decision::Retry(RestartReason::TotalChanged)
    );
    assert_eq!(
        decide(&asked, &p, &response("bytes 400-999/1000")),
        Decision::Append { from: 400, total: Some(1000) }
    );
    assert_eq!(
        decide(&asked, &p, &response("bytes 400-999/*")),
        Decision::Append { from: 400, total: None }
    );
}

#[test]
fn a_206_for_the_asked_range_of_the_same_version_appends() {
    let p = partial(400, Some(etag("\"v1\"")));
    let asked = plan(&p);
    let response = Response {
        status: 206,
        etag: Some("\"v1\""),
        content_range: Some("bytes 400-999/1000"),
        content_length: Some(600),
        ..Response::default()
    };
    assert_eq!(decide(&asked, &p, &response), Decision::Append { from: 400, total: Some(1000) });
    // Another start, or a 206 with no Content-Range, is not what was asked: start over.
    let wrong = Response { content_range: Some("bytes 0-999/1000"), ..response.clone() };
    assert_eq!(decide(&asked, &p, &wrong), Decision::Retry(RestartReason::WrongRange));
    let none = Response { content_range: None, ..response.clone() };
    assert_eq!(decide(&asked, &p, &none), Decision::Retry(RestartReason::WrongRange));
    // A 206 of another version (a server that ignores If-Range) never appends.
    let other = Response { etag: Some("\"v2\""), ..response };
    assert_eq!(decide(&asked, &p, &other), Decision::Retry(RestartReason::Changed));
}

#[test]
fn a_200_restarts_and_says_whether_the_file_changed_or_the_range_was_ignored() {
    let p = partial(400, Some(etag("\"v1\"")));
    let asked = plan(&p);
    let changed = Response {
        status: 200,
        etag: Some("\"v2\""),
        content_length: Some(1200),
        ..Response::default()
    };
    assert_eq!(
        decide(&asked, &p, &changed),
        Decision::Fresh {
            total: Some(1200),
            validator: Ok(etag("\"v2\"")),
            restarted: Some(RestartReason::Changed)
        }
    );
    let ignored = Response {
        status: 200,
        etag: Some("\"v1\""),
        content_length: Some(1000),
        ..Response::default()
    };
    assert_eq!(
        decide(&asked, &p, &ignored),
        Decision::Fresh {
            total: Some(1000),
            validator: Ok(etag("\"v1\"")),
            restarted: Some(RestartReason::RangeIgnored)
        }
    );
    // Last-Modified validators compare as dates.
    let lm = partial(400, Some(Validator::LastModified(EARLIER.into())));
    let same_date = Response {
        status: 206,
        last_modified: Some("Fri, 20 Nov 2026 09:00:00 GMT"),
        content_range: Some("bytes 400-999/1000"),
        ..Response::default()
    };
    assert_eq!(
        decide(&plan(&lm), &lm, &same_date),
        Decision::Append { from: 400, total: Some(1000) }
    );
}

#[test]
fn a_first_download_records_its_validator_or_why_there_is_none() {
    let p = Partial::default();
    let weak = Response {
        status: 200,
        etag: Some("W/\"x\""),
        content_length: Some(5),
        ..Response::default()
    };
    assert_eq!(
        decide(&plan(&p), &p, &weak),
        Decision::Fresh {
            total: Some(5),
            validator: Err(Unusable::WeakEtag("W/\"x\"".into())),
            restarted: None
        }
    );
    let restart = Plan::Restart(RestartReason::NoValidator);
    let ok = Response { status: 200, etag: Some("\"x\""), ..Response::default() };
    assert!(matches!(
        decide(&restart, &partial(400, None), &ok),
        Decision::Fresh { restarted: Some(RestartReason::NoValidator), .. }
    ));
}

#[test]
fn a_416_means_complete_only_when_the_recorded_length_says_so() {
    let done = Partial {
        offset: 1000,
        validator: Some(etag("\"v1\"")),
        total: Some(1000),
        segments: Vec::new(),
        rate: None,
    };
    let refused =
        Response { status: 416, content_range: Some("bytes */1000"), ..Response::default() };
    assert_eq!(decide(&plan(&done), &done, &refused), Decision::Complete);
    let grew = Response { status: 416, content_range: Some("bytes */900"), ..Response::default() };
    assert_eq!(decide(&plan(&done), &done, &grew), Decision::Retry(RestartReason::RangeRefused));
    let status = Response { status: 404, ..Response::default() };
    assert_eq!(decide(&plan(&done), &done, &status), Decision::Status(404));
}

#[test]
fn content_range_parsing_is_strict() {
    assert_eq!(
        ContentRange::parse("bytes 0-9/10"),
        Some(ContentRange::Bytes { first: 0, last: 9, total: Some(10) })
    );
    assert_eq!(
        ContentRange::parse("bytes 5-9/*"),
        Some(ContentRange::Bytes { first: 5, last: 9, total: None })
    );
    assert_eq!(ContentRange::parse("bytes */10"), Some(ContentRange::Unsatisfied { total: 10 }));
    for bad in [
        "bytes 9-5/10",
        "bytes 0-10/10",
        "items 0-9/10",
        "bytes 0-9",
        "bytes -1-9/10",
        "bytes */*",
        "",
    ] {
        assert_eq!(ContentRange::parse(bad), None, "{bad:?}");
    }
}

const MIB: u64 = 1 << 20;

#[test]
fn a_file_is_split_into_mib_aligned_segments_of_at_least_the_minimum() {
    let total = 40 * MIB + 123;
    let segs = split(0, total, 4);
    assert_eq!(segs.len(), 4);
    assert_eq!((segs[0].start, segs[3].end), (0, total), "the segments cover the file");
    for pair in segs.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "no gap, no overlap");
        assert_eq!(pair[0].end % MIB, 0, "boundaries on MiB multiples");
    }
    // Resumed at 10 MiB: only the rest is split.
    let rest = split(10 * MIB, total, 4);
    assert_eq!(rest[0].start, 10 * MIB);
    assert_eq!(rest.last().unwrap().end, total);
    // Never below the minimum: 9 MiB makes two segments, 6 MiB one.
    assert_eq!(split(0, 9 * MIB, 16).len(), 2);
    assert_eq!(split(0, 6 * MIB, 4).len(), 1);
    assert!(split(0, 2 * MIN_SEGMENT, 8).iter().all(|s| s.end - s.start >= MIN_SEGMENT));
    assert!(split(5, 5, 4).is_empty(), "nothing left, nothing to split");
}

#[test]
fn a_segmented_partial_resumes_the_first_unfinished_segment_within_its_bounds() {
    let segs = vec![
        Segment { start: 0, end: 100, done: 100 },
        Segment { start: 100, end: 200, done: 30 },
        Segment { start: 200, end: 300, done: 0 },
        Segment { start: 300, end: 400, done: 90 },
    ];
    // Bytes 0..130 are durable from the start; the rest is in pieces.
    assert_eq!(durable_prefix(&segs, 400), 130);
    assert_eq!(
        remaining(&segs),
        vec![
            Segment { start: 130, end: 200, done: 0 },
            Segment { start: 200, end: 300, done: 0 },
            Segment { start: 390, end: 400, done: 0 },
        ]
    );
    let p = Partial {
        offset: 130,
        validator: Some(etag("\"v1\"")),
        total: Some(400),
        segments: segs.clone(),
        rate: None,
    };
    let asked = plan(&p);
    assert_eq!(asked, Plan::From { from: 130, to: Some(200), if_range: etag("\"v1\""), check: 0 });
    assert_eq!(asked.headers()[0], ("range", "bytes=130-199".to_owned()));
    // Overlapped, it asks again for the segment's own 30 durable bytes, never its neighbour's.
    assert_eq!(
        asked.clone().overlapped(&p, None),
        Plan::From { from: 100, to: Some(200), if_range: etag("\"v1\""), check: 30 }
    );
    // The exact range of the same version appends; any other range is not taken.
    let response = |content_range| Response {
        status: 206,
        etag: Some("\"v1\""),
        content_range: Some(content_range),
        ..Response::default()
    };
    assert_eq!(
        decide(&asked, &p, &response("bytes 130-199/400")),
        Decision::Append { from: 130, total: Some(400) }
    );
    assert_eq!(
        decide(&asked, &p, &response("bytes 130-399/400")),
        Decision::Retry(RestartReason::WrongRange)
    );
    // Every segment complete: the plan falls back to the prefix, which is the whole file.
    let all: Vec<Segment> = segs.iter().map(|s| Segment { done: s.end - s.start, ..*s }).collect();
    assert_eq!(durable_prefix(&all, 400), 400);
    assert!(remaining(&all).is_empty());
    let whole = Partial { offset: 400, segments: all, ..p };
    assert_eq!(
        plan(&whole),
        Plan::From { from: 400, to: None, if_range: etag("\"v1\""), check: 0 }
    );
}
