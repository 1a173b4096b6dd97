//! Timed measurements on a shared VM.

/// A timed measurement, taken up to three times: the first that `ok` accepts is returned, or
/// every one taken. This VM shares its host: steal time of up to 17% was seen during a CI run,
/// enough to push one measurement out of a tight band, while code that is wrong misses the band
/// every time. The band itself stays as tight as the claim it checks.
pub fn one_of_three<T>(
    mut measure: impl FnMut() -> T,
    ok: impl Fn(&T) -> bool,
) -> Result<T, Vec<T>> {
    let mut missed = Vec::new();
    for _ in 0..3 {
        let m = measure();
        if ok(&m) {
            return Ok(m);
        }
        missed.push(m);
    }
    Err(missed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_accepted_measurement_wins_and_misses_are_all_reported() {
        let mut counting = 1..;
        assert_eq!(one_of_three(|| counting.next(), |m| *m == Some(2)), Ok(Some(2)));
        let mut counting = 1..;
        assert_eq!(
            one_of_three(|| counting.next(), |_| false),
            Err(vec![Some(1), Some(2), Some(3)])
        );
    }
}
