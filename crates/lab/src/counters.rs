//! Kernel TCP counters from `/proc/net/snmp`, per namespace.

use crate::LabError;

/// The `Tcp:` counters that count attempts and also-rans (RFC 4022 names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// SYNs sent.
    pub active_opens: u64,
    /// Connections accepted.
    pub passive_opens: u64,
    /// Connection attempts that failed.
    pub attempt_fails: u64,
    /// Established connections reset.
    pub estab_resets: u64,
    /// Connections established now.
    pub curr_estab: u64,
    /// Segments sent with RST.
    pub out_rsts: u64,
}

impl TcpCounters {
    /// Parses the two `Tcp:` lines (names, then values) of `/proc/net/snmp`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines().filter(|l| l.starts_with("Tcp:"));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            return Err("no Tcp: lines".into());
        };
        let mut c = Self::default();
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()).skip(1) {
            let v: u64 = match value.parse::<i64>() {
                Ok(v) => u64::try_from(v).unwrap_or(0),
                Err(_) => return Err(format!("{name} has a non-numeric value {value:?}")),
            };
            match name {
                "ActiveOpens" => c.active_opens = v,
                "PassiveOpens" => c.passive_opens = v,
                "AttemptFails" => c.attempt_fails = v,
                "EstabResets" => c.estab_resets = v,
                "CurrEstab" => c.curr_estab = v,
                "OutRsts" => c.out_rsts = v,
                _ => {}
            }
        }
        Ok(c)
    }

    pub(crate) fn read(ns: &crate::Namespace) -> Result<Self, LabError> {
        let text = ns.run(["cat", "/proc/net/snmp"])?;
        Self::parse(&text)
            .map_err(|why| LabError::Parse { command: "cat /proc/net/snmp".into(), why })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_lines() {
        let t = "Ip: Forwarding\nIp: 1\nTcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\nTcp: 1 200 120000 -1 7 3 2 1 4 100 90 0 0 5 0\n";
        let c = TcpCounters::parse(t).unwrap();
        assert_eq!(
            (c.active_opens, c.passive_opens, c.attempt_fails, c.out_rsts, c.curr_estab),
            (7, 3, 2, 5, 4)
        );
        assert!(TcpCounters::parse("Udp: x\n").is_err());
    }
}
