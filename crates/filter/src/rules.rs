//! The rules provider: allow, drop, or ask a provider, by the process's identity, executable,
//! user or cgroup and by the destination, port, transport, direction or host name. The first
//! rule that matches decides; `default` decides when none does.
//!
//! ```toml
//! default = "allow"
//!
//! [[rule]]
//! action = "drop"
//! executable = "/usr/bin/telnet"
//!
//! [[rule]]
//! action = "ask"            # the --provider decides
//! remote = "10.0.0.0/8"
//! ports = "8000-8999"
//! transport = "tcp"
//!
//! [[rule]]
//! action = "drop"           # nobody from outside reaches this host's port 5432
//! direction = "inbound"
//! local_ports = 5432
//! ```
//!
//! Every condition a rule names must hold; a rule that names none matches everything. A
//! condition about the process does not match a flow whose process is unknown.
//!
//! A host name is learned from a TCP flow's first bytes (a TLS ClientHello's server name, an
//! HTTP request's `Host`): when a rule naming a host could decide a flow otherwise than it is
//! decided without one ([`Rules::host_may_decide`]), the host holds the flow's first bytes back
//! and reads the name before deciding. UDP flows and inbound flows have none; the Linux host
//! refuses rules that name one ([`crate::host::unseen`]) rather than let them never match.
//!
//! An inbound flow is one a peer starts: a connection to a server here, a datagram to a bound
//! socket. Its `remote` and `ports` are the peer's, `local_ports` the service's, and its
//! process is the one whose socket it reaches (the listener's).

use std::net::IpAddr;

use nw_path::Prefix;
use serde::{Deserialize, Serialize};

use crate::flow::{Direction, Flow, Transport};

/// At most this many rules in a file.
pub const MAX_RULES: usize = 10_000;

/// What a rule decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let the flow through.
    Allow,
    /// Refuse it.
    Drop,
    /// Ask the provider.
    Ask,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// What happens to a flow the rule matches.
    pub action: Action,
    /// The process's identity, exactly (`unit:nginx.service`, `exe:/usr/bin/curl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The executable's path, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    /// The socket owner's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// A cgroup and everything below it (`/system.slice/backup.service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The peer's address, or a prefix it is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<Prefix>,
    /// The peer's port: `443` or `"8000-8999"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Ports>,
    /// This host's port, the same way: for an inbound flow, the service's (`22`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_ports: Option<Ports>,
    /// TCP or UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// Outbound or inbound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The host name, exactly or `*.example.com` (any name below it, not itself); matches
    /// only flows whose host name is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A port or an inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// The first port.
    pub first: u16,
    /// The last port.
    pub last: u16,
}

impl Serialize for Ports {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            s.serialize_u16(self.first)
        } else {
            s.collect_str(&format_args!("{}-{}", self.first, self.last))
        }
    }
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Anything else (a number out of range, a boolean, a table) is caught too, so the
        // error says what a port is rather than that no variant matched.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(i64),
            Text(String),
            Other(serde::de::IgnoredAny),
        }
        let bad = |t: &str| {
            serde::de::Error::custom(format!(
                "{t} is not a port (1–65535) or a range of ports (write 443 or \"8000-8999\")"
            ))
        };
        let port = |p: i64, shown: &str| {
            u16::try_from(p).ok().filter(|&p| p > 0).ok_or_else(|| bad(shown))
        };
        match Raw::deserialize(d)? {
            Raw::One(p) => {
                let p = port(p, &p.to_string())?;
                Ok(Self { first: p, last: p })
            }
            Raw::Text(t) => {
                let shown = format!("{t:?}");
                let (a, b) = t.split_once('-').unwrap_or((&t, &t));
                let parse = |x: &str| x.trim().parse::<i64>().map_err(|_| bad(&shown));
                let first = port(parse(a)?, &shown)?;
                let last = port(parse(b)?, &shown)?;
                if first > last {
                    return Err(bad(&shown));
                }
                Ok(Self { first, last })
            }
            Raw::Other(_) => Err(bad("that")),
        }
    }
}

/// A rules file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// What happens to a flow no rule matches.
    #[serde(default = "default_action")]
    pub default: Action,
    /// The rules, in order.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

fn default_action() -> Action {
    Action::Allow
}

impl Default for Rules {
    fn default() -> Self {
        Self { default: Action::Allow, rules: Vec::new() }
    }
}

/// Why a rules file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Not TOML, or not rules.
    #[error("the rules do not parse: {0}")]
    Parse(String),
    /// Too many rules.
    #[error("{0} rules; at most {MAX_RULES} are accepted")]
    TooMany(usize),
    /// A rule asks a provider, and none is given.
    #[error(
        "rule {0} says \"ask\", and no provider is given to ask (add --provider, or change the action)"
    )]
    NoProvider(usize),
    /// A host pattern that cannot match.
    #[error("rule {0}: {1:?} is not a host name or a *.domain pattern")]
    Host(usize, String),
    /// A condition that no process can meet as written (a relative path, no identity).
    #[error("rule {0}: {1}")]
    Process(usize, String),
}

impl Rules {
    /// Reads rules from TOML text. `has_provider` says whether `ask` can be answered.
    pub fn parse(text: &str, has_provider: bool) -> Result<Self, RulesError> {
        let rules: Self = toml::from_str(text).map_err(|e| RulesError::Parse(e.to_string()))?;
        if rules.rules.len() > MAX_RULES {
            return Err(RulesError::TooMany(rules.rules.len()));
        }
        if !has_provider {
            if rules.default == Action::Ask {
                return Err(RulesError::NoProvider(0));
            }
            if let Some(i) = rules.rules.iter().position(|r| r.action == Action::Ask) {
                return Err(RulesError::NoProvider(i + 1));
            }
        }
        for (i, r) in rules.rules.iter().enumerate() {
            if let Some(why) = r.unmatchable() {
                return Err(RulesError::Process(i + 1, why));
            }
            if let Some(h) = &r.host {
                let name = h.strip_prefix("*.").unwrap_or(h);
                if name.is_empty() || name.contains('*') || name.contains(char::is_whitespace) {
                    return Err(RulesError::Host(i + 1, h.clone()));
                }
            }
        }
        Ok(rules)
    }

    /// Whether learning `flow`'s host name could change its decision: a rule naming a host,
    /// whose every other condition holds and whose action differs, comes before the rule that
    /// decides the flow without one. Such a flow is peeked at for its name.
    pub fn host_may_decide(&self, flow: &Flow) -> bool {
        if flow.transport != Transport::Tcp || flow.direction != Direction::Outbound {
            return false;
        }
        // A name a DNS answer gave the address is not the one the flow's bytes will give
        // (addresses are shared): the decision is weighed without it.
        let unnamed;
        let flow = if flow.host.is_some() {
            unnamed = Flow { host: None, ..flow.clone() };
            &unnamed
        } else {
            flow
        };
        let (action, rule) = self.decide(flow);
        let before = if rule == 0 { self.rules.len() } else { rule - 1 };
        self.rules[..before]
            .iter()
            .any(|r| r.host.is_some() && r.action != action && r.matches_all_but_host(flow))
    }

    /// The decision for a flow, and the number (from 1) of the rule that made it; 0 for the
    /// default.
    pub fn decide(&self, flow: &Flow) -> (Action, usize) {
        self.rules
            .iter()
            .position(|r| r.matches(flow))
            .map_or((self.default, 0), |i| (self.rules[i].action, i + 1))
    }
}

impl Rule {
    /// Why a process condition can match no process as written, if it cannot: an identity
    /// that is none (or names a program by a relative path), an executable or a cgroup that
    /// is not an absolute path.
    fn unmatchable(&self) -> Option<String> {
        use nw_lnp::identity::Malformed;
        if let Some(id) = &self.identity {
            match nw_lnp::identity::malformed(id) {
                Some(Malformed::Relative { kind, .. }) => {
                    return Some(format!(
                        "identity {id:?}: {kind} takes an absolute path, as `nw lnp identify` gives it"
                    ));
                }
                Some(Malformed::NoKind) => {
                    return Some(format!(
                        "identity {id:?} is not one (flatpak:, snap:, unit:, script: or exe: followed by a name); `nw lnp identify PATH|PID` gives a program's"
                    ));
                }
                None => {}
            }
        }
        if let Some(exe) = self.executable.as_ref().filter(|e| !e.starts_with('/')) {
            return Some(format!(
                "executable {exe:?} is not an absolute path (a process's executable is, as /proc shows it)"
            ));
        }
        if let Some(cg) = self.cgroup.as_ref().filter(|c| !c.starts_with('/')) {
            return Some(format!(
                "cgroup {cg:?} is not a cgroup path, which starts with / (/system.slice/backup.service)"
            ));
        }
        None
    }

    /// Whether every condition the rule names holds for `flow`.
    pub fn matches(&self, flow: &Flow) -> bool {
        self.matches_all_but_host(flow)
            && self
                .host
                .as_deref()
                .is_none_or(|h| flow.host.as_deref().is_some_and(|name| host_matches(h, name)))
    }

    /// Whether every condition but the host name holds for `flow`.
    fn matches_all_but_host(&self, flow: &Flow) -> bool {
        let p = flow.process.as_ref();
        let process_ok =
            |cond: bool, f: &dyn Fn(&crate::flow::Process) -> bool| !cond || p.is_some_and(f);
        process_ok(self.identity.is_some(), &|p| self.identity.as_deref() == Some(&p.identity))
            && process_ok(self.executable.is_some(), &|p| {
                self.executable.as_deref() == Some(&p.executable)
            })
            && process_ok(self.uid.is_some(), &|p| self.uid == Some(p.uid))
            && process_ok(self.cgroup.is_some(), &|p| {
                self.cgroup.as_deref().is_some_and(|c| under(&p.cgroup, c))
            })
            && self.remote.is_none_or(|r| r.contains(unmapped(flow.remote.ip())))
            && self.ports.is_none_or(|r| (r.first..=r.last).contains(&flow.remote.port()))
            && self.local_ports.is_none_or(|r| (r.first..=r.last).contains(&flow.local.port()))
            && self.transport.is_none_or(|t| t == flow.transport)
            && self.direction.is_none_or(|d| d == flow.direction)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn under(cgroup: &str, top: &str) -> bool {
    let top = top.trim_end_matches('/');
    top.is_empty()
        || cgroup == top
        || cgroup.strip_prefix(top).is_some_and(|rest| rest.starts_with('/'))
}

fn host_matches(pattern: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.');
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            name.len().checked_sub(domain.len() + 1).and_then(|cut| name.get(cut..)).is_some_and(
                |tail| {
                    tail.as_bytes().first() == Some(&b'.') && tail[1..].eq_ignore_ascii_case(domain)
                },
            )
        }
        None => name.eq_ignore_ascii_case(pattern.trim_end_matches('.')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Process;

    fn flow(remote: &str, transport: Transport, exe: Option<&str>) -> Flow {
        Flow {
            id: 1,
            transport,
            direction: Direction::Outbound,
            local: "10.0.0.1:40000".parse().unwrap_or_else(|e| panic!("{e}")),
            remote: remote.parse().unwrap_or_else(|e| panic!("{e}")),
            process: exe.map(|e| Process {
                pid: 42,
                executable: e.into(),
                command_line: vec![e.into()],
                uid: 1000,
                cgroup: "/system.slice/backup.service".into(),
                identity: nw_lnp::identity::identify(&nw_lnp::identity::Facts {
                    executable: e,
                    cgroup: "/system.slice/backup.service",
                    ..nw_lnp::identity::Facts::default()
                }),
            }),
            host: Some("www.Example.com".into()),
        }
    }

    #[test]
    fn inbound_rules_match_the_service_port_and_the_peer() {
        let rules = Rules::parse(
            "[[rule]]\naction = \"drop\"\ndirection = \"inbound\"\nlocal_ports = 5432\n\
             [[rule]]\naction = \"allow\"\ndirection = \"inbound\"\nremote = \"192.0.2.0/24\"\n\
             [[rule]]\naction = \"ask\"\nlocal_ports = \"8000-8999\"\n",
            true,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // A peer at 198.51.100.7 connects to this host's port 5432.
        let mut db = flow("198.51.100.7:51000", Transport::Tcp, Some("/usr/bin/postgres"));
        (db.direction, db.local, db.host) =
            (Direction::Inbound, "10.0.0.1:5432".parse().unwrap_or_else(|e| panic!("{e}")), None);
        assert_eq!(rules.decide(&db), (Action::Drop, 1));
        // The same service, outbound from port 5432: not an inbound flow.
        db.direction = Direction::Outbound;
        assert_eq!(rules.decide(&db), (Action::Allow, 0));
        let mut web = db.clone();
        (web.direction, web.remote, web.local) = (
            Direction::Inbound,
            "192.0.2.9:40000".parse().unwrap_or_else(|e| panic!("{e}")),
            "10.0.0.1:8080".parse().unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(rules.decide(&web), (Action::Allow, 2), "the peer's prefix comes first");
        web.remote = "203.0.113.1:40000".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rules.decide(&web), (Action::Ask, 3));
        assert!(!rules.host_may_decide(&web), "an inbound flow's name is never waited for");
    }

    /// A process condition no process could meet as written is refused, saying why: rules
    /// that silently match nothing would let through (or hold back) what their author meant.
    #[test]
    fn process_conditions_no_process_could_meet_are_refused() {
        for (rule, says) in [
            (
                "identity = \"exe:bin/tool\"",
                "rule 1: identity \"exe:bin/tool\": exe: takes an absolute path",
            ),
            ("identity = \"script:x.py\"", "script: takes an absolute path"),
            ("identity = \"curl\"", "identity \"curl\" is not one (flatpak:, snap:"),
            ("identity = \"unit:\"", "identity \"unit:\" is not one"),
            ("executable = \"curl\"", "executable \"curl\" is not an absolute path"),
            ("cgroup = \"system.slice\"", "cgroup \"system.slice\" is not a cgroup path"),
        ] {
            let text =
                format!("[[rule]]\naction = \"allow\"\n[[rule]]\naction = \"drop\"\n{rule}\n");
            let e = Rules::parse(&text, false).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                e.replace("rule 2", "rule 1").contains(says) && e.starts_with("rule 2: "),
                "{rule}: {e}"
            );
        }
        for rule in [
            "identity = \"exe:/usr/bin/curl\"",
            "identity = \"unit:nginx.service\"",
            "executable = \"/usr/bin/curl\"",
            "cgroup = \"/system.slice\"",
        ] {
            let text = format!("[[rule]]\naction = \"drop\"\n{rule}\n");
            assert!(Rules::parse(&text, false).is_ok(), "{rule}");
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = Rules::parse(
            r#"
            default = "drop"
            [[rule]]
            action = "drop"
            executable = "/usr/bin/telnet"
            [[rule]]
            action = "ask"
            remote = "10.0.0.0/8"
            ports = "8000-8999"
            transport = "tcp"
            [[rule]]
            action = "allow"
            cgroup = "/system.slice"
            [[rule]]
            action = "allow"
            host = "*.example.com"
            "#,
            true,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let cases = [
            (flow("10.1.2.3:23", Transport::Tcp, Some("/usr/bin/telnet")), (Action::Drop, 1)),
            (flow("10.1.2.3:8080", Transport::Tcp, Some("/usr/bin/curl")), (Action::Ask, 2)),
            (flow("10.1.2.3:8080", Transport::Udp, Some("/usr/bin/curl")), (Action::Allow, 3)),
            (flow("[::ffff:10.1.2.3]:8080", Transport::Tcp, None), (Action::Ask, 2)),
            (flow("192.0.2.1:443", Transport::Tcp, None), (Action::Allow, 4)),
        ];
        for (f, want) in cases {
            assert_eq!(rules.decide(&f), want, "{}", f.key());
        }
        let mut f = flow("192.0.2.1:443", Transport::Tcp, None);
        f.host = Some("example.com".into());
        assert_eq!(rules.decide(&f), (Action::Drop, 0), "*.example.com is not example.com");
        f.host = None;
        assert_eq!(rules.decide(&f), (Action::Drop, 0), "no host name, no host match");
    }

    #[test]
    fn a_flow_is_peeked_at_only_when_its_host_name_could_change_its_decision() {
        let rules = Rules::parse(
            r#"
            default = "allow"
            [[rule]]
            action = "drop"
            executable = "/usr/bin/telnet"
            [[rule]]
            action = "drop"
            host = "*.blocked.example"
            ports = 443
            [[rule]]
            action = "allow"
            host = "ok.example"
            [[rule]]
            action = "drop"
            remote = "192.0.2.0/24"
            "#,
            false,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let unnamed = |remote: &str, t: Transport, exe: &str| Flow {
            host: None,
            ..flow(remote, t, Some(exe))
        };
        let cases = [
            // Allowed by default, and a drop rule for some names of port 443 comes first.
            (unnamed("198.51.100.1:443", Transport::Tcp, "/usr/bin/curl"), true),
            // No host rule with another action applies to port 80: allowed either way.
            (unnamed("198.51.100.1:80", Transport::Tcp, "/usr/bin/curl"), false),
            // Dropped by rule 4, and rule 3 would allow ok.example.
            (unnamed("192.0.2.1:80", Transport::Tcp, "/usr/bin/curl"), true),
            // Dropped by rule 1, before any host rule.
            (unnamed("198.51.100.1:443", Transport::Tcp, "/usr/bin/telnet"), false),
            // UDP flows are not peeked at: the name a DNS answer gave is all they have.
            (unnamed("198.51.100.1:443", Transport::Udp, "/usr/bin/curl"), false),
            // Named by a DNS answer: still peeked at, since the name its bytes give decides.
            (flow("198.51.100.1:443", Transport::Tcp, Some("/usr/bin/curl")), true),
        ];
        for (f, want) in cases {
            assert_eq!(rules.host_may_decide(&f), want, "{} {:?}", f.key(), f.process);
        }
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let e =
            |t: &str, p: bool| Rules::parse(t, p).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e("[[rule]]\naction = \"ask\"\n", false).contains("rule 1 says \"ask\""));
        assert!(e("[[rule]]\naction = \"allow\"\nport = 80\n", true).contains("unknown field"));
        assert!(
            e("[[rule]]\naction = \"allow\"\nports = \"90-80\"\n", true).contains("range of ports")
        );
        assert!(
            e("[[rule]]\naction = \"allow\"\nremote = \"10.0.0.0/33\"\n", true)
                .contains("not an address prefix")
        );
        assert!(
            e("[[rule]]\naction = \"allow\"\nhost = \"a*b\"\n", true).contains("not a host name")
        );
        // A port out of range, port 0 and a value of another type say what a port is, not
        // that "no variant of an untagged enum" matched.
        for bad in ["ports = [99999]", "ports = 0", "local_ports = \"0-80\"", "ports = [true]"] {
            let said = e(&format!("[[rule]]\naction = \"allow\"\n{bad}\n"), true);
            assert!(said.contains("is not a port (1–65535)"), "{bad}: {said}");
            assert!(!said.contains("untagged"), "{bad}: {said}");
        }
        assert!(e("default = \"maybe\"", true).contains("parse"));
        assert_eq!(Rules::parse("", false).map(|r| r.default).ok(), Some(Action::Allow));
    }
}
