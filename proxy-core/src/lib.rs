//! # proxy-core
//!
//! The runtime of a proxy whose topology is Rust code. You describe listeners, routes
//! and clusters with the [`proxy!`] macro; it validates them at compile time and expands
//! to a type implementing [`Topology`], whose routers are specialised code. This crate
//! supplies everything that runs: listeners on TCP and Unix sockets, the HTTP/1.1 and
//! HTTP/2 connection manager (hyper), upstream connection pools, local replies, the
//! command line and graceful drain.
//!
//! ## How to use
//!
//! ```no_run
//! proxy_core::proxy! {
//!     listener main {
//!         bind: env("LISTEN_ADDR", "127.0.0.1:8080"),
//!         http {
//!             virtual_host any {
//!                 domains: ["*"],
//!                 route exact("/healthz") => direct_response(200, "ok\n"),
//!                 route prefix("/") => cluster(app),
//!             }
//!         }
//!     }
//!     cluster app { endpoints: [pipe("/run/app.sock")] }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     Proxy::main()
//! }
//! ```
//!
//! Users depend on this crate only; the macro is re-exported and its expansion names
//! items through `::proxy_core::__private`.

pub mod app;
pub mod cluster;
pub mod config;
pub mod error;
pub mod filter;
mod future;
pub mod http;
mod lent;
pub mod listener;
pub mod net;
pub mod route;
pub mod server;
pub mod stats;
pub mod tcp;
pub mod tls;
pub mod topology;
pub mod upstream;

pub use app::App;
/// Body chunks in filter hooks are `bytes::Bytes`.
pub use bytes;
pub use proxy_macros::proxy;
pub use topology::Topology;

/// Items named by code that `proxy!` generates. Not a stable API.
#[doc(hidden)]
pub mod __private;
