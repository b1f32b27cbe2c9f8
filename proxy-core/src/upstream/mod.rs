//! Upstream connections: dialling endpoints over TCP or Unix sockets, and keeping
//! HTTP connections alive for reuse.

mod connect;
mod pool;

pub use connect::ConnectError;
pub(crate) use connect::{connect, connect_tls};
pub(crate) use pool::{Pool, PoolReturn};
