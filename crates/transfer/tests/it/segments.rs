//! Segmented downloads from a real nginx: several ranges side by side, byte-exact, resumed
//! segment by segment, restarted cleanly when the file changed, and one connection (with the
//! reason) where ranges or a second connection are refused. nginx's rate limit applies per connection, so the
//! segments are also what makes these downloads faster.

use nw_lab::nginx::{Nginx, Options as NginxOptions};
use nw_transfer::download::{Download, Event};
use nw_transfer::resume::RestartReason;
use nw_transfer::store::{State, Store};
use nw_transfer::{Configuration, Protocol};

use crate::support::{Scratch, Tls, interrupt, job, nginx, pattern, runtime, session};

fn slow(rate: &str) -> NginxOptions {
    NginxOptions { slow_rate: Some(rate.into()), ..NginxOptions::default() }
}

fn segmented(url: String, dest: &std::path::Path, resume: bool, segments: usize) -> Download {
    Download { segments, ..job(url, dest, resume) }
}

/// Serves `data` at `/slow/file.bin` (8 MB/s a connection) and interrupts a download of it in
/// four segments once `at` bytes are written; returns the server, the session (4 MiB
/// checkpoints), the destination and the URL.
fn interrupted(
    scratch: &Scratch,
    data: &[u8],
    at: u64,
) -> (Nginx, nw_transfer::Session, std::path::PathBuf, String) {
    std::fs::write(scratch.www().join("file.bin"), data).unwrap();
    let server = nginx(scratch, &slow("8m"));
    // Written around the page cache whatever the size, so resumes at unaligned checkpoints
    // and segment boundaries go through the direct writer.
    let config = Configuration {
        checkpoint_bytes: 4 << 20,
        direct_from: Some(0),
        ..Configuration::default()
    };
    let session = session(scratch, config);
    let dest = scratch.0.join("file.bin");
    let url = server.url("/slow/file.bin");
    runtime().block_on(interrupt(&session, &segmented(url.clone(), &dest, false, 4), at));
    (server, session, dest, url)
}

/// What `Started` said: (from, segments, restarted, not_segmented).
type Started = (u64, usize, Option<RestartReason>, Option<String>);

fn started(e: &Event, into: &mut Option<Started>) {
    if let Event::Started { from, segments, restarted, not_segmented, .. } = e {
        *into = Some((*from, *segments, restarted.clone(), not_segmented.clone()));
    }
}

#[test]
fn segments_four_ranges_side_by_side_are_byte_exact_over_http1_and_http2() {
    let scratch = Scratch::new("seg-exact");
    let data = pattern((40 << 20) + 12345, 11);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let tls = Tls::new(&scratch);
    let server = nginx(
        &scratch,
        &NginxOptions { tls: Some((tls.cert.clone(), tls.key.clone())), ..NginxOptions::default() },
    );
    // Around the page cache (as files from 64 MiB are), with segment boundaries off the
    // 4 KiB blocks.
    let config = Configuration {
        trust: tls.trust.clone(),
        direct_from: Some(0),
        ..Configuration::default()
    };
    let session = session(&scratch, config);
    let rt = runtime();
    for (url, protocol) in [
        (server.url("/file.bin"), Protocol::Http11),
        (server.https_url("/file.bin").unwrap(), Protocol::H2),
    ] {
        let dest = scratch.0.join(format!("{protocol:?}.bin"));
        let mut seen = None;
        let mut last_written = 0;
        let done = rt
            .block_on(session.download(&segmented(url, &dest, false, 4), &mut |e| {
                started(&e, &mut seen);
                if let Event::Progress { written, total, .. } = e {
                    assert!(written >= last_written && Some(written) <= total, "{written}");
                    last_written = written;
                }
            }))
            .unwrap();
        assert_eq!(seen.map(|s| s.1), Some(4), "{protocol:?}: four segments");
        assert_eq!((done.segments, done.metrics.protocol), (4, protocol));
        assert_eq!(last_written, data.len() as u64, "the last progress is the whole file");
        assert!(std::fs::read(&dest).unwrap() == data, "{protocol:?}: byte-exact");
        let record = session.store().find(&dest).unwrap().unwrap();
        assert_eq!((record.state, record.offset), (State::Done, data.len() as u64));
        assert!(record.segments.iter().all(|s| s.complete()), "{:?}", record.segments);
    }
}

#[test]
fn segments_an_interrupted_segmented_download_resumes_every_segment_where_it_stopped() {
    let scratch = Scratch::new("seg-resume");
    let data = pattern(48 << 20, 12);
    let (_server, session, dest, url) = interrupted(&scratch, &data, 16 << 20);
    let rt = runtime();
    let record = session.store().find(&dest).unwrap().unwrap();
    assert_eq!(record.segments.len(), 4, "{:?}", record.segments);
    let kept: u64 = record.segments.iter().map(|s| s.done).sum();
    assert!(
        record.segments.iter().filter(|s| s.done > 0).count() >= 2,
        "several segments checkpointed: {:?}",
        record.segments
    );
    assert!(
        record.offset < kept,
        "the prefix ({}) is less than what is kept ({kept})",
        record.offset
    );
    assert_eq!(record.offset, record.segments[0].done, "the prefix is the first segment's");
    // Resumed without asking for segments: an interrupted segmented download goes on in them.
    let mut seen = None;
    let done = rt
        .block_on(session.download(&job(url, &dest, true), &mut |e| started(&e, &mut seen)))
        .unwrap();
    let (from, segments, restarted, _) = seen.unwrap();
    assert_eq!(from, kept, "every checkpointed byte of every segment is kept");
    assert_eq!(segments, record.segments.iter().filter(|s| !s.complete()).count());
    assert_eq!(restarted, None);
    assert_eq!(done.metrics.received, data.len() as u64 - kept, "nothing fetched twice");
    assert!(std::fs::read(&dest).unwrap() == data, "the resumed file is byte-exact");
}

#[test]
fn segments_a_file_changed_between_runs_restarts_cleanly() {
    let scratch = Scratch::new("seg-changed");
    let new = pattern(24 << 20, 14);
    let (_server, session, dest, url) = interrupted(&scratch, &pattern(40 << 20, 13), 12 << 20);
    let served = scratch.www().join("file.bin");
    let rt = runtime();
    let staged = scratch.www().join("file.bin.new");
    std::fs::write(&staged, &new).unwrap();
    std::fs::rename(&staged, &served).unwrap();
    let mut seen = None;
    let done = rt
        .block_on(
            session.download(&segmented(url, &dest, true, 3), &mut |e| started(&e, &mut seen)),
        )
        .unwrap();
    let (from, segments, restarted, _) = seen.unwrap();
    assert_eq!((from, restarted), (0, Some(RestartReason::Changed)));
    assert_eq!((segments, done.segments), (3, 3), "the new version is split afresh");
    assert!(std::fs::read(&dest).unwrap() == new, "the file is the new version, whole");
}

#[test]
fn segments_refused_ranges_a_refused_connection_or_a_small_file_mean_one_connection() {
    let scratch = Scratch::new("seg-refused");
    let data = pattern(24 << 20, 15);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    std::fs::write(scratch.www().join("small.bin"), &data[..6 << 20]).unwrap();
    let server = nginx(&scratch, &slow("200m"));
    let session = session(&scratch, Configuration::default());
    let rt = runtime();
    let cases = [
        ("/norange/file.bin", &data[..], "does not accept ranges"),
        ("/small.bin", &data[..6 << 20], "too little to split"),
        // One request at a time: the others get 503, the first fetches everything.
        ("/one/file.bin", &data[..], "another connection failed"),
    ];
    for (i, (path, expected, why)) in cases.into_iter().enumerate() {
        let dest = scratch.0.join(format!("{i}.bin"));
        let mut seen = None;
        let done = rt
            .block_on(session.download(&segmented(server.url(path), &dest, false, 4), &mut |e| {
                started(&e, &mut seen)
            }))
            .unwrap();
        let (_, segments, _, not_segmented) = seen.unwrap();
        assert_eq!((segments, done.segments), (1, 1), "{path}");
        let not_segmented = not_segmented.unwrap_or_default();
        assert!(not_segmented.contains(why), "{path}: {not_segmented}");
        assert!(std::fs::read(&dest).unwrap() == expected, "{path}: byte-exact");
    }
}

#[test]
fn segments_a_version_1_store_is_migrated_in_place_keeping_its_transfers() {
    let scratch = Scratch::new("seg-migrate");
    let path = scratch.0.join("v1.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE transfers (id INTEGER PRIMARY KEY, url TEXT NOT NULL,
               dest TEXT NOT NULL UNIQUE, state TEXT NOT NULL, validator TEXT, total INTEGER,
               offset INTEGER NOT NULL DEFAULT 0, sha256 TEXT,
               discretionary INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
               error TEXT, created REAL NOT NULL, updated REAL NOT NULL);
             INSERT INTO transfers (url, dest, state, offset, created, updated)
               VALUES ('http://127.0.0.1/a', '/tmp/a', 'interrupted', 77, 0, 0);
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let records = store.list().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].offset, records[0].want_segments), (77, 1));
    assert!(records[0].segments.is_empty());
    let segments = nw_transfer::resume::split(0, 16 << 20, 2);
    store.checkpoint(records[0].id, 0, Some(&segments), None).unwrap();
    drop(store);
    let reopened = Store::open(&path).unwrap();
    assert_eq!(reopened.list().unwrap()[0].segments, segments, "kept across a reopen");
}

#[test]
fn store_a_version_3_store_gains_sessions_keeping_its_transfers() {
    let scratch = Scratch::new("store-v3");
    let path = scratch.0.join("v3.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE transfers (id INTEGER PRIMARY KEY, url TEXT NOT NULL,
               dest TEXT NOT NULL UNIQUE, state TEXT NOT NULL, validator TEXT, total INTEGER,
               offset INTEGER NOT NULL DEFAULT 0, sha256 TEXT,
               discretionary INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
               error TEXT, created REAL NOT NULL, updated REAL NOT NULL, segments TEXT,
               want_segments INTEGER NOT NULL DEFAULT 1);
             CREATE TABLE uploads (id INTEGER PRIMARY KEY, url TEXT NOT NULL,
               source TEXT NOT NULL, method TEXT NOT NULL, content_type TEXT NOT NULL,
               state TEXT NOT NULL, pid INTEGER, sent INTEGER NOT NULL DEFAULT 0, status INTEGER,
               discretionary INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
               error TEXT, created REAL NOT NULL, updated REAL NOT NULL);
             INSERT INTO transfers (url, dest, state, offset, created, updated)
               VALUES ('http://127.0.0.1/a', '/tmp/a', 'interrupted', 77, 0, 0);
             INSERT INTO uploads (url, source, method, content_type, state, created, updated)
               VALUES ('http://127.0.0.1/u', '/tmp/u', 'PUT', 'a/b', 'queued', 0, 0);
             PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    // Four processes' worth of opens at once: one migrates, the others find it done.
    let opened: Vec<_> = std::thread::scope(|scope| {
        let opens: Vec<_> = (0..4).map(|_| scope.spawn(|| Store::open(&path))).collect();
        opens.into_iter().map(|open| open.join().unwrap()).collect()
    });
    let mut opened = opened.into_iter().map(|store| store.unwrap());
    let store = opened.next().unwrap();
    drop(opened);
    let (records, uploads) = (store.list().unwrap(), store.uploads().unwrap());
    assert_eq!((records.len(), records[0].offset, records[0].session.as_deref()), (1, 77, None));
    assert_eq!((uploads.len(), uploads[0].session.as_deref()), (1, None));
    // Queued from now on, a transfer keeps its session's identifier.
    store
        .enqueue("http://127.0.0.1/b", std::path::Path::new("/tmp/b"), None, false, 1, Some("s"))
        .unwrap();
    let up = store
        .enqueue_upload(
            "http://127.0.0.1/v",
            std::path::Path::new("/tmp/v"),
            "PUT",
            "a/b",
            false,
            Some("s"),
        )
        .unwrap();
    assert_eq!(up.session.as_deref(), Some("s"));
    drop(store);
    let reopened = Store::open(&path).unwrap();
    let b = reopened.find(std::path::Path::new("/tmp/b")).unwrap().expect("queued");
    assert_eq!(b.session.as_deref(), Some("s"), "kept across a reopen");
    // Migrated through version 4, it keeps the rate a checkpoint measured, until another does.
    assert_eq!(b.rate, None);
    reopened.checkpoint(b.id, 10, None, Some(20_000)).unwrap();
    reopened.checkpoint(b.id, 20, None, None).unwrap();
    let b = reopened.find(std::path::Path::new("/tmp/b")).unwrap().expect("queued");
    assert_eq!((b.offset, b.rate, b.partial().rate), (20, Some(20_000), Some(20_000)));
}

/// A segmented download checked against its SHA-256 reads the file back to hash it (nothing
/// was hashed on the way, the ranges coming side by side): that read, and the threads' last
/// writes and checkpoint, happen off the runtime. On a current-thread runtime, as an
/// application's may be, a 5 ms ticker beside a 256 MiB download is never held up for long.
#[test]
#[allow(clippy::disallowed_methods, reason = "measures how late a ticker's ticks come")]
fn segments_a_checked_download_does_not_stall_a_current_thread_runtime() {
    let scratch = Scratch::new("seg-runtime");
    let data = pattern(256 << 20, 21);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let mut ctx = nw_connection::crypto::sha256().expect("SHA-256");
    ctx.update(&data);
    let digest: [u8; 32] = ctx.finish().as_ref().try_into().unwrap();
    drop(data);
    let server = nginx(&scratch, &NginxOptions::default());
    let session = session(&scratch, Configuration::default());
    let dest = scratch.0.join("file.bin");
    let job =
        Download { sha256: Some(digest), ..segmented(server.url("/file.bin"), &dest, false, 4) };
    // The longest gap between ticks so far, in microseconds.
    let worst = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = runtime().block_on(async {
        let seen = worst.clone();
        let ticker = tokio::spawn(async move {
            let mut last = std::time::Instant::now();
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                let now = std::time::Instant::now();
                let gap = u64::try_from((now - last).as_micros()).unwrap_or(u64::MAX);
                seen.fetch_max(gap, std::sync::atomic::Ordering::Relaxed);
                last = now;
            }
        });
        // The ticker running first, so a hold-up from the download's first step is counted.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let done = session.download(&job, &mut |_| {}).await;
        // A few more ticks after the download, so a hold-up at its very end is counted.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        ticker.abort();
        done
    });
    let worst = std::time::Duration::from_micros(worst.load(std::sync::atomic::Ordering::Relaxed));
    let done = done.unwrap();
    assert_eq!(done.segments, 4);
    println!("the ticker's longest gap: {worst:?}");
    assert!(worst < std::time::Duration::from_millis(250), "the runtime was held for {worst:?}");
}

/// The store's reads and writes run off the runtime: while another writer holds the store's
/// write lock (another `nw` committing, say), a download waits for it — SQLite's busy timeout
/// — on a blocking thread, and a 5 ms ticker on the same current-thread runtime keeps ticking.
#[test]
#[allow(clippy::disallowed_methods, reason = "times a ticker's ticks; holds a lock a while")]
fn store_a_locked_store_does_not_stall_a_current_thread_runtime() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};
    let scratch = Scratch::new("store-locked");
    let data = pattern(100_000, 3);
    std::fs::write(scratch.www().join("small.bin"), &data).unwrap();
    let server = nginx(&scratch, &NginxOptions::default());
    let session = session(&scratch, Configuration::default());
    // Another writer: an immediate transaction held for a second and a half.
    let other = rusqlite::Connection::open(scratch.0.join("store.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE;").unwrap();
    let held = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        other.execute_batch("COMMIT;").unwrap();
    });
    let dest = scratch.0.join("small.bin");
    let job = job(server.url("/small.bin"), &dest, false);
    let worst = std::sync::Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let done = runtime().block_on(async {
        let seen = worst.clone();
        let ticker = tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let now = Instant::now();
                seen.fetch_max(
                    u64::try_from((now - last).as_micros()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                last = now;
            }
        });
        // The ticker running first, so a hold-up from the download's first step is counted.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let done = session.download(&job, &mut |_| {}).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        ticker.abort();
        done
    });
    held.join().unwrap();
    let (took, worst) = (began.elapsed(), Duration::from_micros(worst.load(Ordering::Relaxed)));
    done.unwrap();
    assert!(
        took >= Duration::from_millis(1400),
        "the download did not wait for the lock: {took:?}"
    );
    assert!(worst < Duration::from_millis(250), "the runtime was held for {worst:?}");
    assert!(std::fs::read(&dest).unwrap() == data, "byte-exact");
}
