//! nw-connection on loopback, for real: listeners under abuse.

#![allow(clippy::disallowed_methods, reason = "tests pace and time real sockets")]
#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "tests: a panic is the failure report"
)]

mod connection;
mod framed;
mod fuzz_corpus;
mod listener;
mod multicast;
