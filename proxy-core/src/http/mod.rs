//! The HTTP connection manager: what happens to a request between the codec and the
//! upstream connection.
//!
//! The codec (hyper) hands over an `http::Request` whose body is a [`RequestBody`] and
//! takes back an `http::Response<`[`ResponseBody`]`>`. Routing, header rules, local
//! replies and clusters see only those types, so a second codec can sit beside hyper
//! without changing anything here.

mod body;
mod connection_manager;
mod headers;
mod local_reply;
mod request_id;

pub use body::{RequestBody, ResponseBody};
pub use local_reply::{LocalReply, RESPONSE_FLAGS_HEADER};

pub(crate) use connection_manager::{ConnectionManager, Downstream};
