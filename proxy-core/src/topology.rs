//! The contract between the `proxy!` expansion and the runtime.

use crate::cluster::Cluster;
use crate::config::Inputs;
use crate::listener::ListenerConfig;
use crate::server::{ServeError, Server};

/// A compiled proxy topology. Implemented only by `proxy!`'s expansion.
///
/// Start-up runs [`build`](Topology::build) once (reading environment inputs), then
/// [`serve`](Topology::serve) once inside the runtime. Nothing here is consulted per
/// request: each listener's [`Router`](crate::route::Router) holds what it needs.
pub trait Topology: Sized + Send + Sync + 'static {
    /// The topology as written, rendered by the macro; `--check` prints it.
    const SUMMARY: &'static str;

    /// Reads runtime inputs and builds clusters and routers. Problems are recorded in
    /// `inputs`; when any were, the launcher reports them all and exits without serving.
    fn build(inputs: &mut Inputs) -> Self;

    /// Every listener with its resolved address, in declaration order.
    fn listeners(&self) -> Vec<&ListenerConfig>;

    /// Every cluster, in declaration order.
    fn clusters(&self) -> Vec<&Cluster>;

    /// Binds every listener on `server`, each with its own monomorphized pipeline. The
    /// topology lives for the rest of the process (the launcher leaks it once), so
    /// pipelines, routers and filter chains are borrowed for `'static` at no cost.
    fn serve(&'static self, server: &mut Server) -> Result<(), ServeError>;
}
