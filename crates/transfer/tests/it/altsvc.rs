//! Alt-Svc (RFC 7838) read and remembered, in virtual time.

use std::time::Duration;

use nw_http::altsvc::{Advertised, Cache, parse};

use crate::support::{https_origin, virtual_start};

#[test]
fn alt_svc_values_as_servers_send_them() {
    let h3 = |port, secs| Advertised::H3 { port, max_age: Duration::from_secs(secs) };
    assert_eq!(parse(r#"h3=":443"; ma=3600"#, "example.com"), h3(443, 3600));
    // No `ma`: 24 hours (RFC 7838 §3.1).
    assert_eq!(parse(r#"h3=":8443""#, "example.com"), h3(8443, 86_400));
    // The first h3 entry on this host wins; other protocols and drafts are skipped.
    assert_eq!(
        parse(r#"h3-29=":443"; ma=10, h2=":443", h3=":4433"; ma=20; persist=1"#, "example.com"),
        h3(4433, 20)
    );
    assert_eq!(parse(r#"h3="example.com:4433""#, "EXAMPLE.com"), h3(4433, 86_400));
    assert_eq!(parse(r#"h3="other.example:443""#, "example.com"), Advertised::Nothing);
    assert_eq!(parse("clear", "example.com"), Advertised::Clear);
    for garbage in ["", "h3", "h3=", r#"h3=":0""#, r#"h3=":99999""#, r#"h3="x""#, ",,;;=\""] {
        assert_eq!(parse(garbage, "example.com"), Advertised::Nothing, "{garbage:?}");
    }
}

#[test]
fn alt_svc_is_remembered_until_it_expires_is_cleared_or_breaks() {
    let origin = https_origin("example.com");
    let cache = Cache::default();
    let t0 = virtual_start();
    assert_eq!(cache.h3_port(&origin, t0), None);
    cache.learn(&origin, r#"h3=":4433"; ma=60"#, t0);
    assert_eq!(cache.h3_port(&origin, t0 + Duration::from_secs(59)), Some(4433));
    assert_eq!(cache.h3_port(&origin, t0 + Duration::from_secs(60)), None, "expired");
    cache.learn(&origin, r#"h3=":4433""#, t0);
    cache.learn(&origin, "clear", t0);
    assert_eq!(cache.h3_port(&origin, t0), None, "cleared");
    // Broken stays broken when the same alternative is advertised again; a new port is tried.
    cache.learn(&origin, r#"h3=":4433""#, t0);
    cache.broken(&origin);
    assert_eq!(cache.h3_port(&origin, t0), None);
    cache.learn(&origin, r#"h3=":4433""#, t0);
    assert_eq!(cache.h3_port(&origin, t0), None, "still broken");
    cache.learn(&origin, r#"h3=":5533""#, t0);
    assert_eq!(cache.h3_port(&origin, t0), Some(5533));
    // Other origins are unaffected.
    let other = ("https".to_owned(), "example.com".to_owned(), 8443);
    assert_eq!(cache.h3_port(&other, t0), None);
}
