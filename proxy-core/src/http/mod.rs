//! The HTTP connection manager: what happens to a request between the codec and the
//! upstream connection.
//!
//! The codec (hyper) hands over an `http::Request` whose body is a [`RequestBody`] and
//! takes back an `http::Response<`[`ResponseBody`]`>`. Routing, header rules, local
//! replies and clusters see only those types, so a second codec can sit beside hyper
//! without changing anything here.

mod body;
mod exchange;
mod filtered;
mod grpc;
mod headers;
mod local_reply;
mod mirror;
pub(crate) mod request_id;
mod retry;
pub(crate) mod timer;
pub(crate) mod wire;

// The `http` crate's types, so filters written against proxy-core need no other
// dependency: `proxy_core::http::request::Parts`, `proxy_core::http::StatusCode`, ...
pub use ::http::{
    HeaderMap, Method, Request, Response, StatusCode, Uri, Version, header, request, response,
};

pub use body::{BodyError, BoxError, IncomingBody, RequestBody, ResponseBody, ResponseBodyError};
pub(crate) use exchange::local_reply;
pub use exchange::{Downstream, exchange};
pub(crate) use headers::prepare_response;
pub(crate) use local_reply::RESPONSE_FLAGS_NAME;
pub use local_reply::{LocalReply, RESPONSE_FLAGS_HEADER};
