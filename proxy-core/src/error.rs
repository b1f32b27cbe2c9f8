//! Error types of the runtime, re-exported in one place.

pub use crate::cluster::UpstreamError;
pub use crate::config::{InputError, ParseAddressError};
pub use crate::listener::BindError;
pub use crate::server::ServeError;
pub use crate::tls::TlsError;
pub use crate::upstream::ConnectError;
