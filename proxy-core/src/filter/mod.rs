//! Filters: user and built-in code that runs inside the pipeline.
//!
//! [`HttpFilter`]s run inside the HTTP connection manager, on one request and its
//! response. A listener, virtual host or route lists its filters in the DSL; the macro
//! composes each route's effective chain (listener, then virtual host, then route, with
//! disables and overrides applied) into one nested tuple type, so the compiler sees and
//! inlines the whole chain and there is no `Box<dyn Filter>` anywhere.

pub mod builtin;
mod http;

pub use http::{BodyProgress, Flow, HttpFilter, RequestInfo, Summary};
