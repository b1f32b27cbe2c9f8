//! Support for the end-to-end suites: real peers (nginx, curl), built proxy binaries,
//! free ports and process hygiene.
//!
//! Rules every helper follows, so suites stay correct when cargo runs their tests in
//! parallel on a loaded machine:
//! - only 127.0.0.1 and Unix sockets inside a per-test [`tempfile::TempDir`];
//! - readiness and completion are observed by polling with a generous deadline
//!   ([`DEADLINE`]), never assumed after a sleep;
//! - every child process is owned by a guard that kills it on drop;
//! - a missing tool is a loud failure naming the install command, never a skip.

pub mod client;
pub mod net;
pub mod nginx;
pub mod origin;
pub mod process;
pub mod raw;
pub mod tools;
pub mod wrk;

use std::time::Duration;

pub use client::{Conn, Proto, Reply, ReqBody};
pub use net::{ClosedPort, SaturatedPort, free_port, poll_until, wait_for_tcp, wait_for_unix};
pub use nginx::{AccessEntry, AccessLog, Nginx};
pub use origin::Origin;
pub use process::{Finished, ProxyCommand, ProxyProcess, peak_rss_kib};
pub use raw::{Head, RawHttp};
pub use tools::{
    CurlOutput, curl, edge_bin, release_bin, require_curl, require_nginx, require_tool,
};
pub use wrk::{Wrk, WrkReport, require_wrk};

/// Upper bound for anything a test waits on (start-up, a response, an exit). Generous on
/// purpose: it only matters when something is broken, and then a clear panic beats a hang.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// How often pollers look again. Short, so waiting costs little when things are fast.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A fresh temporary directory for one test: sockets, logs and nginx files live in it and
/// go away with it.
pub fn tempdir() -> tempfile::TempDir {
    match tempfile::Builder::new().prefix("e2e-").tempdir() {
        Ok(dir) => dir,
        Err(error) => panic!("cannot create a temporary directory: {error}"),
    }
}
