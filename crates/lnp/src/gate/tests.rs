use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::classify::{LocalWhy, NotLocalWhy};
use crate::scratch::Scratch;
use crate::store::Check;

/// A prompt hook in `s` that exits with `status`.
fn hook(s: &Scratch, status: i32) -> String {
    let path = s.0.join(format!("hook{status}"));
    std::fs::write(&path, format!("#!/bin/sh\nexit {status}\n")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

fn app(identity: &str) -> Identified {
    Identified {
        identity: identity.into(),
        pid: Some(4242),
        executable: "/opt/app".into(),
        command_line: vec![],
        cgroup: String::new(),
        cwd: None,
    }
}

fn on_link() -> Locality {
    Locality::Local {
        why: LocalWhy::OnLink { interface: "eth0".into(), prefix: "10.0.0.0/24".into() },
    }
}

#[test]
fn a_destination_that_is_not_local_never_reads_the_files() {
    let s = Scratch::new("gate-notlocal");
    let paths = s.paths();
    std::fs::write(&paths.store, "not toml at all").unwrap_or_else(|e| panic!("{e}"));
    let routed =
        Locality::NotLocal { why: NotLocalWhy::Routed { gateway: IpAddr::from([10, 0, 0, 1]) } };
    let v = permit(&paths, &app("exe:/opt/app"), "192.0.2.7", &routed, Direction::Outbound)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(v.allowed);
    // A local one does, and the broken store is an error, not "allow".
    let e = permit(&paths, &app("exe:/opt/app"), "10.0.0.7", &on_link(), Direction::Outbound).err();
    assert!(e.is_some_and(|e| e.to_string().contains("does not parse")));
}

#[test]
fn a_denial_is_logged_with_the_identity_and_the_destination() {
    let s = Scratch::new("gate-deny");
    let paths = s.paths();
    store::update(&paths, |f| {
        f.check = Some(Check::On);
        f.apps.insert("exe:/opt/app".into(), Access::Deny);
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let v = permit(&paths, &app("exe:/opt/app"), "10.0.0.7", &on_link(), Direction::Outbound)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((v.allowed, v.by), (false, Source::Store));
    let logged = crate::log::read(&paths).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].identity, "exe:/opt/app");
    assert_eq!(logged[0].destination, "10.0.0.7");
    assert_eq!(logged[0].locality, "on the local network 10.0.0.0/24 on eth0");
    assert_eq!(logged[0].pid, Some(4242));
    assert_eq!(logged[0].by, "store");
    // Another app with no decision, no hook: the headless answer (deny), not stored.
    let v = permit(&paths, &app("exe:/opt/other"), "10.0.0.7", &on_link(), Direction::Outbound)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((v.allowed, v.by), (false, Source::Default));
    let p = Policy::load(&paths).unwrap_or_else(|e| panic!("{e}"));
    assert!(!p.store.apps.contains_key("exe:/opt/other"));
}

/// The host's own services (system units) are exempt when nothing is decided for them, as
/// macOS's launchd daemons are: a headless host's DHCP client keeps its lease. A user's service
/// of the same name, a decision in the store, or the policy's `system_services = "check"` is
/// not.
#[test]
fn an_undecided_system_service_is_exempt_and_nothing_else_is() {
    let s = Scratch::new("gate-system");
    let paths = s.paths();
    store::update(&paths, |f| f.check = Some(Check::On)).unwrap_or_else(|e| panic!("{e}"));
    let unit =
        |cgroup: &str| Identified { cgroup: cgroup.into(), ..app("unit:systemd-networkd.service") };
    let system = unit("/system.slice/systemd-networkd.service");
    let user =
        unit("/user.slice/user-1000.slice/user@1000.service/app.slice/systemd-networkd.service");
    let ask = |who: &Identified| {
        permit(&paths, who, "255.255.255.255", &on_link(), Direction::Outbound)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!((ask(&system).allowed, ask(&system).by), (true, Source::System));
    assert_eq!((ask(&user).allowed, ask(&user).by), (false, Source::Default));
    // An app outside a unit, in the system slice all the same (a stray process), is no service.
    let stray = Identified { cgroup: "/system.slice/".into(), ..app("exe:/opt/app") };
    assert!(!ask(&stray).allowed);
    // A decision for the service wins over the exemption.
    store::update(&paths, |f| {
        f.apps.insert("unit:systemd-networkd.service".into(), Access::Deny);
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((ask(&system).allowed, ask(&system).by), (false, Source::Store));
    store::update(&paths, |f| {
        f.apps.remove("unit:systemd-networkd.service");
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // The administrator holds the host's services to the check.
    std::fs::write(&paths.policy, "system_services = \"check\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((ask(&system).allowed, ask(&system).by), (false, Source::Default));
}

#[test]
fn an_inbound_denial_says_so_to_the_hook_and_in_the_log() {
    let s = Scratch::new("gate-inbound");
    let paths = s.paths();
    // A hook that writes down the direction it was told, and answers no.
    let hook = s.0.join("direction-hook");
    let told = s.0.join("told");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\nprintf %s \"$NW_LNP_DIRECTION\" > {}\nexit 1\n", told.display()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    store::update(&paths, |f| {
        f.check = Some(Check::On);
        f.prompt = Some(vec![hook.display().to_string()]);
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let v = permit(&paths, &app("exe:/opt/server"), "10.0.0.9", &on_link(), Direction::Inbound)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((v.allowed, v.by), (false, Source::Prompt));
    let said = std::fs::read_to_string(&told).unwrap_or_default();
    assert_eq!(said, "inbound", "the hook was told the direction");
    let logged = crate::log::read(&paths).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(logged.len(), 1);
    assert_eq!(
        (logged[0].destination.as_str(), logged[0].direction),
        ("10.0.0.9", Direction::Inbound)
    );
    let line = std::fs::read_to_string(paths.log()).unwrap_or_else(|e| panic!("{e}"));
    assert!(line.contains(r#""direction":"inbound""#), "{line}");
    // A line written before the direction was kept reads as outbound.
    let old = r#"{"at_ms":1,"identity":"exe:/x","destination":"10.0.0.1","locality":"on-link","executable":"/x","by":"store"}"#;
    std::fs::write(paths.log(), format!("{old}\n")).unwrap_or_else(|e| panic!("{e}"));
    let logged = crate::log::read(&paths).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(logged.iter().map(|d| d.direction).collect::<Vec<_>>(), [Direction::Outbound]);
}

#[test]
fn the_prompt_hook_answers_and_its_answer_is_kept() {
    let s = Scratch::new("gate-prompt");
    let paths = s.paths();
    let (yes, no, shrug) = (hook(&s, 0), hook(&s, 1), hook(&s, 3));
    let with_hook = |hook: &str| {
        store::update(&paths, |f| {
            f.check = Some(Check::On);
            f.prompt = Some(vec![hook.to_owned()]);
        })
        .unwrap_or_else(|e| panic!("{e}"));
    };
    let ask = |id: &str| {
        permit(
            &paths,
            &app(id),
            "ff02::fb",
            &Locality::Local { why: LocalWhy::Multicast },
            Direction::Outbound,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    with_hook(&yes);
    let v = ask("exe:/a");
    assert_eq!((v.allowed, v.by), (true, Source::Prompt));
    with_hook(&no);
    let v = ask("exe:/b");
    assert_eq!((v.allowed, v.by), (false, Source::Prompt));
    // Both answers are kept: the hook (now "no") is not asked about /a again.
    let v = ask("exe:/a");
    assert_eq!((v.allowed, v.by), (true, Source::Store));
    assert_eq!(ask("exe:/b").by, Source::Store);
    // A hook that does not answer: the headless answer, not kept.
    with_hook(&shrug);
    store::update(&paths, |f| f.headless = Some(Answer::Allow)).unwrap_or_else(|e| panic!("{e}"));
    let v = ask("exe:/c");
    assert_eq!((v.allowed, v.by), (true, Source::Store));
    let p = Policy::load(&paths).unwrap_or_else(|e| panic!("{e}"));
    assert!(!p.store.apps.contains_key("exe:/c"));
    // A hook that cannot start is the same.
    with_hook("/nonexistent/hook");
    assert!(ask("exe:/d").allowed);
}

#[test]
fn a_missing_hook_is_found_as_permit_would_look_for_it() {
    let s = Scratch::new("missing-hook");
    let yes = hook(&s, 0);
    let cmd = |p: &str| vec![p.to_owned(), "--flag".to_owned()];
    assert_eq!(missing_hook(&cmd(&yes)), None, "a hook that is there");
    assert_eq!(missing_hook(&cmd("sh")), None, "a name found on PATH");
    assert_eq!(missing_hook(&cmd("/nonexistent/hook")), Some("/nonexistent/hook"));
    assert_eq!(missing_hook(&cmd("nw-no-such-hook")), Some("nw-no-such-hook"), "not on PATH");
    assert_eq!(missing_hook(&[]), None, "no hook at all is not a missing one");
}
