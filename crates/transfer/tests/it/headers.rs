//! A download's own request header fields: sent to the URL's origin, credentials never carried
//! across a redirect to another origin, and the fields the download sets itself refused.

use std::io::Write as _;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use nw_transfer::{Configuration, TransferError};

use crate::support::{Scratch, job, runtime, session};

/// A server that records each request head and answers with `answer(path)`.
fn recording(answer: impl Fn(&str) -> String + Send + 'static) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let head = nw_lab::http::read_head(&mut stream).to_ascii_lowercase();
            let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
            seen.lock().unwrap().push(head);
            let _ = stream.write_all(answer(&path).as_bytes());
        }
    });
    (port, heads)
}

#[test]
fn credentials_go_to_the_urls_origin_only_and_own_fields_are_refused() {
    let scratch = Scratch::new("headers");
    let ok =
        |_: &str| "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_owned();
    let (far, far_heads) = recording(ok);
    let (near, near_heads) = recording(move |path| match path {
        "/away" => format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{far}/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        "/here" => {
            "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_owned()
        }
        _ => ok(path),
    });
    let session = session(&scratch, Configuration::default());
    let fields = vec![
        ("Authorization".to_owned(), "Basic YTpi".to_owned()),
        ("Cookie".to_owned(), "k=v".to_owned()),
        ("X-Token".to_owned(), "t1".to_owned()),
    ];
    let get = |path: &str, name: &str| {
        let mut j = job(format!("http://127.0.0.1:{near}{path}"), &scratch.0.join(name), false);
        j.headers.clone_from(&fields);
        runtime().block_on(session.download(&j, &mut |_| {}))
    };
    // Redirected within the origin: every field, on both requests.
    get("/here", "here").unwrap();
    let heads = near_heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 2);
    for head in &heads {
        assert!(
            head.contains("authorization: basic ytpi") && head.contains("cookie: k=v"),
            "{head}"
        );
    }
    // Redirected to another origin: the credentials stay behind, the rest goes.
    get("/away", "away").unwrap();
    let head = far_heads.lock().unwrap()[0].clone();
    assert!(head.contains("x-token: t1"), "{head}");
    assert!(!head.contains("authorization") && !head.contains("cookie"), "{head}");
    // The download's own fields, and values that would smuggle a line, are refused.
    for (name, value) in [("Range", "bytes=0-1"), ("host", "x"), ("X-A", "a\r\nX-B: b")] {
        let mut j = job(format!("http://127.0.0.1:{near}/x"), &scratch.0.join("no"), false);
        j.headers = vec![(name.to_owned(), value.to_owned())];
        let result = runtime().block_on(session.download(&j, &mut |_| {}));
        assert!(matches!(result, Err(TransferError::Usage(_))), "{name}: {result:?}");
    }
}
