//! OS specifics. Only Linux has a host today; the contract and the SDK are portable.

#[cfg(target_os = "linux")]
pub(crate) mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;
