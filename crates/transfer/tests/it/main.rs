//! nw-transfer's tests: the pure machines in virtual time, and downloads from a real nginx on
//! loopback.

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "tests: a panic is the failure report, stderr the figures"
)]

mod nginx;
mod resume;
mod scheduler;
