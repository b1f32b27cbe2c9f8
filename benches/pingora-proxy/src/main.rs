//! A minimal Pingora reverse proxy: the Pingora peer of the side-by-side load harness
//! (`benches/load/run.sh`). Like `apps/bench-proxy`, it reads
//!
//! - `BENCH_ADDR`: the TCP address to listen on (default `127.0.0.1:8080`);
//! - `BENCH_UPSTREAM`: the one upstream, `unix:/abs/path` or `host:port`;
//! - `BENCH_THREADS`: worker threads (default 1).
//!
//! Every request goes to that upstream over HTTP/1.1 with Pingora's keep-alive pool
//! (`upstream_keepalive_pool_size` raised from 128 to 1024). Downstream accepts HTTP/1.1
//! and h2c (prior knowledge). No logger is installed, so nothing is logged per request.

use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct OneUpstream {
    /// Either a Unix socket path or a resolved `host:port`.
    unix: Option<String>,
    tcp: Option<std::net::SocketAddr>,
}

#[async_trait]
impl ProxyHttp for OneUpstream {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let peer = match (&self.unix, &self.tcp) {
            (Some(path), _) => HttpPeer::new_uds(path, false, String::new())?,
            (None, Some(addr)) => HttpPeer::new(*addr, false, String::new()),
            (None, None) => unreachable!("checked at start-up"),
        };
        Ok(Box::new(peer))
    }
}

fn main() {
    let listen = std::env::var("BENCH_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let upstream = std::env::var("BENCH_UPSTREAM").unwrap_or_else(|_| "127.0.0.1:8081".into());
    let threads = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);

    let app = match upstream.strip_prefix("unix:") {
        Some(path) => OneUpstream {
            unix: Some(path.to_owned()),
            tcp: None,
        },
        None => {
            use std::net::ToSocketAddrs;
            let addr = upstream
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .unwrap_or_else(|| {
                    eprintln!("BENCH_UPSTREAM: cannot resolve {upstream:?}");
                    std::process::exit(2)
                });
            OneUpstream {
                unix: None,
                tcp: Some(addr),
            }
        }
    };

    let conf = ServerConf {
        threads,
        // As generous as the other peers' pools (ours: max_idle_per_endpoint 1024; nginx:
        // keepalive 1024), so 500 concurrent h2c streams never churn upstream connections.
        upstream_keepalive_pool_size: 1024,
        pid_file: format!("/tmp/pingora-bench-{}.pid", std::process::id()),
        upgrade_sock: format!("/tmp/pingora-bench-{}.sock", std::process::id()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut service = http_proxy_service(&server.configuration, app);
    let mut options = HttpServerOptions::default();
    options.h2c = true;
    if let Some(logic) = service.app_logic_mut() {
        logic.server_options = Some(options);
    }
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever();
}
