use std::sync::{Arc, Mutex};

use super::Connection;
use crate::cluster::OpenConnection;
use crate::net::Rewound;

/// An origin connection after `101 Switching Protocols`: a plain byte stream (bytes the
/// origin sent right behind its `101` head come out first), still counted as the
/// cluster's connection until the tunnel closes.
pub(crate) type Upgraded = Rewound<OpenConnection>;

/// Hands an [`Upgraded`] connection from the cluster to the exchange that splices it,
/// through the response's extensions (which must be `Clone`).
#[derive(Debug, Clone)]
pub(crate) struct UpstreamUpgrade(Arc<Mutex<Option<Upgraded>>>);

impl UpstreamUpgrade {
    pub(crate) fn new(conn: Connection) -> Self {
        Self(Arc::new(Mutex::new(Some(conn.into_upgraded()))))
    }

    pub(crate) fn take(&self) -> Option<Upgraded> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}
