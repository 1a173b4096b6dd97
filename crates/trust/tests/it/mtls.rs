//! Mutual TLS through real rustls handshakes (in memory): the client picks its identity from the
//! server's acceptable-CA list and exposes that list; the server's nw-trust verifier decides.

use std::sync::Arc;

use nw_trust::TrustVerifier;
use nw_trust::ca::TestCa;
use nw_trust::{Anchor, AnchorClass, Options, Policy};
use nw_trust::{Identities, IdentityRequest as Request};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn key(pem: &str) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn custom(ca: &TestCa, policy: Policy) -> Options {
    Options {
        policy,
        anchors: vec![Anchor { der: ca.root_der(), class: AnchorClass::Custom }],
        ..Options::default()
    }
}

/// Runs the handshake to its end; the first error either side raises.
fn handshake(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> Result<(), rustls::Error> {
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets()?;
        }
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("the handshake did not finish");
}

struct Setup {
    server: ServerConnection,
    client: ClientConnection,
    identities: Arc<Identities>,
}

/// A server whose certificate comes from `server_ca` and who accepts clients under
/// `client_ca`; a client holding `offered` identities.
fn setup(server_ca: &TestCa, client_ca: &TestCa, offered: &[(&TestCa, &str)]) -> Setup {
    let served = server_ca.server(&["api.example"]).unwrap();
    let clients = TrustVerifier::new(custom(client_ca, Policy::Client), provider());
    let server_config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(Arc::new(clients))
        .with_single_cert(served.chain, key(&served.key_pem))
        .unwrap();
    let mut identities = Identities::new();
    for (ca, name) in offered {
        let issued = ca.client(name).unwrap();
        identities.add(issued.chain, key(&issued.key_pem), &provider()).unwrap();
    }
    let identities = Arc::new(identities);
    let server_trust = TrustVerifier::new(custom(server_ca, Policy::Server), provider());
    let client_config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(server_trust))
        .with_client_cert_resolver(identities.clone());
    Setup {
        server: ServerConnection::new(Arc::new(server_config)).unwrap(),
        client: ClientConnection::new(Arc::new(client_config), "api.example".try_into().unwrap())
            .unwrap(),
        identities,
    }
}

#[test]
fn the_identity_the_server_accepts_is_chosen_from_its_ca_list() {
    let (server_ca, one, two) = (
        TestCa::new("Server CA").unwrap(),
        TestCa::new("CA one").unwrap(),
        TestCa::new("CA two").unwrap(),
    );
    let mut s = setup(&server_ca, &two, &[(&one, "alice"), (&two, "bob")]);
    handshake(&mut s.client, &mut s.server).unwrap();
    let peer = s.server.peer_certificates().unwrap();
    assert_eq!(nw_trust::Facts::parse(0, &peer[0]).unwrap().name, "bob");
    assert_eq!(
        s.identities.last_request(),
        Some(Request { acceptable_cas: vec!["CN=CA two".into()], sent: Some("bob".into()) })
    );
}

#[test]
fn with_no_acceptable_identity_none_is_sent_and_the_server_decides() {
    let (server_ca, one, two) = (
        TestCa::new("Server CA").unwrap(),
        TestCa::new("CA one").unwrap(),
        TestCa::new("CA two").unwrap(),
    );
    let mut s = setup(&server_ca, &two, &[(&one, "alice")]);
    let e = handshake(&mut s.client, &mut s.server).unwrap_err();
    assert!(matches!(e, rustls::Error::NoCertificatesPresented), "{e:?}");
    assert_eq!(s.identities.last_request().unwrap().sent, None);
}

#[test]
fn a_key_that_does_not_fit_its_certificate_is_refused() {
    let ca = TestCa::new("CA one").unwrap();
    let (alice, bob) = (ca.client("alice").unwrap(), ca.client("bob").unwrap());
    let e = Identities::new().add(alice.chain, key(&bob.key_pem), &provider()).unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
}
