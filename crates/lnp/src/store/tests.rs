use super::*;
use crate::scratch::Scratch;

fn policy(store: &str, admin: &str) -> Policy {
    Policy {
        paths: Paths { store: "s".into(), policy: "p".into() },
        store: toml::from_str(store).unwrap_or_else(|e| panic!("{e}")),
        admin: toml::from_str(admin).unwrap_or_else(|e| panic!("{e}")),
    }
}

#[test]
fn the_decision_in_order() {
    let store = r#"
        check = "on"
        [apps]
        "exe:/usr/bin/curl" = "deny"
        "exe:/usr/bin/wget" = "allow"
        "unit:a.service" = "deny"
        "unit:b.service" = "allow"
        "exe:/usr/bin/ask" = "ask"
    "#;
    let admin = r#"
        allow = ["unit:a.service"]
        deny = ["unit:b.service"]
    "#;
    let p = policy(store, admin);
    let d = |id: &str| {
        let d = p.decide(id);
        (d.access, d.by)
    };
    assert_eq!(d("exe:/usr/bin/curl"), (Access::Deny, Source::Store));
    assert_eq!(d("exe:/usr/bin/wget"), (Access::Allow, Source::Store));
    // The administrator's lists come before the store.
    assert_eq!(d("unit:a.service"), (Access::Allow, Source::Policy));
    assert_eq!(d("unit:b.service"), (Access::Deny, Source::Policy));
    assert_eq!(d("exe:/usr/bin/ask"), (Access::Ask, Source::Store));
    assert_eq!(d("exe:/opt/new"), (Access::Ask, Source::Default));

    // The check off lets everything through, whoever is denied.
    let off = policy(store, "check = \"off\"\ndeny = [\"exe:/usr/bin/wget\"]");
    assert_eq!(off.decide("exe:/usr/bin/curl").access, Access::Allow);
    assert_eq!(off.decide("exe:/usr/bin/wget").access, Access::Allow);
    assert_eq!(off.check(), (false, Source::Policy));
    // A host where nobody turned it on.
    let fresh = policy("", "");
    assert_eq!(fresh.check(), (false, Source::Default));
    assert_eq!(
        fresh.decide("exe:/x"),
        Decision { access: Access::Allow, by: Source::Default, check: false }
    );
    assert_eq!(fresh.headless(), (Answer::Deny, Source::Default));
    assert_eq!(policy("headless = \"allow\"", "").headless(), (Answer::Allow, Source::Store));
    assert_eq!(
        policy("headless = \"allow\"", "headless = \"deny\"").headless(),
        (Answer::Deny, Source::Policy)
    );
    assert_eq!(policy("prompt = []", "").prompt(), None);
}

#[test]
fn a_file_that_does_not_parse_is_an_error_that_names_it() {
    let s = Scratch::new("parse");
    let paths = s.paths();
    let cases = [
        ("check = \"maybe\"", "maybe"),
        ("[apps]\n\"exe:/x\" = \"sometimes\"", "sometimes"),
        ("chekc = \"on\"", "chekc"),
        ("this is not toml", ""),
    ];
    for (text, mention) in cases {
        std::fs::write(&paths.store, text).unwrap_or_else(|e| panic!("{e}"));
        let e = Policy::load(&paths).err().unwrap_or_else(|| panic!("{text:?} loaded"));
        let shown = e.to_string();
        assert!(shown.contains("lnp.toml does not parse"), "{shown}");
        assert!(shown.contains(mention), "{shown} should mention {mention}");
        assert!(shown.contains("fix or remove the file"), "{shown}");
    }
    std::fs::write(&paths.store, [0xff, 0xfe, 0x00]).unwrap_or_else(|e| panic!("{e}"));
    assert!(Policy::load(&paths).err().is_some_and(|e| e.to_string().contains("not UTF-8")));
    std::fs::remove_file(&paths.store).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&paths.policy, "allow = [\"exe:/a\"]\ndeny = [\"exe:/a\"]")
        .unwrap_or_else(|e| panic!("{e}"));
    let e = Policy::load(&paths).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("exe:/a is in both allow and deny"), "{e}");
    // Updating a store that does not parse leaves it as it was.
    std::fs::remove_file(&paths.policy).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&paths.store, "garbage").unwrap_or_else(|e| panic!("{e}"));
    assert!(update(&paths, |f| f.check = Some(Check::On)).is_err());
    assert_eq!(std::fs::read_to_string(&paths.store).ok().as_deref(), Some("garbage"));
}

#[test]
fn what_is_written_reads_back_the_same_with_any_identity() {
    let s = Scratch::new("roundtrip");
    let paths = s.paths();
    let odd = [
        "exe:/opt/a \"quoted\" dir/x",
        "script:/tmp/back\\slash",
        "exe:/tmp/new\nline",
        "exe:/tmp/ünïcode",
    ];
    update(&paths, |f| {
        f.check = Some(Check::On);
        f.headless = Some(Answer::Allow);
        f.prompt = Some(vec!["/usr/bin/ask".into(), "--title=\"x\"".into()]);
        for (i, id) in odd.iter().enumerate() {
            f.apps.insert((*id).to_owned(), if i % 2 == 0 { Access::Allow } else { Access::Deny });
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let p = Policy::load(&paths).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.store.check, Some(Check::On));
    assert_eq!(p.store.headless, Some(Answer::Allow));
    assert_eq!(p.prompt().map(<[String]>::len), Some(2));
    for (i, id) in odd.iter().enumerate() {
        let want = if i % 2 == 0 { Access::Allow } else { Access::Deny };
        assert_eq!(p.store.apps.get(*id), Some(&want), "{id}");
    }
}

#[test]
fn concurrent_writers_lose_nothing() {
    let s = Scratch::new("writers");
    let paths = s.paths();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let paths = paths.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    update(&paths, |f| {
                        f.apps.insert(format!("exe:/w{t}/{i}"), Access::Allow);
                    })
                    .unwrap_or_else(|e| panic!("{e}"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap_or_else(|_| panic!("a writer panicked"));
    }
    let p = Policy::load(&paths).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.store.apps.len(), 200);
    // No temporary file is left behind.
    let left: Vec<_> = std::fs::read_dir(&s.0)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn links_planted_beside_the_store_are_never_written_through() {
    let s = Scratch::new("links");
    let paths = s.paths();
    let victim = s.0.join("victim");
    std::fs::write(&victim, "precious\n").unwrap_or_else(|e| panic!("{e}"));
    let tmp = s.0.join(format!(".lnp.toml.{}.tmp", std::process::id()));
    for link in [tmp, s.0.join("lnp.toml.lock"), paths.log()] {
        std::os::unix::fs::symlink(&victim, &link).unwrap_or_else(|e| panic!("{e}"));
    }
    // The lock is a link: refused, nothing written anywhere.
    assert!(update(&paths, |f| f.check = Some(Check::On)).is_err());
    std::fs::remove_file(s.0.join("lnp.toml.lock")).unwrap_or_else(|e| panic!("{e}"));
    // The temporary file is a link: replaced, and the store written.
    update(&paths, |f| f.check = Some(Check::On)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(Policy::load(&paths).map(|p| p.check().0).ok(), Some(true));
    // The log is a link: the denial is not logged rather than appended to the victim.
    let denial = crate::log::Denial {
        at_ms: 0,
        identity: "exe:/x".into(),
        destination: "10.0.0.1".into(),
        locality: "on-link".into(),
        pid: None,
        executable: "/x".into(),
        by: "store".into(),
        direction: crate::Direction::Outbound,
    };
    crate::log::append(&paths, &denial);
    assert_eq!(std::fs::read_to_string(&victim).ok().as_deref(), Some("precious\n"));
}
