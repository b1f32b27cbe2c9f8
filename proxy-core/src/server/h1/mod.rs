//! The native HTTP/1.1 server codec, over `httparse`.
//!
//! hyper's server drives each connection through a dispatcher that hands requests to a
//! service and moves its future into a slot, reads with a per-request timer, and writes
//! through its own buffers. Here one task per connection reads a head into a reused
//! buffer, builds the request (field values share that buffer), runs the pipeline, and
//! writes the response head together with the first body bytes that are ready, in one
//! write. A request body is read off the connection only when the proxy asks for it.
//!
//! HTTP/2 stays with hyper (prior knowledge is detected from the preface before this
//! codec sees the connection), and hyper's HTTP/1.1 server remains selectable
//! (`--http1 hyper`) as the reference the tests compare against.

mod body;
mod conn;
mod head;
mod relay;
mod write;

pub(crate) use body::RequestStream;
pub(crate) use conn::{DownstreamUpgrade, serve};

/// A read buffer lent by this worker, for the first bytes of a connection.
pub(crate) fn read_buffer() -> bytes::BytesMut {
    crate::lent::read_buffer(
        crate::lent::Reading::Requests,
        conn::READ_BUFFER,
        conn::READ_BUFFER,
    )
}
