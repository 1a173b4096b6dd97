//! Local network privacy in namespaces: what a denied app sees from nw-connection and `nw cat`
//! (TCP, UDP, QUIC, names, `.local`, multicast), the internet beside it untouched, the host's
//! switch, and identities that survive a new build and ignore the launcher.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use nw_lab::{Lab, Namespace, Pair, in_namespace};
use serde_json::Value;

use crate::support::{Dir, Events, NW};

const PORT: u16 = 8097;
/// An address of the far namespace that the client reaches through its default route.
const ROUTED: &str = "203.0.113.5";

struct Scene {
    p: Pair,
    dir: Dir,
    _listener: TcpListener,
    _lab: Lab,
}

impl Scene {
    fn new(tag: &str) -> Self {
        let lab = Lab::new().unwrap_or_else(|e| panic!("lab setup failed: {e}"));
        let p = lab.pair().unwrap_or_else(|e| panic!("lab setup failed: {e}"));
        p.srv.add_address("lo", ROUTED.parse().unwrap(), 32).unwrap();
        p.cli
            .set_hosts(&format!(
                "127.0.0.1 localhost\n198.51.100.2 www.test\n2001:db8:1::2 www.test\n198.51.100.2 mixed.test\n{ROUTED} mixed.test\n"
            ))
            .unwrap();
        let listener = in_namespace(&p.srv, || TcpListener::bind(("::", PORT))).unwrap().unwrap();
        let dir = Dir::new(&format!("lnp-{tag}"));
        Self { p, dir, _listener: listener, _lab: lab }
    }

    /// Runs `program` (nw or a copy of it) in the client with this scene's store and policy.
    fn run(&self, program: &str, args: &[&str]) -> (Output, Duration) {
        run_in(&self.p.cli, &self.dir, program, args)
    }

    /// `nw ARGS` in the client with this scene's store and policy, its output piped, not
    /// waited for; stdin piped too when `input`.
    fn spawn_nw(&self, args: &[&str], input: bool) -> std::process::Child {
        let mut cmd = command_in(&self.p.cli, &self.dir, NW, args);
        if input {
            cmd.stdin(Stdio::piped());
        }
        cmd.spawn().unwrap_or_else(|e| panic!("nw {args:?}: {e}"))
    }

    /// Starts `script` (Python) in the far namespace with `args` and waits for its "ready"
    /// line; the rest of what it prints follows.
    fn far_python(
        &self,
        script: &str,
        args: &[&str],
    ) -> (std::process::Child, std::io::Lines<std::io::BufReader<std::process::ChildStdout>>) {
        use std::io::BufRead as _;
        let mut cmd = self.p.srv.command("python3");
        cmd.arg(script).args(args).stdout(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("python3 is needed (apt-get install python3): {e}"));
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = lines.next().and_then(Result::ok);
        assert_eq!(ready.as_deref(), Some("ready"), "{script} did not start");
        (child, lines)
    }

    fn nw(&self, args: &[&str]) -> Output {
        let (out, _) = self.run(NW, args);
        assert!(out.status.code().is_some(), "nw {args:?} was killed");
        out
    }

    fn lnp(&self, args: &[&str]) {
        let mut all = vec!["lnp"];
        all.extend_from_slice(args);
        let out = self.nw(&all);
        assert_eq!(out.status.code(), Some(0), "nw {all:?}: {}", text(&out.stderr));
    }
}

fn run_in(ns: &Namespace, dir: &Dir, program: &str, args: &[&str]) -> (Output, Duration) {
    let mut cmd = command_in(ns, dir, program, args);
    let t = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    (out, t.elapsed())
}

/// `program ARGS` in `ns` with the store and policy in `dir`, stdin empty, output piped.
fn command_in(ns: &Namespace, dir: &Dir, program: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = ns.command(program);
    cmd.args(args)
        .env("NW_LNP_STORE", dir.path("lnp.toml"))
        .env("NW_LNP_POLICY", dir.path("policy.toml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Whether `nw lnp log --json`'s `log` has a denial of `id` for `destination` in `direction`.
fn denied_in_log(log: &str, id: &str, destination: &str, direction: &str) -> bool {
    log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).any(|d| {
        d["identity"] == id && d["destination"] == destination && d["direction"] == direction
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts a refusal that says "local network prohibited", names the app, and is not a
/// routing error, at once.
fn assert_prohibited(label: &str, (out, took): &(Output, Duration), id: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{label}: {err}");
    assert!(err.contains("local network prohibited"), "{label}: {err}");
    assert!(err.contains(id), "{label}: the app is named: {err}");
    assert!(!err.to_lowercase().contains("no route"), "{label}: {err}");
    assert!(*took < Duration::from_secs(3), "{label}: refused after {took:?}, not at once");
    err
}

fn assert_connects(label: &str, (out, _): &(Output, Duration)) {
    assert_eq!(out.status.code(), Some(0), "{label}: {}", text(&out.stderr));
}

/// The identity `program` gets in the client namespace, as it identifies itself.
fn identity_of(s: &Scene, program: &str) -> String {
    let (out, _) = s.run(program, &["lnp", "identify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    assert!(
        id.starts_with("exe:"),
        "{program} is identified as {id}: run this test outside a systemd service or Flatpak, whose processes all share its identity"
    );
    id
}

#[test]
fn netns_lnp_a_denied_app_is_told_local_network_prohibited_and_reaches_the_internet_untouched() {
    let s = Scene::new("deny");
    let id = identity_of(&s, NW);
    let port = PORT.to_string();
    // Off by default: everything connects.
    assert_connects("check off by default", &s.run(NW, &["cat", "-z", "198.51.100.2", &port]));
    s.lnp(&["on"]);
    s.lnp(&["deny", &id]);

    let tcp = assert_prohibited("TCP", &s.run(NW, &["cat", "-z", "198.51.100.2", &port]), &id);
    assert!(
        tcp.contains("may not reach 198.51.100.2, on the local network 198.51.100.0/24 on eth0: the permission store denies it"),
        "{tcp}"
    );
    assert!(tcp.contains(&format!("nw lnp allow {id}")), "the way out is given: {tcp}");
    let cases: [(&str, Vec<&str>); 7] = [
        ("TCP over IPv6", vec!["cat", "-z", "2001:db8:1::2", &port]),
        ("UDP", vec!["cat", "-u", "198.51.100.2", "5353"]),
        ("QUIC", vec!["cat", "--quic", "--alpn", "h3", "198.51.100.2", "4433"]),
        ("a name whose addresses are on the link", vec!["cat", "-z", "www.test", &port]),
        ("a .local name", vec!["cat", "-z", "printer.local", &port]),
        ("a multicast send", vec!["cat", "-u", "224.0.0.251", "5353"]),
        ("a broadcast send", vec!["cat", "-u", "198.51.100.255", "9"]),
    ];
    for (label, args) in &cases {
        let err = assert_prohibited(label, &s.run(NW, args), &id);
        eprintln!("{label}: {}", err.lines().next().unwrap_or_default());
    }
    // A download says the same, with the way out, and leaves no file behind.
    let saved = s.dir.path("got.bin");
    let url = format!("http://198.51.100.2:{port}/file");
    let err = assert_prohibited("nw get", &s.run(NW, &["get", &url, "-o", &saved]), &id);
    assert!(err.contains("nw lnp allow"), "{err}");
    assert!(!std::path::Path::new(&saved).exists(), "a file was left");
    assert!(!std::path::Path::new(&format!("{saved}.part")).exists(), "a .part was left");
    // --json carries the report, its path ending in the reason.
    let (out, _) = s.run(NW, &["cat", "-z", "--json", "198.51.100.2", &port]);
    let err = text(&out.stderr);
    let report: Value = serde_json::from_str(err.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the report is the first line on stderr ({e}): {err}"));
    let last = report["path"].as_array().and_then(|p| p.last()).cloned().unwrap_or_default();
    assert_eq!(last["reason"], "local_network_prohibited", "{report}");

    // The internet beside it is untouched: through the router, no permission is needed.
    assert_connects("routed", &s.run(NW, &["cat", "-z", ROUTED, &port]));
    // A name with an address on the link and one beyond it: the local one is never tried,
    // the other connects, and the report says which was refused and why.
    let (out, _) = s.run(NW, &["cat", "-z", "--json", "mixed.test", &port]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let report: Value = serde_json::from_str(err.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {err}"));
    assert_eq!(report["connected"], format!("{ROUTED}:{port}"), "{report}");
    assert_eq!(report["local_network_refused"][0]["destination"], "198.51.100.2", "{report}");
    assert_eq!(report["local_network_refused"][0]["identity"], id.as_str(), "{report}");

    // Each denial is logged with the app and the destination.
    let log = text(&s.nw(&["lnp", "log", "--json"]).stdout);
    let denials: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(
        denials.iter().any(|d| d["identity"] == id.as_str() && d["destination"] == "198.51.100.2"),
        "{log}"
    );
    assert!(denials.iter().any(|d| d["destination"] == "printer.local"), "{log}");

    // The host's switch lets everything through at once, and back.
    s.lnp(&["off"]);
    assert_connects("check off", &s.run(NW, &["cat", "-z", "198.51.100.2", &port]));
    s.lnp(&["on"]);
    assert_prohibited("on again", &s.run(NW, &["cat", "-z", "198.51.100.2", &port]), &id);
    s.lnp(&["allow", &id]);
    assert_connects("allowed", &s.run(NW, &["cat", "-z", "www.test", &port]));
    // Forgotten: nobody to ask on this headless host, so the headless answer (deny).
    s.lnp(&["reset", &id]);
    let err = assert_prohibited("reset", &s.run(NW, &["cat", "-z", "198.51.100.2", &port]), &id);
    assert!(err.contains("nobody has decided for this app"), "{err}");
    // A store that does not parse refuses local destinations, saying so; never "allow all".
    std::fs::write(s.dir.path("lnp.toml"), "check = on\n").unwrap();
    let err =
        assert_prohibited("broken store", &s.run(NW, &["cat", "-z", "198.51.100.2", &port]), &id);
    assert!(err.contains("does not parse"), "{err}");
    assert_connects("broken store, routed", &s.run(NW, &["cat", "-z", ROUTED, &port]));
}

#[test]
fn netns_lnp_a_new_build_keeps_its_permission_and_launchers_do_not_lend_theirs() {
    let s = Scene::new("identity");
    let port = PORT.to_string();
    // The app: a copy of nw of its own, so it has an identity of its own.
    let app = s.dir.path("app");
    std::fs::copy(NW, &app).unwrap();
    let id = identity_of(&s, &app);
    assert_eq!(id, format!("exe:{app}"));
    s.lnp(&["on"]);
    s.lnp(&["allow", &id]);
    let connect = ["cat", "-z", "198.51.100.2", port.as_str()];
    assert_connects("allowed", &s.run(&app, &connect));
    // A new build replaces the file (a new inode, new bytes): the permission stays.
    std::fs::remove_file(&app).unwrap();
    let mut build = std::fs::read(NW).unwrap();
    build.extend_from_slice(b"\0a new build");
    std::fs::write(&app, build).unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_connects("after an update", &s.run(&app, &connect));

    // Launchers the app is started by are denied; the app is judged as itself.
    let wrapper = s.dir.path("wrapper.sh");
    std::fs::write(&wrapper, format!("#!/bin/sh\n\"{app}\" \"$@\"\nexit $?\n")).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let launcher = s.dir.path("launcher.py");
    std::fs::write(
        &launcher,
        "import subprocess, sys\nsys.exit(subprocess.run(sys.argv[1:]).returncode)\n",
    )
    .unwrap();
    for launcher_id in [format!("script:{wrapper}"), format!("script:{launcher}")] {
        s.lnp(&["deny", &launcher_id]);
    }
    s.lnp(&[
        "deny",
        &format!("exe:{}", std::fs::canonicalize("/usr/bin/strace").unwrap().display()),
    ]);
    let mut through_wrapper = vec![wrapper.as_str()];
    through_wrapper.extend_from_slice(&connect);
    assert_connects("through a shell wrapper", &s.run("/bin/sh", &through_wrapper));
    let mut through_launcher = vec![launcher.as_str(), app.as_str()];
    through_launcher.extend_from_slice(&connect);
    assert_connects("through a launcher", &s.run("/usr/bin/python3", &through_launcher));
    let mut traced = vec!["-f", "-qq", "-o", "/dev/null", app.as_str()];
    traced.extend_from_slice(&connect);
    assert_connects("under strace, a debugger-like launcher", &s.run("/usr/bin/strace", &traced));

    // And the other way round: a denied app stays denied whatever allowed launcher starts it.
    s.lnp(&["deny", &id]);
    for launcher_id in [format!("script:{wrapper}"), format!("script:{launcher}")] {
        s.lnp(&["allow", &launcher_id]);
    }
    assert_prohibited("denied, through a wrapper", &s.run("/bin/sh", &through_wrapper), &id);
    assert_prohibited(
        "denied, through a launcher",
        &s.run("/usr/bin/python3", &through_launcher),
        &id,
    );
    assert_prohibited("denied, under strace", &s.run("/usr/bin/strace", &traced), &id);
}

/// A plain program: connects (TCP) or sends and waits for an answer (UDP), and prints `ok`,
/// `timeout` or the errno's name.
const PROBE: &str = r#"
import errno, socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    if kind == "tcp":
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect((host, port))
        print("ok")
    else:
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.settimeout(1.5)
        s.connect((host, port))
        s.send(b"x")
        try:
            s.recv(16)
            print("ok")
        except socket.timeout:
            print("timeout")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e)))
"#;

#[test]
fn netns_lnp_the_filter_host_holds_plain_programs_to_the_permission_and_never_queues_the_internet()
{
    let s = Scene::new("filter");
    let port = PORT.to_string();
    let (allowed, denied) = (s.dir.path("allowed.py"), s.dir.path("denied.py"));
    for p in [&allowed, &denied] {
        std::fs::write(p, PROBE).unwrap();
    }
    let curl = std::fs::canonicalize("/usr/bin/curl")
        .unwrap_or_else(|e| panic!("curl is needed (apt-get install curl): {e}"));
    s.lnp(&["on"]);
    s.lnp(&["deny", &format!("exe:{}", curl.display())]);
    s.lnp(&["deny", &format!("script:{denied}")]);
    s.lnp(&["allow", &format!("script:{allowed}")]);

    let mut cmd = s.p.cli.command(NW);
    cmd.args(["filter", "up", "--local-network", "--json"])
        .env("NW_LNP_STORE", s.dir.path("lnp.toml"))
        .env("NW_LNP_POLICY", s.dir.path("policy.toml"));
    let mut host = Events::spawn(&s.p.cli, cmd);
    let ready = host.event("ready");
    assert_eq!(ready["scope"], "local_network", "{ready}");

    let probe = |script: &str, kind: &str, to: &str, port: &str| {
        let (out, took) = s.run("/usr/bin/python3", &[script, kind, to, port]);
        (text(&out.stdout).trim().to_owned(), took)
    };
    // TCP: the denied program is refused at once; the allowed one connects.
    let (said, took) = probe(&denied, "tcp", "198.51.100.2", &port);
    assert_eq!(said, "ECONNREFUSED", "a denied connect is refused, not left to hang");
    assert!(took < Duration::from_secs(3), "refused after {took:?}");
    assert_eq!(probe(&allowed, "tcp", "198.51.100.2", &port).0, "ok");
    assert_eq!(probe(&denied, "tcp", "2001:db8:1::2", &port).0, "ECONNREFUSED");
    // UDP: the denied program's datagram is answered with ICMP administratively prohibited;
    // the allowed one's reaches the peer, whose closed port answers.
    assert_eq!(probe(&denied, "udp", "198.51.100.2", "9").0, "EHOSTUNREACH");
    assert_eq!(probe(&allowed, "udp", "198.51.100.2", "9").0, "ECONNREFUSED");
    // A multicast send is gated the same way (no ICMP answers a multicast send).
    probe(&denied, "udp", "224.0.0.251", "5353");
    // curl, denied, fails at once.
    let t = Instant::now();
    let (out, _) = s.run(
        "/usr/bin/curl",
        &["-sS", "-o", "/dev/null", "--max-time", "5", &format!("http://198.51.100.2:{port}/")],
    );
    assert_eq!(out.status.code(), Some(7), "curl: {}", text(&out.stderr));
    assert!(t.elapsed() < Duration::from_secs(3), "curl refused after {:?}", t.elapsed());
    // The internet is not queued at all, for a denied program either.
    assert_eq!(probe(&denied, "tcp", ROUTED, &port).0, "ok");

    // The host's own services are exempt, as macOS's daemons are: the same program run as a
    // system unit (its process moved into a unit's cgroup under /system.slice/ first) is
    // `unit:…`, undecided, and let through — a headless host's DHCP client keeps its lease.
    // The administrator's `system_services = "check"` holds it to the check.
    let unit = SystemUnit::new("lnp");
    let as_unit = |script: &str| {
        use std::io::Write as _;
        // Moved from out here: `ip netns exec` mounts a sysfs of its own, without the cgroup
        // hierarchy. The shell waits for the word, then becomes the program.
        let line = format!("read go && exec /usr/bin/python3 {script} tcp 198.51.100.2 {port}");
        let mut cmd = command_in(&s.p.cli, &s.dir, "/bin/sh", &["-c", &line]);
        let mut child = cmd.stdin(Stdio::piped()).spawn().expect("sh");
        std::fs::write(&unit.procs, child.id().to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", unit.procs.display()));
        let mut go = child.stdin.take().expect("its stdin");
        go.write_all(b"go\n").expect("go");
        drop(go);
        let out = child.wait_with_output().expect("its end");
        (text(&out.stdout).trim().to_owned(), text(&out.stderr))
    };
    let (said, err) = as_unit(&denied);
    assert_eq!(said, "ok", "a system service undecided is exempt: {err}");
    std::fs::write(s.dir.path("policy.toml"), "system_services = \"check\"\n").unwrap();
    let (said, err) = as_unit(&denied);
    assert_eq!(said, "ECONNREFUSED", "held to the check by the policy: {err}");
    std::fs::remove_file(s.dir.path("policy.toml")).unwrap();
    drop(unit);

    // The host's switch: everything through at once (the store is read for each flow).
    s.lnp(&["off"]);
    assert_eq!(probe(&denied, "tcp", "198.51.100.2", &port).0, "ok");
    assert_eq!(host.stop(), Some(0), "an orderly stop removes every rule");

    let flows: Vec<&Value> = host.seen.iter().filter(|v| v["event"] == "flow").collect();
    let dropped = |to: &str| {
        flows.iter().any(|f| {
            f["decision"] == "drop"
                && f["by"]["by"] == "local_network"
                && f["flow"]["remote"].as_str().is_some_and(|r| r.contains(to))
        })
    };
    assert!(dropped("198.51.100.2"), "{flows:#?}");
    assert!(dropped("224.0.0.251:5353"), "the multicast send was dropped: {flows:#?}");
    assert!(
        !flows.iter().any(|f| f["flow"]["remote"].as_str().is_some_and(|r| r.contains(ROUTED))),
        "a flow to the internet was queued: {flows:#?}"
    );
    let log = text(&s.nw(&["lnp", "log", "--json"]).stdout);
    assert!(
        log.contains(&format!("exe:{}", curl.display())) && log.contains("198.51.100.2"),
        "{log}"
    );

    // A host killed outright leaves its rules: `nw filter status` says they hold only flows
    // to the local network, and `nw filter down` removes them.
    let mut cmd = s.p.cli.command(NW);
    cmd.args(["filter", "up", "--local-network", "--json"])
        .env("NW_LNP_STORE", s.dir.path("lnp.toml"))
        .env("NW_LNP_POLICY", s.dir.path("policy.toml"));
    let mut killed = Events::spawn(&s.p.cli, cmd);
    killed.event("ready");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(killed.child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = killed.child.wait_for(Duration::from_secs(15));
    let status: Value = serde_json::from_str(&text(&s.nw(&["filter", "status", "--json"]).stdout))
        .expect("status JSON");
    assert_eq!(status["leftover_rules"], true, "{status}");
    assert_eq!(status["leftover_scope"], "local_network", "{status}");
    let text_status = text(&s.nw(&["filter", "status"]).stdout);
    assert!(text_status.contains("new TCP and UDP flows to the local network"), "{text_status}");
    assert_eq!(s.nw(&["filter", "down"]).status.code(), Some(0));
    let after: Value = serde_json::from_str(&text(&s.nw(&["filter", "status", "--json"]).stdout))
        .expect("status JSON");
    assert_eq!(after["leftover_rules"], false, "{after}");
}

/// A systemd system unit's cgroup made for a test (`/system.slice/nwtest-TAG-PID.service` in
/// the cgroup v2 hierarchy: the host's own, or the unified one of a hybrid host): a process
/// that writes its pid to `procs` runs "as" that unit. Removed on drop, with the slice when
/// the test made it.
struct SystemUnit {
    dir: std::path::PathBuf,
    made_slice: Option<std::path::PathBuf>,
    procs: std::path::PathBuf,
}

impl SystemUnit {
    fn new(tag: &str) -> Self {
        let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .into_iter()
            .map(std::path::PathBuf::from)
            .find(|r| r.join("cgroup.controllers").exists())
            .unwrap_or_else(|| panic!("no cgroup v2 hierarchy under /sys/fs/cgroup (mount one)"));
        let slice = root.join("system.slice");
        let made_slice = (!slice.exists()).then(|| slice.clone());
        let dir = slice.join(format!("nwtest-{tag}-{}.service", std::process::id()));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (the test needs root)", dir.display()));
        let procs = dir.join("cgroup.procs");
        Self { dir, made_slice, procs }
    }
}

impl Drop for SystemUnit {
    fn drop(&mut self) {
        // Its processes have exited; an empty cgroup is removed with rmdir.
        let _ = std::fs::remove_dir(&self.dir);
        if let Some(slice) = &self.made_slice {
            let _ = std::fs::remove_dir(slice);
        }
    }
}

/// A peer that connects, sends `from LABEL`, and reads until the end: prints `ok` when the end
/// came as a close, else the errno's name (`ECONNRESET` when the listener would not serve it).
const TALKER: &str = r#"
import errno, socket, sys
host, port, source, label = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    if source != "-":
        s.bind((source, 0))
    s.connect((host, port))
    s.sendall(("from %s\n" % label).encode())
    s.shutdown(socket.SHUT_WR)
    while s.recv(4096):
        pass
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e)))
"#;

/// Sends `from the link` twice from the link's address, then `from beyond the router` from
/// the routed one (argv: host, port, routed address), a moment apart.
const SENDER: &str = r#"
import socket, sys, time
host, port, routed = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for source, label in [(None, "the link"), (None, "the link"), (routed, "beyond the router")]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if source:
        s.bind((source, 0))
    s.sendto(("from %s\n" % label).encode(), (host, port))
    s.close()
    time.sleep(0.3)
"#;

/// A listener is held to the permission as a connection is. Denied, `nw cat -l` (on `[::]`,
/// so IPv4 peers arrive as mapped addresses) resets a peer on the link and says why, logs it,
/// and serves a peer beyond the router; allowed, it serves the peer on the link. The log marks
/// the refusals inbound, and `nw cat -l -u` takes the first sender it may serve.
#[test]
fn netns_lnp_a_denied_app_does_not_serve_peers_on_the_link_and_says_why() {
    use std::io::{BufRead as _, BufReader};
    let s = Scene::new("listen");
    let id = identity_of(&s, NW);
    let talker = s.dir.path("talker.py");
    std::fs::write(&talker, TALKER).unwrap();
    let cli = nw_lab::addr::CLI_V4.to_string();
    let talk = |source: &str, label: &str| -> String {
        let out = s.p.srv.command("python3").args([&talker, &cli, "8098", source, label]).output();
        let out =
            out.unwrap_or_else(|e| panic!("python3 is needed (apt-get install python3): {e}"));
        text(&out.stdout).trim().to_owned()
    };
    // Serves its first client, then exits; stderr collected on a thread.
    let listen = |extra: &[&str]| {
        let mut child = s.spawn_nw(&[&["cat", "-l", "--report"], extra].concat(), false);
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert!(first.contains("listening on"), "{first}");
        let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
        (child, rest)
    };
    s.lnp(&["on"]);
    s.lnp(&["deny", &id]);

    let (child, rest) = listen(&["8098"]);
    assert_eq!(talk("-", "the link"), "ECONNRESET", "a denied app does not serve the link");
    assert_eq!(talk(ROUTED, "beyond the router"), "ok", "a peer beyond the router is served");
    let out = child.wait_with_output().unwrap();
    let err = rest.join().unwrap().join("\n");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(text(&out.stdout), "from beyond the router\n", "only the routed peer was served");
    assert!(
        err.contains("not serving 198.51.100.2:")
            && err.contains(&format!("local network prohibited: {id} may not reach 198.51.100.2")),
        "{err}"
    );
    let log = text(&s.nw(&["lnp", "log", "--json"]).stdout);
    let inbound = |log: &str| denied_in_log(log, &id, "198.51.100.2", "inbound");
    assert!(inbound(&log), "the refusal is logged as inbound: {log}");
    let shown = text(&s.nw(&["lnp", "log"]).stdout);
    assert!(
        shown.contains(&format!("denied {id}")) && shown.contains("<- 198.51.100.2"),
        "{shown}"
    );

    // UDP: the first sender it may serve becomes the peer; the link's datagrams are dropped,
    // and that is said once however many come.
    std::fs::remove_file(s.dir.path("lnp.log")).unwrap();
    let sender = s.dir.path("sender.py");
    std::fs::write(&sender, SENDER).unwrap();
    let (child, rest) = listen(&["--udp", "8099"]);
    let sent = s.p.srv.command("python3").args([&sender, &cli, "8099", ROUTED]).output();
    let sent = sent.unwrap_or_else(|e| panic!("python3 is needed (apt-get install python3): {e}"));
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    let out = child.wait_with_output().unwrap();
    let err = rest.join().unwrap().join("\n");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(text(&out.stdout), "from beyond the router\n", "only the routed sender: {err}");
    assert_eq!(
        err.matches("not serving 198.51.100.2: local network prohibited").count(),
        1,
        "{err}"
    );
    assert!(err.contains(&format!("datagrams from {ROUTED}:")), "{err}");
    let log = text(&s.nw(&["lnp", "log", "--json"]).stdout);
    assert!(inbound(&log), "the UDP refusal is logged as inbound: {log}");

    // QUIC: the link's client is refused before its handshake; the routed one is served.
    let certs = s.dir.path("certs");
    for args in [vec!["cert", "ca"], vec!["cert", "server", &cli]] {
        let out = s.nw(&[&args[..], &["--dir", &certs]].concat());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let (cert, key, ca) =
        (format!("{certs}/{cli}.pem"), format!("{certs}/{cli}-key.pem"), format!("{certs}/ca.pem"));
    let quic_client = |source: &str, label: &str| {
        use std::io::Write as _;
        let mut cmd = s.p.srv.command(NW);
        cmd.args(["cat", "--quic", "--alpn", "lnp-test", "--anchor", &ca, "--timeout", "5"]);
        if source != "-" {
            cmd.args(["-s", source]);
        }
        // The client's own check is off: only the listener's is under test.
        let mut child = cmd
            .args([cli.as_str(), "8100"])
            .env("NW_LNP_STORE", s.dir.path("client-lnp.toml"))
            .env("NW_LNP_POLICY", s.dir.path("client-policy.toml"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(format!("from {label}\n").as_bytes());
        child.wait_with_output().unwrap()
    };
    let (child, rest) =
        listen(&["--quic", "--alpn", "lnp-test", "--cert", &cert, "--key", &key, "8100"]);
    let refused = quic_client("-", "the link");
    assert_ne!(refused.status.code(), Some(0), "the link's QUIC client was not refused");
    assert!(
        text(&refused.stderr).contains("over QUIC: connection refused"),
        "{}",
        text(&refused.stderr)
    );
    let served = quic_client(ROUTED, "beyond the router");
    assert_eq!(served.status.code(), Some(0), "{}", text(&served.stderr));
    let out = child.wait_with_output().unwrap();
    let err = rest.join().unwrap().join("\n");
    assert_eq!(text(&out.stdout), "from beyond the router\n", "only the routed client: {err}");
    assert!(err.contains("not serving 198.51.100.2: local network prohibited"), "{err}");

    s.lnp(&["allow", &id]);
    let (child, rest) = listen(&["8098"]);
    assert_eq!(talk("-", "the link"), "ok", "allowed, the link is served");
    let out = child.wait_with_output().unwrap();
    let err = rest.join().unwrap().join("\n");
    assert_eq!(text(&out.stdout), "from the link\n", "{err}");
    assert!(!err.contains("not serving"), "{err}");
}

/// A member of a multicast group on the far namespace: joins `GROUP` on eth0, says "ready",
/// prints the first datagram it hears (10 s at most), then sends "hello group" to the group
/// three times, 100 ms apart.
const MEMBER: &str = r#"
import socket, struct, sys, time
group, port = sys.argv[1], int(sys.argv[2])
if ":" in group:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    index = socket.if_nametoindex("eth0")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                 socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", index))
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    me = sys.argv[3]
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(group) + socket.inet_aton(me))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(me))
print("ready", flush=True)
s.settimeout(10)
try:
    data, sender = s.recvfrom(65535)
    print("heard %r from %s" % (data, sender[0]), flush=True)
except socket.timeout:
    print("heard nothing", flush=True)
for _ in range(3):
    s.sendto(b"hello group\n", (group, port))
    time.sleep(0.1)
"#;

/// A member of a group on the far namespace that answers the first datagram sent to the group
/// unicast, to its sender, as an SSDP or multicast DNS responder answers a query.
const RESPONDER: &str = r#"
import socket, sys
group, port, me = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             socket.inet_aton(group) + socket.inet_aton(me))
print("ready", flush=True)
s.settimeout(10)
data, sender = s.recvfrom(65535)
s.sendto(b"answer to " + data, sender)
print("answered %s" % sender[0], flush=True)
"#;

/// Joining a multicast group is using the local network: denied, `nw cat -l -u GROUP PORT`
/// fails at once saying "local network prohibited" and never joins (the kernel's membership
/// list shows no group); allowed, it joins on the link's interface (the kernel says so), hears
/// a member on the link and is heard by it, and does not hear itself (IPv4 and IPv6); and a
/// query sent to a group without joining it hears the member's unicast answer.
#[test]
fn netns_lnp_a_multicast_group_is_joined_only_when_allowed() {
    use std::io::{BufRead as _, BufReader, Write as _};
    let s = Scene::new("group");
    let id = identity_of(&s, NW);
    let member = s.dir.path("member.py");
    std::fs::write(&member, MEMBER).unwrap();
    let memberships = || {
        text(&s.p.cli.command("ip").args(["maddr", "show", "dev", "eth0"]).output().unwrap().stdout)
    };
    s.lnp(&["on"]);
    s.lnp(&["deny", &id]);
    for (group, port) in [("239.255.7.7", "8110"), ("ff02::7777", "8111")] {
        let refused = s.run(NW, &["cat", "-l", "-u", group, port]);
        let err = assert_prohibited(&format!("joining {group}"), &refused, &id);
        assert!(
            err.contains(&format!("cannot join {group}: local network prohibited"))
                && err.contains("a multicast group"),
            "{err}"
        );
        assert!(!memberships().contains(group), "joined {group} though denied: {}", memberships());
    }
    let log = text(&s.nw(&["lnp", "log", "--json"]).stdout);
    for group in ["239.255.7.7", "ff02::7777"] {
        let logged = denied_in_log(&log, &id, group, "outbound");
        assert!(logged, "the refused join of {group} is logged: {log}");
    }

    s.lnp(&["allow", &id]);
    for (group, port) in [("239.255.7.7", "8110"), ("ff02::7777", "8111")] {
        let srv = nw_lab::addr::SRV_V4.to_string();
        let (mut far, mut far_said) = s.far_python(&member, &[group, port, &srv]);
        let mut ours =
            s.spawn_nw(&["cat", "-l", "-u", "--report", "--idle", "3", group, port], true);
        let mut said = BufReader::new(ours.stderr.take().unwrap()).lines();
        let first = said.next().and_then(Result::ok).unwrap_or_default();
        assert!(first.contains(&format!("joined {group} on eth0 (UDP port {port})")), "{first}");
        assert!(
            memberships().contains(group),
            "the kernel shows no membership of {group}: {}",
            memberships()
        );
        let mut stdin = ours.stdin.take().unwrap();
        stdin.write_all(b"from a member\n").unwrap();
        drop(stdin);
        let heard = far_said.next().and_then(Result::ok).unwrap_or_default();
        assert!(heard.starts_with("heard b'from a member\\n' from "), "the far member: {heard}");
        let _ = far.wait();
        let out = ours.wait_with_output().unwrap();
        let rest: Vec<String> = said.map_while(Result::ok).collect();
        assert_eq!(out.status.code(), Some(0), "{rest:?}");
        let got = text(&out.stdout);
        assert!(got.starts_with("hello group\n"), "what the group said: {got:?}");
        assert!(!got.contains("from a member"), "it heard itself: {got:?}");
    }

    // Without -l, a query goes to the group and the unicast answer is heard (a socket
    // connected to the group would drop it).
    let responder = s.dir.path("responder.py");
    std::fs::write(&responder, RESPONDER).unwrap();
    let srv = nw_lab::addr::SRV_V4.to_string();
    let (mut far, mut far_said) = s.far_python(&responder, &["239.255.7.8", "8112", &srv]);
    let mut ours =
        s.spawn_nw(&["cat", "-u", "--report", "--idle", "3", "239.255.7.8", "8112"], true);
    ours.stdin.take().unwrap().write_all(b"M-SEARCH\n").unwrap();
    let out = ours.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("sending to 239.255.7.8 port 8112 on eth0 from port"), "{err}");
    assert_eq!(text(&out.stdout), "answer to M-SEARCH\n", "{err}");
    let answered = far_said.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(answered, format!("answered {}", nw_lab::addr::CLI_V4), "the responder: {answered}");
    let _ = far.wait();
}
