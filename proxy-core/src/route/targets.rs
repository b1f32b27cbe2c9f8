//! Forwarding to more than one cluster: weighted traffic splitting and mirroring.
//!
//! A [`RouteAction::Split`](super::RouteAction::Split) draws one cluster per request
//! in proportion to the weights (Envoy's `weighted_clusters`, without runtime keys or
//! per-cluster header rules); the whole request, retries included, stays on that
//! cluster. Each mirror then gets a copy of the request with its own probability
//! (Envoy's `request_mirror_policies` with `runtime_fraction`); see `http::mirror` for
//! how a copy is sent and what is not mirrored.

use std::sync::Arc;

use crate::cluster::Cluster;

/// The clusters a route forwards to when it is not exactly one: a weighted split
/// (Envoy's `weighted_clusters`) and/or mirrors (Envoy's `request_mirror_policies`).
#[derive(Debug)]
pub struct Targets {
    /// Each cluster with its weight; a request goes to one of them, drawn in proportion
    /// to weight.
    weighted: Box<[(Arc<Cluster>, u32)]>,
    total_weight: u32,
    mirrors: Box<[Mirror]>,
}

/// A cluster that receives a copy of a share of the route's requests; its responses
/// are discarded and can never affect the client's.
#[derive(Debug)]
pub struct Mirror {
    /// Where the copies go.
    pub cluster: Arc<Cluster>,
    /// Share of requests mirrored, 0..=100.
    pub percent: u32,
}

impl Targets {
    /// A split over `weighted`, without mirrors. `weighted` must not be empty; weights
    /// of 0 never receive traffic. A `Targets` with one cluster of weight > 0 is how a
    /// single-cluster route gets mirrors.
    pub fn new(weighted: Vec<(Arc<Cluster>, u32)>) -> Self {
        let total_weight = weighted
            .iter()
            .fold(0u32, |total, (_, weight)| total.saturating_add(*weight));
        Self {
            weighted: weighted.into_boxed_slice(),
            total_weight,
            mirrors: Box::default(),
        }
    }

    /// Also sends a copy of `percent` (0..=100, larger values are 100) of requests to
    /// `cluster`, fire-and-forget.
    pub fn mirror(mut self, cluster: Arc<Cluster>, percent: u32) -> Self {
        let mut mirrors = std::mem::take(&mut self.mirrors).into_vec();
        mirrors.push(Mirror {
            cluster,
            percent: percent.min(100),
        });
        self.mirrors = mirrors.into_boxed_slice();
        self
    }

    /// The cluster for one request, drawn in proportion to weight; `None` only when
    /// every weight is 0.
    pub fn choose(&self) -> Option<&Cluster> {
        if self.total_weight == 0 {
            return None;
        }
        let mut draw = fastrand::u32(..self.total_weight);
        for (cluster, weight) in self.weighted.iter() {
            if draw < *weight {
                return Some(cluster);
            }
            draw -= weight;
        }
        None
    }

    /// The clusters and their weights, in configuration order.
    pub fn weighted(&self) -> &[(Arc<Cluster>, u32)] {
        &self.weighted
    }

    /// The sum of the weights (saturating).
    pub fn total_weight(&self) -> u32 {
        self.total_weight
    }

    /// The mirrors, in configuration order.
    pub fn mirrors(&self) -> &[Mirror] {
        &self.mirrors
    }
}
