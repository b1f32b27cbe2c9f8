//! Upstream connections: dialling endpoints over TCP or Unix sockets, and keeping
//! HTTP connections alive for reuse.

mod connect;
pub(crate) mod h1;
mod pool;

pub use connect::ConnectError;
pub(crate) use connect::{connect, connect_tls};
pub(crate) use pool::Pool;
