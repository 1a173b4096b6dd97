//! Tasks (`nw_transfer::task`): a download suspended, resumed, cancelled with and without
//! resume data, against nginx sending at 1 MB/s; a data task cancelled while a server says
//! nothing; a POST that may not be suspended; an upload's progress.

#![allow(clippy::disallowed_methods, reason = "the tests wait on real servers")]

use std::sync::Arc;
use std::time::Duration;

use nw_lab::nginx::Options as NginxOptions;
use nw_transfer::task::{ResumeData, State, Status, Task};
use nw_transfer::tasks::{Request, Upload};
use nw_transfer::{Code, Configuration, Method, TransferError};

use crate::support::{Scratch, job, nginx, pattern, runtime, session};

/// Waits (up to 15 s) until `task`'s status satisfies `done`.
async fn until<T: Send + 'static>(task: &Task<T>, done: impl Fn(&Status) -> bool) -> Status {
    let mut watch = task.watch();
    let waited = tokio::time::timeout(Duration::from_secs(15), watch.wait_for(|s| done(s))).await;
    match waited {
        Ok(Ok(s)) => *s,
        _ => panic!("the task never got there: {:?}", task.status()),
    }
}

#[test]
fn task_a_download_is_suspended_resumed_and_cancelled_with_and_without_resume_data() {
    let scratch = Scratch::new("task-download");
    let data = pattern(2_500_000, 3);
    std::fs::write(scratch.www().join("file.bin"), &data).unwrap();
    let server =
        nginx(&scratch, &NginxOptions { slow_rate: Some("1m".into()), ..NginxOptions::default() });
    let url = server.url("/slow/file.bin");
    // At 200 KB/s, less than a chunk (1 MiB) arrives in a second.
    let slow = NginxOptions { slow_rate: Some("200k".into()), ..NginxOptions::default() };
    let slower_server = nginx(&scratch, &slow);
    let slower = slower_server.url("/slow/file.bin");
    // Checkpointed every 64 KiB, so a stop keeps nearly all that arrived.
    let config = Configuration { checkpoint_bytes: 64 << 10, ..Configuration::default() };
    let session = Arc::new(session(&scratch, config));
    let rt = runtime();
    let part = |name: &str| scratch.0.join(format!("{name}.part"));
    rt.block_on(async {
        // Suspended: it stops (nothing more arrives, the record says interrupted), and
        // resumed it finishes from where it was.
        let dest = scratch.0.join("a");
        let task = session.download_task(job(url.clone(), &dest, false));
        until(&task, |s| s.received >= 300_000).await;
        assert!(task.suspend());
        let stopped = until(&task, |s| s.state == State::Suspended).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(task.status().received, stopped.received, "bytes arrived while suspended");
        assert!(part("a").exists());
        let record = session.store().find(&dest).unwrap().unwrap();
        assert_eq!(record.state, nw_transfer::store::State::Interrupted, "{record:?}");
        task.resume();
        let done = task.wait().await.unwrap_or_else(|e| panic!("after resuming: {e}"));
        assert!(done.resumed_from > 0, "{done:?}");
        assert!(std::fs::read(&dest).unwrap() == data, "not byte-exact after resuming");

        // Cancelled with resume data: the `.part` stays, and the data (kept as JSON)
        // continues it in another session.
        let dest = scratch.0.join("b");
        let task = session.download_task(job(url.clone(), &dest, false));
        until(&task, |s| s.received >= 300_000).await;
        let kept = task.cancel_producing_resume_data().await.expect("resume data");
        assert!(kept.bytes >= 300_000 && part("b").exists(), "{kept:?}");
        let text = serde_json::to_string(&kept).unwrap();
        let kept: ResumeData = serde_json::from_str(&text).unwrap();
        let other = Arc::new(crate::support::session(&scratch, Configuration::default()));
        let done = other.download_task_resuming(&kept).wait().await.unwrap();
        assert!(done.resumed_from > 0, "{done:?}");
        assert!(std::fs::read(&dest).unwrap() == data, "not byte-exact after resume data");

        // Suspended before a whole chunk (1 MiB) arrived, with checkpoints as far apart as
        // by default: what arrived is written and checkpointed all the same (it was dropped
        // with the unfilled chunk before).
        let dest = scratch.0.join("d");
        let default = Arc::new(crate::support::session(&scratch, Configuration::default()));
        let task = default.download_task(job(slower.clone(), &dest, false));
        until(&task, |s| s.expected_to_receive.is_some()).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // Progress counts what arrived, though none of it is written yet.
        let arrived = task.status().received;
        assert!(arrived >= 100_000, "progress says {arrived} bytes after a second at 200 KB/s");
        assert!(task.suspend());
        let kept = until(&task, |s| s.state == State::Suspended).await;
        assert!(kept.received >= 100_000, "only {} bytes kept of what arrived", kept.received);
        let record = default.store().find(&dest).unwrap().unwrap();
        assert_eq!(record.offset, kept.received, "{record:?}");
        let part_len = std::fs::metadata(part("d")).map(|m| m.len()).unwrap_or(0);
        assert_eq!(part_len, kept.received, "the .part holds what was checkpointed");
        task.cancel();
        assert!(task.wait().await.is_err_and(|e| e.code() == Code::Cancelled));

        // Cancelled: it ends at once, saying so, and keeps nothing.
        let dest = scratch.0.join("c");
        let task = session.download_task(job(url.clone(), &dest, false));
        until(&task, |s| s.received >= 300_000).await;
        task.cancel();
        assert!(matches!(task.status().state, State::Canceling | State::Completed));
        let ended = tokio::time::timeout(Duration::from_secs(6), task.wait()).await.unwrap();
        let Err(e @ TransferError::Cancelled) = ended else { panic!("{ended:?}") };
        assert_eq!((e.code(), e.code().apple()), (Code::Cancelled, Some(-999)));
        assert!(!part("c").exists() && !dest.exists(), "a cancelled download left its bytes");

        // Cancelled while suspended: the same, the bytes it had kept go too.
        let dest = scratch.0.join("e");
        let task = session.download_task(job(url.clone(), &dest, false));
        until(&task, |s| s.received >= 300_000).await;
        assert!(task.suspend());
        until(&task, |s| s.state == State::Suspended).await;
        assert!(part("e").exists());
        task.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(6), task.wait()).await.unwrap();
        assert!(matches!(ended, Err(TransferError::Cancelled)), "{ended:?}");
        assert!(!part("e").exists(), "a download cancelled while suspended left its bytes");
    });
}

#[test]
fn task_a_data_task_is_cancelled_while_the_server_says_nothing_and_a_post_goes_on() {
    let scratch = Scratch::new("task-data");
    // A server that takes connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", silent.local_addr().unwrap());
    std::fs::write(scratch.www().join("f.txt"), b"hello").unwrap();
    let server = nginx(&scratch, &NginxOptions::default());
    let session = Arc::new(session(&scratch, Configuration::default()));
    let rt = runtime();
    rt.block_on(async {
        let task = session.data_task(Request::get(url.clone()), 1024);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(task.status().state, State::Running);
        task.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(1), task.wait()).await;
        assert!(matches!(ended, Ok(Err(TransferError::Cancelled))), "{ended:?}");
        // A POST cannot be stopped and sent again: it goes on, and is answered.
        let post = Request {
            method: Method::POST,
            body: "x".into(),
            ..Request::get(server.url("/f.txt"))
        };
        let task = session.data_task(post, 4096);
        assert!(!task.suspend(), "a POST was suspended");
        let watch = task.watch();
        let done = task.wait().await.unwrap();
        assert_eq!(done.status, 405, "nginx refuses a POST to a file");
        let last = *watch.borrow();
        assert_eq!((last.sent, last.expected_to_send), (1, Some(1)), "the POST's body counted");
        // A file sent as a data task's body: counted as it goes, whole at the end.
        let sent_file = scratch.0.join("sent.bin");
        std::fs::write(&sent_file, pattern(3 << 20, 9)).unwrap();
        let put = Request {
            method: Method::PUT,
            body: nw_transfer::body::Body::File(sent_file),
            ..Request::get(server.url("/put/sent.bin"))
        };
        let task = session.data_task(put, 4096);
        let watch = task.watch();
        let done = task.wait().await.unwrap();
        assert!((200..300).contains(&done.status), "{}", done.status);
        let last = *watch.borrow();
        assert_eq!((last.sent, last.expected_to_send), (3 << 20, Some(3 << 20)), "{last:?}");
        // A GET's body counted once read.
        let task = session.data_task(Request::get(server.url("/f.txt")), 1024);
        let mut watch = task.watch();
        let done = task.wait().await.unwrap();
        assert_eq!(&done.body[..], b"hello");
        let last = *watch.borrow_and_update();
        assert_eq!((last.state, last.received), (State::Completed, 5));
        // A data task's progress as its answer comes (nginx's /slow/, 1 MB/s): partway,
        // then whole.
        std::fs::write(scratch.www().join("big.bin"), pattern(1_500_000, 7)).unwrap();
        let task = session.data_task(Request::get(server.url("/slow/big.bin")), 4 << 20);
        let partway = until(&task, |s| s.received > 0).await;
        assert_eq!((partway.state, partway.expected_to_receive), (State::Running, Some(1_500_000)));
        assert!(partway.received < 1_500_000, "{partway:?}");
        assert_eq!(task.wait().await.unwrap().body.len(), 1_500_000);
        // An upload's progress: every byte sent.
        let source = scratch.0.join("up.bin");
        std::fs::write(&source, pattern(1 << 20, 5)).unwrap();
        let upload = Upload {
            url: server.url("/put/up.bin"),
            source,
            method: Method::PUT,
            content_type: "application/octet-stream".into(),
            headers: Vec::new(),
        };
        let task = session.upload_task(upload);
        let watch = task.watch();
        let done = task.wait().await.unwrap();
        assert_eq!(done.status, 201);
        let last = *watch.borrow();
        assert_eq!((last.sent, last.expected_to_send, last.received), (1 << 20, Some(1 << 20), 0));
    });
    drop(silent);
}
