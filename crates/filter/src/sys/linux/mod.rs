//! The Linux host's kernel parts: NFQUEUE, the firewall rules, sock_diag and procfs.

pub(crate) mod bpf;
pub(crate) mod closes;
pub(crate) mod conntrack;
pub(crate) mod diag;
pub mod nfqueue;
pub(crate) mod procfs;
pub(crate) mod raw;
pub(crate) mod tables;
