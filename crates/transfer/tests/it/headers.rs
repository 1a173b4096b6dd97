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

/// A keep-alive HTTP/1.1 server that records each request as "METHOD PATH CONTENT-TYPE BODY"
/// and answers: `/api` echoes that line, `/moved` is a 307 to `/api`, `/see` a 303 to
/// `/result`, `/result` says "result". Each answer names the connection it came on.
fn api_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let seen = seen.clone();
            std::thread::spawn(move || {
                loop {
                    let (head, body) = nw_lab::http::read_request(&mut stream);
                    if head.is_empty() {
                        return;
                    }
                    let mut words = head.split_whitespace();
                    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                    let kind = nw_lab::http::field(&head, "content-type").unwrap_or("-");
                    let line = format!("{method} {path} {kind} {}", String::from_utf8_lossy(&body));
                    seen.lock().unwrap().push(line.clone());
                    let token = nw_lab::http::field(&head, "authorization").unwrap_or("");
                    let (status, location, answer) = match path {
                        "/auth" if token != "Bearer t2" => ("401 Unauthorized", "", String::new()),
                        "/moved" => ("307 Temporary Redirect", "/api", String::new()),
                        "/see" => ("303 See Other", "/result", String::new()),
                        "/result" => ("200 OK", "", "result".to_owned()),
                        _ => ("200 OK", "", line),
                    };
                    let location = if location.is_empty() {
                        String::new()
                    } else {
                        format!("Location: {location}\r\n")
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\n{location}X-Connection: {n}\r\nContent-Length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if stream.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, log)
}

/// `Session::send`: a POST with a JSON body arrives whole with its type; a 307 sends the same
/// POST and body on, a 303 turns it into a GET without them; the hops are in the metrics.
/// PUTs share a pooled connection, a POST never rides one.
#[test]
fn send_carries_any_method_and_body_through_redirects_by_rfc_9110() {
    let scratch = Scratch::new("send");
    let (port, log) = api_server();
    let session = session(&scratch, Configuration::default());
    let rt = runtime();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let post = |path: &str| nw_transfer::tasks::Request {
        method: hyper::Method::POST,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: br#"{"a":1}"#.as_slice().into(),
        ..nw_transfer::tasks::Request::get(url(path))
    };
    let done = rt.block_on(session.send(&post("/api"), 4096)).unwrap();
    assert_eq!((done.status, &done.body[..]), (200, &br#"POST /api application/json {"a":1}"#[..]));
    let done = rt.block_on(session.send(&post("/moved"), 4096)).unwrap();
    assert_eq!(&done.body[..], br#"POST /api application/json {"a":1}"#, "307 keeps it all");
    let hops: Vec<u16> = done.metrics.redirects.iter().map(|h| h.status).collect();
    assert_eq!((hops, done.url.as_str()), (vec![307], url("/api").as_str()));
    let done = rt.block_on(session.send(&post("/see"), 4096)).unwrap();
    assert_eq!(&done.body[..], b"result");
    let last = log.lock().unwrap().last().cloned().unwrap_or_default();
    assert_eq!(last, "GET /result - ", "303 makes it a GET without the body or its type");
    // A POST always gets a connection of its own; a second PUT rides the first one's.
    let connection = |d: &nw_transfer::tasks::Data| {
        d.headers.iter().find(|(n, _)| n == "x-connection").map(|(_, v)| v.clone())
    };
    let put = nw_transfer::tasks::Request { method: hyper::Method::PUT, ..post("/api") };
    let (a, b) = (
        rt.block_on(session.send(&put, 4096)).unwrap(),
        rt.block_on(session.send(&put, 4096)).unwrap(),
    );
    assert!(b.metrics.reused && connection(&a) == connection(&b), "{a:?} {b:?}");
    let c = rt.block_on(session.send(&post("/api"), 4096)).unwrap();
    assert!(!c.metrics.reused && connection(&c) != connection(&b), "{c:?}");
    // A plain GET, as data tasks send it.
    let get = nw_transfer::tasks::Request::get(url("/api"));
    assert_eq!(&rt.block_on(session.send(&get, 4096)).unwrap().body[..], b"GET /api - ");

    // A 401 to the credential provider's token: its fresh one, and the POST once more, whole.
    #[derive(Debug, Default)]
    struct Tokens(std::sync::atomic::AtomicU32);
    impl nw_transfer::CredentialProvider for Tokens {
        fn authorization<'a>(
            &'a self,
            _: &'a str,
            _: Option<nw_transfer::Refused<'a>>,
        ) -> nw_connection::BoxFuture<'a, Option<String>> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            Box::pin(async move { Some(format!("Bearer t{n}")) })
        }
    }
    let config = Configuration {
        credentials: Some(Arc::new(Tokens::default())),
        ..Configuration::default()
    };
    let authorized = nw_transfer::Session::ephemeral(config).unwrap();
    let done = rt.block_on(authorized.send(&post("/auth"), 4096)).unwrap();
    assert_eq!(
        (done.status, &done.body[..]),
        (200, &br#"POST /auth application/json {"a":1}"#[..])
    );
    let tries = log.lock().unwrap().iter().filter(|l| l.starts_with("POST /auth ")).count();
    assert_eq!(tries, 2, "refused once, then sent again with the fresh token");
}
