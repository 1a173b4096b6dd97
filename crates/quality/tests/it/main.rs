//! nw-quality's tests, all in virtual time: the estimators after step changes, the RTT filters,
//! and the link-quality levels.

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "tests: a panic is the failure report, stderr the figures"
)]

mod estimate;
mod level;
mod rpm;
