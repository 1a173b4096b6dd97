//! `nw cert` and `nw trust` on this host, and trust interop on loopback: chains made by
//! `nw cert` and by openssl, served by `openssl s_server`; mutual TLS in both directions.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{Dir, NW};

fn nw(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(NW).args(args).output().expect("run nw");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// `nw cert ca`, `server localhost 127.0.0.1` and `client alice` in `dir`.
fn make_pki(dir: &Dir) {
    let d = dir.0.to_str().unwrap();
    for args in [
        &["cert", "--dir", d, "ca"][..],
        &["cert", "--dir", d, "server", "localhost", "127.0.0.1"],
        &["cert", "--dir", d, "client", "alice"],
    ] {
        let (code, _, err) = nw(args);
        assert_eq!(code, 0, "{args:?}: {err}");
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed (scripts/test installs it)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A child killed and reaped on drop, whatever path the test takes.
struct Reaped(Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `openssl s_server` on a free loopback port; returns it and the port.
/// `nw trust 127.0.0.1:PORT ARGS…` against an `openssl s_server SERVER…` started for it and
/// stopped after.
fn trust_s_server(server: &[&str], args: &[&str]) -> (i32, String, String) {
    let (server, port) = s_server(server);
    let target = format!("127.0.0.1:{port}");
    let result = nw(&[&["trust", target.as_str()], args].concat());
    drop(server);
    result
}

fn s_server(args: &[&str]) -> (Reaped, u16) {
    let mut child = Reaped(
        Command::new("openssl")
            .args(["s_server", "-accept", "127.0.0.1:0", "-naccept", "1"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl is needed (scripts/test installs it)"),
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        if let Some(port) = line.trim().strip_prefix("ACCEPT 127.0.0.1:") {
            let port = port.parse().unwrap();
            // Keep draining what it prints so it never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut sink = String::new();
                while out.read_line(&mut sink).unwrap_or(0) > 0 {}
            });
            return (child, port);
        }
        line.clear();
    }
    panic!("openssl s_server printed no ACCEPT line");
}

#[test]
fn nw_cert_then_nw_trust_offline_with_exact_reports() {
    let dir = Dir::new("trust-offline");
    make_pki(&dir);
    let (leaf, ca, alice) = (dir.path("localhost.pem"), dir.path("ca.pem"), dir.path("alice.pem"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path("ca-key.pem")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "keys are the owner's only");
    let (code, _, err) = nw(&["cert", "--dir", dir.0.to_str().unwrap(), "ca"]);
    assert_eq!(code, 2, "nothing is overwritten without --force");
    assert!(err.contains("exists; pass --force"), "{err}");
    // A CA's directory is made when missing, its owner's only; a server's is not.
    let fresh = dir.path("new/pki");
    let (code, out, err) = nw(&["cert", "--dir", &fresh, "server", "localhost"]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("no such directory") && err.contains("nw cert ca --dir"), "{err}");
    let (code, _, err) = nw(&["cert", "--dir", &fresh, "ca"]);
    assert_eq!(code, 0, "{err}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&fresh).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "the CA's directory is the owner's only");
    assert_eq!(nw(&["cert", "--dir", &fresh, "server", "localhost"]).0, 0);
    let (code, _, err) = nw(&["cert", "--dir", &ca, "ca"]);
    assert_eq!(code, 2, "a file is not a directory");
    assert!(err.contains("not a directory"), "{err}");
    let (code, _, err) = nw(&["cert", "--dir", &format!("{ca}/pki"), "ca"]);
    assert_eq!(code, 2, "a path through a file: {err}");
    assert!(err.contains("a part of it is a file"), "{err}");

    let trust = |extra: &[&str]| {
        let mut args = vec!["trust", "--chain", &leaf, "--anchor", &ca];
        args.extend_from_slice(extra);
        nw(&args)
    };
    let (code, out, _) = trust(&["--host", "localhost"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Verdict: proceed") && out.contains("1 “nwkit test CA” — anchor (custom)"),
        "{out}"
    );
    assert_eq!(trust(&["--host", "127.0.0.1"]).0, 0, "an IP in an iPAddress entry");
    let (code, out, _) = trust(&["--host", "www.example"]);
    assert_eq!(code, 1);
    assert!(out.contains("\nCertificate 0 “localhost” has errors: Hostname mismatch;\n"), "{out}");
    assert!(out.contains("Verdict: recoverable failure"), "{out}");
    let (code, out, _) = trust(&["--host", "127.0.0.2"]);
    assert_eq!(code, 1, "{out}");
    let (code, out, _) = trust(&["--host", "localhost", "--at", "2040-01-01T00:00:00Z"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("Certificate 0 “localhost” has errors: Certificate has expired;"),
        "{out}"
    );
    assert!(out.contains("verify time 2040-01-01T00:00:00Z"), "{out}");
    let (code, _, err) = trust(&["--host", "localhost", "--at", "tomorrow"]);
    assert_eq!(code, 2);
    assert!(err.contains("RFC 3339"), "{err}");
    let (code, out, _) = trust(&["--host", "localhost", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((&v["verdict"], &v["anchor_class"]), (&"proceed".into(), &"custom".into()), "{v}");

    // A client identity is trusted under the client policy, and is no server certificate.
    let (code, out, _) =
        nw(&["trust", "--chain", &alice, "--client", "--anchor", &ca, "--host", "x"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = nw(&["trust", "--chain", &alice, "--anchor", &ca, "--host", "alice"]);
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "Certificate 0 “alice” has errors: Extended key usage does not match certificate usage;"
        ),
        "{out}"
    );

    // Without --anchor, the system store: our private root is in it nowhere.
    let (code, out, err) = nw(&["trust", "--chain", &leaf, "--host", "localhost"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("Certificate 0 “localhost” has errors: Missing issuer;"), "{out}");

    // Hard-fail revocation with no way to check: recoverable, saying why.
    let (code, out, _) = trust(&["--host", "localhost", "--revocation", "hard"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("Certificate 0 “localhost” has errors: Revocation status unknown;"),
        "{out}"
    );
    assert!(out.contains("names no CRL distribution point"), "{out}");

    // A log list that is not one is a usage error that says so.
    let (code, _, err) = trust(&["--host", "localhost", "--ct-log-list", &ca]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not valid v3 log-list JSON"), "{err}");
    let (code, _, err) = trust(&["--host", "localhost", "--ct-log-list", "/nonexistent.json"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent.json"), "{err}");

    let (code, _, err) = nw(&["trust", "--chain", "/nonexistent.pem", "--host", "x"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent.pem"), "{err}");
    let (code, _, err) = nw(&["trust", "--chain", &dir.path("ca-key.pem"), "--host", "x"]);
    assert_eq!(code, 2, "a key is not a chain");
    assert!(err.contains("no PEM certificate"), "{err}");
}

#[test]
fn nw_trust_against_openssl_s_server_with_nw_cert_and_openssl_chains() {
    let dir = Dir::new("trust-online");
    make_pki(&dir);
    let (code, out, err) = trust_s_server(
        &["-cert", &dir.path("localhost.pem"), "-key", &dir.path("localhost-key.pem")],
        &["--host", "localhost", "--anchor", &dir.path("ca.pem")],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 “localhost”") && out.contains("Verdict: proceed"), "{out}");

    // A chain openssl made: root, intermediate, leaf; the server presents leaf + intermediate.
    let d = &dir.0;
    std::fs::write(
        d.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    std::fs::write(
        d.join("leaf.ext"),
        "subjectAltName=DNS:api.example\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-subj",
            "/CN=OpenSSL Root",
            "-days",
            "30",
            "-sha256",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "int.key",
            "-out",
            "int.csr",
            "-subj",
            "/CN=OpenSSL Intermediate",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "int.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-out",
            "int.pem",
            "-days",
            "20",
            "-sha256",
            "-extfile",
            "ca.ext",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=api.example",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "int.pem",
            "-CAkey",
            "int.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "10",
            "-sha256",
            "-extfile",
            "leaf.ext",
        ],
    );
    let (leaf, key) = (dir.path("leaf.pem"), dir.path("leaf.key"));
    let anchored = ["--host", "api.example", "--anchor", &dir.path("root.pem")];
    let (code, out, err) = trust_s_server(
        &["-cert", &leaf, "-key", &key, "-cert_chain", &dir.path("int.pem")],
        &anchored,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("1 “OpenSSL Intermediate”") && out.contains("2 “OpenSSL Root” — anchor"),
        "{out}"
    );
    assert!(out.contains("RSA 2048-bit"), "{out}");

    let (code, out, _) = trust_s_server(&["-cert", &leaf, "-key", &key], &anchored);
    assert_eq!(code, 1, "without its intermediate: {out}");
    assert!(out.contains("Certificate 0 “api.example” has errors: Missing issuer;"), "{out}");
}

#[test]
fn mutual_tls_both_directions() {
    let dir = Dir::new("trust-mtls");
    make_pki(&dir);
    let (ca, leaf, leaf_key) =
        (dir.path("ca.pem"), dir.path("localhost.pem"), dir.path("localhost-key.pem"));
    let (alice, alice_key) = (dir.path("alice.pem"), dir.path("alice-key.pem"));

    // openssl s_server with our certificate, requiring a client identity under our CA.
    let requiring_identity =
        ["-cert", &leaf, "-key", &leaf_key, "-CAfile", &ca, "-Verify", "1", "-verify_return_error"];

    // nw cat presents its identity to openssl s_server, which requires one.
    let (mut server, port) = s_server(&requiring_identity);
    let port_s = port.to_string();
    let mut client = Command::new(NW)
        .args([
            "cat",
            "--tls",
            "--report",
            "--anchor",
            &ca,
            "--cert",
            &alice,
            "--key",
            &alice_key,
            "localhost",
            &port_s,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    client.stdin.take().unwrap().write_all(b"hello from alice\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = server.kill();
    let server_err = {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut s);
        s
    };
    let out = client.wait_with_output().unwrap();
    let _ = server.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(server_err.contains("depth=0 CN = alice"), "openssl verified alice: {server_err}");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        report.contains(
            "the server asked for a client certificate (accepts CN=nwkit test CA): sent “alice”"
        ),
        "the acceptable CAs the server named, and what was sent: {report}"
    );

    // Without an identity the server refuses.
    let (mut server, port) = s_server(&requiring_identity);
    let out = Command::new(NW)
        .args(["cat", "--tls", "--anchor", &ca, "localhost", &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(!out.status.success(), "no client certificate, no connection");

    // nw cat -l requires one from openssl s_client, and names its CA as acceptable.
    let mut listener = Reaped(
        Command::new(NW)
            .args([
                "cat",
                "-l",
                "--tls",
                "--cert",
                &leaf,
                "--key",
                &leaf_key,
                "--client-ca",
                &ca,
                "127.0.0.1",
                "0",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut err = BufReader::new(listener.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let port = line.trim().rsplit(':').next().unwrap().to_owned();
    let s_client = |identity: bool| {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-CAfile",
            &ca,
            "-verify_return_error",
        ]);
        if identity {
            cmd.args(["-cert", &alice, "-key", &alice_key]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"hello from openssl\n").unwrap();
        child.wait_with_output().unwrap()
    };
    // First a client without an identity: refused, the listener keeps waiting.
    let refused = s_client(false);
    let refused_out = String::from_utf8_lossy(&refused.stdout).into_owned();
    assert!(
        refused_out.contains("Acceptable client certificate CA names")
            && refused_out.contains("CN = nwkit test CA"),
        "{refused_out}"
    );
    let accepted = s_client(true);
    let mut got = String::new();
    BufReader::new(listener.stdout.take().unwrap()).read_line(&mut got).unwrap();
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!(
        got,
        "hello from openssl\n",
        "s_client: {}",
        String::from_utf8_lossy(&accepted.stderr)
    );
}

/// A stapled OCSP response from `openssl ocsp`, served by `openssl s_server -status_file`:
/// nw trust (through rustls, which asks for stapling) reports a revoked leaf, and trusts a
/// good one.
#[test]
fn nw_trust_reads_the_ocsp_response_openssl_s_server_staples() {
    let dir = Dir::new("trust-ocsp");
    let pki = nw_lab::ocsp::Pki::new(&dir.0, "ok.example")
        .unwrap_or_else(|e| panic!("the OCSP test PKI: {e}"));
    for (name, revoked) in [("revoked", true), ("good", false)] {
        pki.response(name, revoked, "ca").unwrap();
    }
    for (staple, want) in [("revoked.der", 1), ("good.der", 0)] {
        let (code, out, err) = trust_s_server(
            &[
                "-cert",
                &dir.path("leaf.pem"),
                "-key",
                &dir.path("leaf.key"),
                "-status_file",
                &dir.path(staple),
            ],
            &["--host", "ok.example", "--anchor", &dir.path("ca.pem"), "--revocation", "off"],
        );
        assert_eq!(code, want, "{staple}: {out}{err}");
        if want == 1 {
            assert!(
                out.contains("Certificate 0 “ok.example” has errors: Certificate is revoked;"),
                "{out}"
            );
            assert!(out.contains("Verdict: fatal failure"), "{out}");
        }
    }
}

/// Certificate files are bounded and checked: `--chain /dev/zero` is refused at once instead
/// of read without end, and an `--anchor` whose block is not a certificate is refused, naming
/// the file, exactly as `--chain` refuses it — never silently dropped.
#[test]
fn unusable_certificate_files_are_refused_naming_them() {
    let dir = Dir::new("trust-bad-files");
    make_pki(&dir);
    let (leaf, ca) = (dir.path("localhost.pem"), dir.path("ca.pem"));
    let started = std::time::Instant::now();
    let (code, _, err) = nw(&["trust", "--chain", "/dev/zero", "--host", "localhost"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/dev/zero") && err.contains("larger than"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    let (code, _, err) =
        nw(&["trust", "--chain", &leaf, "--anchor", "/dev/zero", "--host", "localhost"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--anchor") && err.contains("larger than"), "{err}");

    // Valid PEM armour around bytes that are no certificate.
    let garbage = dir.path("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for flag in ["--anchor", "--chain"] {
        let (chain, anchor) = if flag == "--chain" { (&garbage, &ca) } else { (&leaf, &garbage) };
        let (code, _, err) =
            nw(&["trust", "--chain", chain, "--anchor", anchor, "--host", "localhost"]);
        assert_eq!(code, 2, "{flag}: {err}");
        assert!(err.contains(flag) && err.contains("garbage.pem"), "{flag}: {err}");
    }
    // The same through nw cat's and nw get's --anchor.
    let (code, _, err) = nw(&["cat", "--tls", "-z", "--anchor", &garbage, "127.0.0.1", "9"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("garbage.pem") && err.contains("not an X.509 certificate"), "{err}");
}

/// `nw trust` with a state directory of its own.
fn nw_in(state: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(NW)
        .args(args)
        .env("XDG_STATE_HOME", state)
        .env_remove("NW_CT_LOG_LIST")
        .output()
        .expect("run nw");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[test]
fn update_log_list_saves_only_a_signed_list_and_public_chains_say_ct_was_not_checked() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../trust/tests/data/real-world");
    let scratch = Dir::new("ct-update");
    let www = scratch.0.join("www/v3");
    std::fs::create_dir_all(&www).unwrap();
    let list = std::fs::read(data.join("google_all_logs_list_2023-05-31.json")).unwrap();
    let sig = std::fs::read(data.join("google_all_logs_list_2023-05-31.sig")).unwrap();
    std::fs::write(www.join("log_list.json"), &list).unwrap();
    std::fs::write(www.join("log_list.sig"), &sig).unwrap();
    let mut tampered = list.clone();
    let i = tampered.iter().position(|&b| b == b'G').unwrap();
    tampered[i] = b'H';
    std::fs::write(www.join("tampered.json"), &tampered).unwrap();
    std::fs::write(www.join("tampered.sig"), &sig).unwrap();
    let server = nw_lab::nginx::Nginx::start(&scratch.0.join("www"), &Default::default())
        .unwrap_or_else(|e| panic!("nginx could not start: {e}"));
    let state = scratch.0.join("state");
    let saved = state.join("nwkit/ct/log_list.json");
    let chain = data.join("letsencrypt_org.pem");
    let judge = |state: &Path| {
        nw_in(
            state,
            &[
                "trust",
                "--chain",
                chain.to_str().unwrap(),
                "--host",
                "letsencrypt.org",
                "--at",
                "2026-04-01T00:00:00Z",
                "--revocation",
                "off",
            ],
        )
    };
    // A fresh machine: no list, the public chain proceeds, and the report says CT was not
    // checked.
    let (code, out, err) = judge(&state);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("Verdict: proceed"), "{out}");
    assert!(out.contains("Note: Certificate Transparency not checked: no log list"), "{out}");
    // A list whose signature does not verify is refused and nothing is written.
    let (code, _, err) =
        nw_in(&state, &["trust", "update-log-list", "--from", &server.url("/v3/tampered.json")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("signature is refused") && err.contains("nothing was saved"), "{err}");
    assert!(!saved.exists());
    // The signed one is saved, and read by the next evaluation: three years old at the verify
    // time, so still not enforced, and the note says how old.
    let (code, out, err) =
        nw_in(&state, &["trust", "update-log-list", "--from", &server.url("/v3/log_list.json")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("signature checked"), "{out}");
    assert_eq!(std::fs::read(&saved).unwrap(), list);
    let (code, out, err) = judge(&state);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the log list is 1035 days old"), "{out}");
    // A corrupt installed list is said, and left out.
    std::fs::write(&saved, b"garbage").unwrap();
    let (code, out, err) = judge(&state);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("ignoring the installed CT log list"), "{err}");
}
