//! The PAC helpers against pacparser (Debian's python3-pacparser, the PAC library whose helper
//! code Chrome and old Firefox share): the same script, asked the same question at the same
//! moment, answers the same in both — every helper, over every ordered range of weekdays,
//! hours, months, days and years, and the patterns and address checks scripts use. A range
//! whose start is after its end is left out: pacparser never matches it, nw wraps around
//! (`weekdayRange("FRI", "MON")` is the weekend), as the helpers' documentation describes.

use std::sync::Arc;

use nw_connection::{MemoryResolver, Resolve, Url};
use nw_http::pac::Pac;

use crate::support::{Scratch, runtime};

/// The calls compared: each helper over its ordered ranges and its tricky inputs.
fn calls() -> Vec<String> {
    const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    const MONTHS: [&str; 12] =
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
    let mut calls = Vec::new();
    for (i, a) in DAYS.iter().enumerate() {
        calls.push(format!("weekdayRange('{a}')"));
        calls.push(format!("weekdayRange('{a}', 'GMT')"));
        for b in &DAYS[i..] {
            calls.push(format!("weekdayRange('{a}', '{b}')"));
        }
    }
    for a in 0..24 {
        calls.push(format!("timeRange({a})"));
        calls.push(format!("timeRange({a}, 'GMT')"));
        for b in a..24 {
            calls.push(format!("timeRange({a}, {b})"));
        }
    }
    for (i, a) in MONTHS.iter().enumerate() {
        calls.push(format!("dateRange('{a}')"));
        for b in &MONTHS[i..] {
            calls.push(format!("dateRange('{a}', '{b}')"));
        }
    }
    for a in 1..=31 {
        calls.push(format!("dateRange({a})"));
        for b in [a, 15.max(a), 31] {
            calls.push(format!("dateRange({a}, {b})"));
        }
    }
    for a in [2024, 2026, 2099] {
        calls.push(format!("dateRange({a})"));
        calls.push(format!("dateRange({a}, 2100)"));
    }
    calls.extend(
        [
            "timeRange(0, 0, 23, 59)",
            "timeRange(0, 0, 0, 23, 59, 59)",
            "timeRange(12, 30, 13, 15)",
            "dateRange(1, 'JAN', 31, 'DEC')",
            "dateRange('JAN', 2020, 'DEC', 2099)",
            "dateRange(1, 'JAN', 2020, 31, 'DEC', 2099)",
            "dateRange(1, 'JAN', 2030, 31, 'DEC', 2099)",
            "shExpMatch('http://a.test/x.html', '*.test/*')",
            "shExpMatch('a.b', 'a?b')",
            "shExpMatch('axb', 'a.b')",
            "shExpMatch('abc', 'a[b]c')",
            "shExpMatch('a', '')",
            "shExpMatch('', '*')",
            "shExpMatch('x.corp.test', '*.corp.test')",
            "shExpMatch('corp.test', '*.corp.test')",
            "isPlainHostName('intranet')",
            "isPlainHostName('a.test')",
            "dnsDomainIs('www.corp.test', '.corp.test')",
            "dnsDomainIs('corp.test', '.corp.test')",
            "dnsDomainIs('wwwcorp.test', 'corp.test')",
            "localHostOrDomainIs('www', 'www.corp.test')",
            "localHostOrDomainIs('www.corp.test', 'www.corp.test')",
            "localHostOrDomainIs('www.other.test', 'www.corp.test')",
            "localHostOrDomainIs('home', 'www.corp.test')",
            "dnsDomainLevels('www.corp.test')",
            "dnsDomainLevels('localhost')",
            "isInNet('10.1.2.3', '10.0.0.0', '255.0.0.0')",
            "isInNet('10.1.2.3', '10.1.2.3', '255.255.255.255')",
            "isInNet('11.1.2.3', '10.0.0.0', '255.0.0.0')",
            "isInNet('192.168.1.1', '192.168.0.0', '255.255.0.0')",
            "isInNet('192.168.1.1', '0.0.0.0', '0.0.0.0')",
            "convert_addr('192.168.1.1')",
            "isResolvable('198.51.100.7')",
            "dnsResolve('198.51.100.7')",
        ]
        .map(str::to_owned),
    );
    calls
}

/// A script answering with every call's result, one per line.
fn script(calls: &[String]) -> String {
    let list = calls.iter().map(|c| format!("    {c},\n")).collect::<String>();
    format!(
        "function FindProxyForURL(url, host) {{\n  return [\n{list}  ].join('\\n') + '\\n' + url + ' ' + host;\n}}\n"
    )
}

#[test]
fn pac_helpers_answer_as_pacparser_does() {
    let scratch = Scratch::new("pac-peer");
    let calls = calls();
    let file = scratch.0.join("helpers.pac");
    std::fs::write(&file, script(&calls)).unwrap();
    let url = Url {
        scheme: "http".into(),
        host: "www.corp.test".into(),
        port: 8080,
        path: "/a/b.html?q=1".into(),
    };
    let shown = "http://www.corp.test:8080/a/b.html?q=1";

    // The peer first, then nw, within the same second (the time helpers read the clock).
    let peer = std::process::Command::new("/usr/bin/python3")
        .args(["-c", PEER, file.to_str().unwrap(), shown, &url.host])
        .output()
        .expect("/usr/bin/python3 runs (scripts/test installs python3 and python3-pacparser)");
    let peer_said = String::from_utf8_lossy(&peer.stderr);
    assert!(
        peer.status.success(),
        "pacparser failed; install python3-pacparser (scripts/test does, as root): {peer_said}"
    );
    let theirs = String::from_utf8(peer.stdout).unwrap();
    let pac = Pac::read(&file).unwrap();
    let resolver: Arc<dyn Resolve> = Arc::new(MemoryResolver::new());
    let ours = runtime().block_on(pac.answer(&url, resolver)).unwrap();

    let theirs: Vec<&str> = theirs.trim_end_matches('\n').lines().collect();
    let ours: Vec<&str> = ours.lines().collect();
    assert_eq!(theirs.len(), calls.len() + 1, "pacparser answered: {theirs:?}");
    assert_eq!(ours.len(), calls.len() + 1);
    let differ: Vec<String> = calls
        .iter()
        .zip(theirs.iter().zip(&ours))
        .filter(|(_, (t, o))| t != o)
        .map(|(call, (t, o))| format!("{call}: pacparser {t}, nw {o}"))
        .collect();
    assert!(
        differ.is_empty(),
        "{} of {} calls differ:\n{}",
        differ.len(),
        calls.len(),
        differ.join("\n")
    );
    // Both were given the URL and host the same way.
    assert_eq!(ours.last(), theirs.last());
    assert_eq!(ours.last(), Some(&format!("{shown} {}", url.host).as_str()));
}

/// Asks pacparser: argv is the PAC file, the URL and the host.
const PEER: &str = r#"
import sys
import pacparser
pacparser.init()
pacparser.parse_pac_file(sys.argv[1])
print(pacparser.find_proxy(sys.argv[2], sys.argv[3]))
pacparser.cleanup()
"#;
