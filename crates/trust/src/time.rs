//! RFC 3339 times for `--at` and reports, to and from Unix seconds. Pure (the civil-date
//! conversion of Howard Hinnant's `days_from_civil`).

/// Parses `2026-11-21T08:00:00Z` or with an offset (`+01:00`); fractions are ignored.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let err = || format!("{text:?} is not an RFC 3339 time (e.g. 2026-11-21T08:00:00Z)");
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(err());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(err());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let s = text.get(r).ok_or_else(err)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        s.parse().map_err(|_| err())
    };
    let (y, mo, d, h, mi, s) =
        (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60 {
        return Err(err());
    }
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && matches!(o.as_bytes()[0], b'+' | b'-') && o.as_bytes()[3] == b':' => {
            let (oh, om) = (num_in(o, 1..3).ok_or_else(err)?, num_in(o, 4..6).ok_or_else(err)?);
            let secs = oh * 3600 + om * 60;
            if o.starts_with('-') { -secs } else { secs }
        }
        _ => return Err(err()),
    };
    Ok(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s.min(59) - offset)
}

fn num_in(s: &str, r: std::ops::Range<usize>) -> Option<i64> {
    let t = s.get(r)?;
    if t.bytes().all(|c| c.is_ascii_digit()) { t.parse().ok() } else { None }
}

/// Formats Unix seconds as `2026-11-21T08:00:00Z`.
pub fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_round_trip() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2019-07-01T00:00:00Z"), Ok(1_561_939_200));
        assert_eq!(parse_rfc3339("2000-02-29T12:30:15Z"), Ok(951_827_415));
        assert_eq!(
            parse_rfc3339("2026-11-21T09:00:00+01:00"),
            parse_rfc3339("2026-11-21T08:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-11-21T08:00:00.123Z"),
            parse_rfc3339("2026-11-21T08:00:00Z")
        );
        for secs in [0, 951_827_415, 1_561_939_200, 4_102_444_800, -86_400] {
            assert_eq!(parse_rfc3339(&rfc3339(secs)), Ok(secs), "{}", rfc3339(secs));
        }
    }

    #[test]
    fn bad_times_say_what_is_expected() {
        for bad in [
            "",
            "2026-11-21",
            "2026-02-30T00:00:00Z",
            "2026-11-21T25:00:00Z",
            "2026-11-21T08:00:00",
            "2026-11-21T08:00:00+1",
            "x026-11-21T08:00:00Z",
            "2026-11-21T08:00:00.Z",
            "２０２６-11-21T08:00:00Z",
        ] {
            let e = parse_rfc3339(bad).unwrap_err();
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
    }
}
