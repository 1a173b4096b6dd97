//! nw-transfer's tests: the pure machines in virtual time, downloads from a real nginx on
//! loopback, and HTTP/3 against ngtcp2's server and our own.

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "tests: a panic is the failure report, stderr the figures"
)]

mod altsvc;
mod h3;
mod headers;
mod nginx;
mod pac;
mod pool;
mod proxies;
mod proxy;
mod resume;
mod scheduler;
mod segments;
mod server;
mod support;
mod task;
