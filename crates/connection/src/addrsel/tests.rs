use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn c(d: &str, s: Option<&str>) -> Candidate {
    Candidate::new(ip(d), s.map(ip))
}

fn sorted(mut v: Vec<Candidate>) -> Vec<IpAddr> {
    sort(&mut v);
    v.into_iter().map(|c| c.destination).collect()
}

// The examples of RFC 6724 §10.2, in order.
#[test]
fn rfc6724_section_10_2_examples() {
    // Prefer the IPv6 destination with a matching native source.
    assert_eq!(
        sorted(vec![
            c("198.51.100.121", Some("169.254.13.78")),
            c("2001:db8:1::1", Some("2001:db8:1::2"))
        ]),
        [ip("2001:db8:1::1"), ip("198.51.100.121")],
    );
    // Prefer matching scope: a global IPv6 destination reached only from a link-local source
    // loses to IPv4 with a global source.
    assert_eq!(
        sorted(vec![
            c("2001:db8:1::1", Some("fe80::1")),
            c("198.51.100.121", Some("198.51.100.117"))
        ]),
        [ip("198.51.100.121"), ip("2001:db8:1::1")],
    );
    // Prefer higher precedence: native IPv6 over IPv4.
    assert_eq!(
        sorted(vec![
            c("198.51.100.121", Some("198.51.100.117")),
            c("2001:db8:1::1", Some("2001:db8:1::2"))
        ]),
        [ip("2001:db8:1::1"), ip("198.51.100.121")],
    );
    // Prefer smaller scope.
    assert_eq!(
        sorted(vec![c("2001:db8:1::1", Some("2001:db8:1::2")), c("fe80::1", Some("fe80::2"))]),
        [ip("fe80::1"), ip("2001:db8:1::1")],
    );
    // Longest matching prefix.
    assert_eq!(
        sorted(vec![
            c("2001:db8:1::1", Some("2001:db8:1::2")),
            c("2001:db8:3ffe::1", Some("2001:db8:3f44::2"))
        ]),
        [ip("2001:db8:1::1"), ip("2001:db8:3ffe::1")],
    );
    // Prefer matching label: 6to4 destination with a 6to4 source beats native.
    assert_eq!(
        sorted(vec![
            c("2002:c633:6401::1", Some("2002:c633:6401::2")),
            c("2001:db8:1::1", Some("2002:c633:6401::2"))
        ]),
        [ip("2002:c633:6401::1"), ip("2001:db8:1::1")],
    );
    // Prefer higher precedence: native over 6to4 when both have matching sources.
    assert_eq!(
        sorted(vec![
            c("2002:c633:6401::1", Some("2002:c633:6401::2")),
            c("2001:db8:1::1", Some("2001:db8:1::2"))
        ]),
        [ip("2001:db8:1::1"), ip("2002:c633:6401::1")],
    );
    // ULA with a ULA source beats a global destination reached from a ULA source… and
    // the loopback destination wins everything.
    assert_eq!(
        sorted(vec![c("2001:db8:1::1", Some("fd11::2")), c("::1", Some("::1"))]),
        [ip("::1"), ip("2001:db8:1::1")],
    );
}

#[test]
fn unusable_destinations_go_last() {
    let got = sorted(vec![c("2001:db8::1", None), c("192.0.2.1", Some("192.0.2.10"))]);
    assert_eq!(got, [ip("192.0.2.1"), ip("2001:db8::1")]);
}

#[test]
fn ipv4_round_robin_order_is_kept() {
    let src = Some("10.1.2.3");
    let got = sorted(vec![c("10.200.0.1", src), c("10.1.2.4", src), c("172.16.0.1", src)]);
    assert_eq!(got, [ip("10.200.0.1"), ip("10.1.2.4"), ip("172.16.0.1")], "rule 9 is IPv6-only");
}

/// A small deterministic generator, so failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn ip(&mut self) -> IpAddr {
        const POOL: [&str; 12] = [
            "::1",
            "fe80::1",
            "2001:db8::1",
            "2001:db8:ff::9",
            "2002:c633:6401::1",
            "fd00::5",
            "fec0::1",
            "127.0.0.1",
            "169.254.1.1",
            "192.0.2.1",
            "198.51.100.7",
            "::ffff:203.0.113.9",
        ];
        let i = usize::try_from(self.next() % 12).unwrap();
        POOL[i].parse().unwrap()
    }

    fn candidate(&mut self) -> Candidate {
        let d = self.ip();
        let s = (!self.next().is_multiple_of(5)).then(|| self.ip());
        Candidate { destination: d, source: s, source_deprecated: self.next().is_multiple_of(7) }
    }
}

#[test]
fn property_sort_is_a_total_order_permutation_and_idempotent() {
    let mut g = Gen(0x2545_f491_4f6c_dd1d);
    for _ in 0..3_000 {
        let n = usize::try_from(g.next() % 8).unwrap();
        let input: Vec<Candidate> = (0..n).map(|_| g.candidate()).collect();
        let mut once = input.clone();
        sort(&mut once);
        // A permutation of the input.
        let mut a: Vec<String> = input.iter().map(|c| format!("{c:?}")).collect();
        let mut b: Vec<String> = once.iter().map(|c| format!("{c:?}")).collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        // Sorted: no later element is strictly preferred to an earlier one.
        for w in once.windows(2) {
            assert_ne!(compare(&w[0], &w[1]), Ordering::Greater, "{once:?}");
        }
        // Idempotent, and unusable destinations are all at the end.
        let mut twice = once.clone();
        sort(&mut twice);
        assert_eq!(once, twice);
        let first_unusable = once.iter().position(|c| c.source.is_none()).unwrap_or(once.len());
        assert!(once[first_unusable..].iter().all(|c| c.source.is_none()), "{once:?}");
    }
}

#[test]
fn property_compare_is_antisymmetric_and_transitive() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    for _ in 0..5_000 {
        let (x, y, z) = (g.candidate(), g.candidate(), g.candidate());
        assert_eq!(compare(&x, &y), compare(&y, &x).reverse(), "{x:?} {y:?}");
        if compare(&x, &y) != Ordering::Greater && compare(&y, &z) != Ordering::Greater {
            assert_ne!(compare(&x, &z), Ordering::Greater, "{x:?} {y:?} {z:?}");
        }
    }
}
