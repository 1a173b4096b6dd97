//! Kernel interfaces, per platform. Only Linux has a filter host.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;
