use super::*;

fn id(exe: &str, cgroup: &str, argv: &[&str], cwd: Option<&str>) -> String {
    let command_line: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
    identify(&Facts { executable: exe, cgroup, command_line: &command_line, cwd })
}

#[test]
fn identities_prefer_what_survives_an_update() {
    let session = "/user.slice/user-1000.slice/session-3.scope";
    let cases = [
        (id("/usr/bin/curl", session, &["curl", "x"], None), "exe:/usr/bin/curl"),
        // Replaced while running (an upgrade): the same identity.
        (id("/usr/bin/curl (deleted)", "/", &[], None), "exe:/usr/bin/curl"),
        (id("/usr/sbin/nginx", "/system.slice/nginx.service", &[], None), "unit:nginx.service"),
        (
            id(
                "/app/bin/x",
                "/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.gnome.Maps-4242.scope",
                &[],
                None,
            ),
            "flatpak:org.gnome.Maps",
        ),
        (
            id(
                "/snap/firefox/123/usr/lib/firefox/firefox",
                "/user.slice/user-1000.slice/user@1000.service/app.slice/snap.firefox.firefox-9c1f.scope",
                &[],
                None,
            ),
            "snap:firefox.firefox",
        ),
        // A user service is an app; the user manager's own scope is not.
        (
            id(
                "/usr/bin/syncthing",
                "/user.slice/user-1000.slice/user@1000.service/app.slice/syncthing.service",
                &[],
                None,
            ),
            "unit:syncthing.service",
        ),
        (
            id(
                "/usr/lib/systemd/systemd",
                "/user.slice/user-1000.slice/user@1000.service/init.scope",
                &[],
                None,
            ),
            "exe:/usr/lib/systemd/systemd",
        ),
        // A desktop's app scope holds whatever the launcher started: judged by the executable.
        (
            id(
                "/usr/bin/ping",
                "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-code-77.scope",
                &[],
                None,
            ),
            "exe:/usr/bin/ping",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}

#[test]
fn a_script_is_its_own_app_not_its_interpreter() {
    let s = "/user.slice/user-0.slice/session-1.scope";
    let cases = [
        (
            id("/usr/bin/python3.11", s, &["python3", "/opt/tool/run.py", "-v"], None),
            "script:/opt/tool/run.py",
        ),
        (
            id(
                "/usr/bin/python3.11",
                s,
                &["python3", "-u", "-W", "ignore", "run.py"],
                Some("/srv/app"),
            ),
            "script:/srv/app/run.py",
        ),
        (
            id("/usr/bin/python3.11", s, &["python3", "../b/./run.py"], Some("/srv/a")),
            "script:/srv/b/run.py",
        ),
        (
            id("/usr/bin/dash", s, &["/bin/sh", "/usr/local/bin/wrapper"], None),
            "script:/usr/local/bin/wrapper",
        ),
        (id("/usr/bin/perl", s, &["perl", "-w", "/usr/bin/tool"], None), "script:/usr/bin/tool"),
        // Code from the command line, a module or standard input: the interpreter.
        (
            id("/usr/bin/python3.11", s, &["python3", "-c", "import socket"], None),
            "exe:/usr/bin/python3.11",
        ),
        (
            id("/usr/bin/python3.11", s, &["python3", "-m", "http.server"], None),
            "exe:/usr/bin/python3.11",
        ),
        (id("/usr/bin/bash", s, &["bash"], None), "exe:/usr/bin/bash"),
        (id("/usr/bin/bash", s, &["bash", "-"], None), "exe:/usr/bin/bash"),
        (id("/usr/bin/bash", s, &["bash", "/dev/fd/63"], None), "exe:/usr/bin/bash"),
        (id("/usr/bin/bash", s, &["bash", "fd/3"], Some("/proc/self")), "exe:/usr/bin/bash"),
        // Not an interpreter: operands are data.
        (id("/usr/bin/curl", s, &["curl", "http://x/"], None), "exe:/usr/bin/curl"),
        (id("/usr/bin/gdb", s, &["gdb", "--args", "./app"], Some("/src")), "exe:/usr/bin/gdb"),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
    assert!(is_interpreter("/usr/bin/python3.13"));
    assert!(is_interpreter("/bin/sh"));
    assert!(!is_interpreter("/usr/bin/shred"));
    assert!(!is_interpreter("/usr/bin/pythonic-tool"));
}

#[test]
fn the_cgroup_is_read_from_v2_or_from_systemds_hierarchy_on_a_hybrid_host() {
    assert_eq!(cgroup_of("0::/system.slice/nginx.service\n"), "/system.slice/nginx.service");
    let hybrid = "12:cpu,cpuacct:/\n1:name=systemd:/system.slice/cron.service\n0::/\n";
    assert_eq!(cgroup_of(hybrid), "/system.slice/cron.service");
    assert_eq!(cgroup_of("0::/\n"), "/");
    assert_eq!(cgroup_of(""), "");
}

#[test]
fn an_executable_is_identified_by_its_real_path_and_a_script_by_its_own() {
    let scratch = crate::scratch::Scratch::new("identity");
    let dir = scratch.0.clone();
    let script = dir.join("tool");
    std::fs::write(&script, "#!/usr/bin/env -S python3 -u\nprint(1)\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let binary = dir.join("app");
    std::fs::write(&binary, b"\x7fELF").unwrap_or_else(|e| panic!("{e}"));
    let link = dir.join("link");
    std::os::unix::fs::symlink(&binary, &link).unwrap_or_else(|e| panic!("{e}"));
    let real = std::fs::canonicalize(&dir).unwrap_or_else(|e| panic!("{e}"));
    let of = |p: &Path| of_executable(p).map(|i| i.identity).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(of(&script), format!("script:{}", real.join("tool").display()));
    assert_eq!(of(&link), format!("exe:{}", real.join("app").display()));
    assert!(of_executable(&dir.join("missing")).is_err());
}

#[test]
fn this_process_is_identified_from_procfs() {
    let me = of_self();
    assert_eq!(me.pid, Some(std::process::id()));
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(me.executable, exe.display().to_string());
}
