use super::*;
use nw_trust::ca::TestCa;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs a handshake over an in-memory pipe; returns the client's error text, if any.
async fn handshake(
    ca: &TestCa,
    cert_names: &[&str],
    client: &ClientOptions,
    sni: &str,
) -> Result<Negotiated, String> {
    let issued = ca.server(cert_names).unwrap();
    let server =
        server_config(issued.chain.clone(), issued.key().unwrap(), &[b"h2".to_vec()]).unwrap();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let srv = tokio::spawn(async move {
        if let Ok(mut s) = acceptor.accept(b).await {
            let _ = s.write_all(b"hi").await;
            let _ = s.shutdown().await;
        }
    });
    let connector = tokio_rustls::TlsConnector::from(client.config().unwrap());
    let result = connector.connect(server_name(sni).unwrap(), a).await;
    let out = match result {
        Ok(mut s) => {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf).await;
            assert_eq!(buf, b"hi");
            let (_, conn) = s.get_ref();
            Ok(Negotiated {
                version: format!("{:?}", conn.protocol_version().unwrap()),
                cipher: format!("{:?}", conn.negotiated_cipher_suite().unwrap().suite()),
                alpn: conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
                server_name: sni.to_owned(),
                resumed: Some(conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)),
            })
        }
        Err(e) => Err(e.to_string()),
    };
    srv.abort();
    out
}

fn trusting(ca: &TestCa) -> ClientOptions {
    ClientOptions {
        extra_anchors: vec![ca.root_der()],
        alpn: vec![b"h2".to_vec()],
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn a_test_ca_server_is_trusted_with_its_root_and_not_without() {
    let ca = TestCa::new("nwkit test CA").unwrap();
    let ok = handshake(&ca, &["www.test"], &trusting(&ca), "www.test").await.unwrap();
    assert_eq!(ok.version, "TLSv1_3");
    assert_eq!(ok.alpn.as_deref(), Some("h2"));
    let err =
        handshake(&ca, &["www.test"], &ClientOptions::default(), "www.test").await.unwrap_err();
    // Refused by nw-trust's evaluation, which says which certificate and why.
    assert!(err.contains("Certificate 1 “nwkit test CA” has errors: Root is not trusted"), "{err}");
}

#[tokio::test]
async fn the_name_must_be_in_the_san_and_ip_literals_match_ip_sans() {
    let ca = TestCa::new("nwkit test CA").unwrap();
    let err = handshake(&ca, &["www.test"], &trusting(&ca), "other.test").await.unwrap_err();
    assert!(err.contains("Hostname mismatch"), "{err}");
    handshake(&ca, &["198.51.100.2"], &trusting(&ca), "198.51.100.2").await.unwrap();
    handshake(&ca, &["2001:db8:1::2"], &trusting(&ca), "[2001:db8:1::2]").await.unwrap();
}

#[test]
fn pem_files_load_or_say_what_is_wrong() {
    let ca = TestCa::new("nwkit test CA").unwrap();
    let issued = ca.server(&["www.test"]).unwrap();
    let dir = std::env::temp_dir().join(format!("nw-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key, junk) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("junk.pem"));
    std::fs::write(&cert, &issued.chain_pem).unwrap();
    std::fs::write(&key, &issued.key_pem).unwrap();
    std::fs::write(&junk, "not a certificate\n").unwrap();
    assert_eq!(load_certs(&cert).unwrap().len(), 2);
    load_key(&key).unwrap();
    let e = load_certs(&junk).unwrap_err().to_string();
    assert!(e.contains("junk.pem") && e.contains("PEM"), "{e}");
    let e = load_key(&junk).unwrap_err().to_string();
    assert!(e.contains("junk.pem"), "{e}");
    let e = load_certs(&dir.join("missing.pem")).unwrap_err().to_string();
    assert!(e.contains("missing.pem"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(server_name("not a name!").is_err());
}
