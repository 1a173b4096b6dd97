//! Other targets: everything reports `Unsupported` until a backend exists (PF_ROUTE next).

use std::collections::BTreeMap;

use crate::cost::CostReadings;
use crate::{PathError, Snapshot};

pub(crate) fn snapshot() -> Result<Snapshot, PathError> {
    Err(PathError::Unsupported)
}

pub(crate) fn cost_readings(_snapshot: &Snapshot) -> Result<CostReadings, PathError> {
    Err(PathError::Unsupported)
}

pub(crate) fn cost_readings_with(
    _snapshot: &Snapshot,
    _networkmanager: &BTreeMap<String, bool>,
) -> Result<CostReadings, PathError> {
    Err(PathError::Unsupported)
}

pub(crate) fn networkmanager_metered() -> BTreeMap<String, bool> {
    BTreeMap::new()
}

pub(crate) fn networkmanager_monitor(_changed: impl FnMut() -> bool) {}

pub(crate) fn networkmanager_present() -> bool {
    false
}

#[derive(Debug)]
pub(crate) struct Subscription;

#[derive(Debug, Default)]
pub(crate) struct Drained {
    pub(crate) changes: usize,
    pub(crate) overflowed: bool,
}

#[derive(Debug)]
pub(crate) struct Bound;

impl Bound {
    pub(crate) fn register(self) -> Result<Subscription, PathError> {
        Err(PathError::Unsupported)
    }
}

impl Subscription {
    pub(crate) fn bind(_receive_buffer: Option<usize>) -> Result<Bound, PathError> {
        Err(PathError::Unsupported)
    }

    pub(crate) async fn next(&mut self) -> Result<Drained, PathError> {
        Err(PathError::Unsupported)
    }
}
