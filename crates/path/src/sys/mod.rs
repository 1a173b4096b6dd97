//! The operating-system seam.
//!
//! Contract, whatever the platform:
//! - [`snapshot`] returns one full, consistent [`Snapshot`](crate::Snapshot) read now, with
//!   nothing cached from earlier calls.
//! - [`Subscription`] delivers "something changed" for links, addresses and routes, and says
//!   when notifications were lost so the caller can resynchronise.
//! - [`cost_readings`] gathers the expensive/constrained sources (see [`crate::cost`]);
//!   [`cost_readings_with`] takes NetworkManager's values as read earlier by
//!   [`networkmanager_metered`], which starts nothing unless [`networkmanager_present`].
//!
//! Linux implements all of it over rtnetlink and sysfs; other targets compile against a
//! fallback that reports [`PathError::Unsupported`](crate::PathError::Unsupported).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::{
    Bound, Subscription, cost_readings, cost_readings_with, networkmanager_metered,
    networkmanager_monitor, networkmanager_present, snapshot,
};

#[cfg(not(target_os = "linux"))]
mod fallback;
#[cfg(not(target_os = "linux"))]
pub(crate) use fallback::{
    Bound, Subscription, cost_readings, cost_readings_with, networkmanager_metered,
    networkmanager_monitor, networkmanager_present, snapshot,
};
