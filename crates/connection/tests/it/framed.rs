//! Framers on live loopback connections, through the listener and the race.

use std::sync::Arc;

use nw_connection::SystemConfig;
use nw_connection::{Framed, FramedError};
use nw_connection::{Framing, Width};
use nw_connection::{Handler, Listener, ListenerConfig};
use nw_connection::{Io, Parameters, SystemResolver, connect};
use tokio::io::AsyncWriteExt;

/// Echoes every message back, framed the same way, until the client finishes.
fn echo(framing: Framing) -> Handler {
    Arc::new(move |stream: Box<dyn Io>, _| {
        let framing = framing.clone();
        Box::pin(async move {
            let mut f = Framed::new(stream, framing).unwrap();
            while let Ok(Some(m)) = f.recv().await {
                if f.send(&m).await.is_err() {
                    return;
                }
            }
            let _ = f.finish().await;
        })
    })
}

async fn client(at: std::net::SocketAddr) -> Box<dyn Io> {
    let resolver = Arc::new(SystemResolver::new(SystemConfig::parse("", "")));
    let c = connect("127.0.0.1", at.port(), &Parameters::default(), resolver).await.unwrap();
    c.stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_prefixed_and_delimited_messages_round_trip() {
    let cases = [
        Framing::LengthPrefixed { width: Width::U32, max_len: 1 << 20 },
        Framing::Delimited { delimiter: b"\r\n".to_vec(), max_len: 1 << 20 },
    ];
    for framing in cases {
        let listener = Listener::bind(
            "127.0.0.1:0".parse().unwrap(),
            ListenerConfig::default(),
            echo(framing.clone()),
        )
        .await
        .unwrap();
        let mut f = Framed::new(client(listener.local_addr()).await, framing.clone()).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let messages: [&[u8]; 4] = [b"hello", b"", &big, b"last"];
        for m in messages {
            f.send(m).await.unwrap();
        }
        f.finish().await.unwrap();
        for m in messages {
            let got = f.recv().await.unwrap().unwrap_or_else(|| panic!("{framing:?}: early end"));
            assert!(got == m, "{framing:?}: a {}-byte message came back as {}", m.len(), got.len());
        }
        assert!(f.recv().await.unwrap().is_none(), "{framing:?}: a clean end between messages");
        listener.shutdown(std::time::Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_closing_mid_message_is_an_error_not_a_short_message() {
    let half: Handler = Arc::new(|mut stream: Box<dyn Io>, _| {
        Box::pin(async move {
            // Announces 10 bytes, sends 3, closes.
            let _ = stream.write_all(&[0, 0, 0, 10, b'a', b'b', b'c']).await;
            let _ = stream.shutdown().await;
        })
    });
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), ListenerConfig::default(), half)
        .await
        .unwrap();
    let framing = Framing::LengthPrefixed { width: Width::U32, max_len: 1024 };
    let mut f = Framed::new(client(listener.local_addr()).await, framing).unwrap();
    match f.recv().await {
        Err(FramedError::Truncated { buffered: 7 }) => {}
        other => panic!("want Truncated with 7 bytes buffered, got {other:?}"),
    }
    listener.shutdown(std::time::Duration::from_secs(1)).await;
}
