//! L4 listeners for the `tcp` suite: Redis behind the proxy over TCP and a Unix socket,
//! a user network filter, and a source-IP rule that denies loopback.

mod guard {
    use proxy_core::bytes::BytesMut;
    use proxy_core::tcp::{NetworkFilter, NetworkFlow};

    /// Closes the connection when a client sends `FLUSHALL`: a user's network filter.
    pub struct DenyFlushAll;

    impl NetworkFilter for DenyFlushAll {
        type State = ();

        fn on_read(&self, _: &mut (), data: &mut BytesMut) -> NetworkFlow {
            let forbidden = b"FLUSHALL";
            if data
                .windows(forbidden.len())
                .any(|window| window.eq_ignore_ascii_case(forbidden))
            {
                return NetworkFlow::Close;
            }
            NetworkFlow::Continue
        }
    }
}

proxy_core::proxy! {
    listener redis_tcp {
        bind: env("REDIS_PROXY_ADDR", "127.0.0.1:0"),
        tcp {
            cluster: redis,
            filters: [guard::DenyFlushAll],
            idle_timeout: 30s,
        }
    }
    listener redis_unix {
        bind: pipe(env("REDIS_PROXY_SOCK", "/run/redis-proxy.sock")),
        tcp { cluster: redis, stat_prefix: "redis_unix" }
    }
    listener denied {
        bind: env("DENIED_ADDR", "127.0.0.1:0"),
        tcp { cluster: redis, deny_source_ips: ["127.0.0.0/8"] }
    }
    cluster redis { endpoints: [pipe(env("REDIS_SOCK", "/run/redis/redis.sock"))] }
}

fn main() -> std::process::ExitCode {
    Proxy::main()
}
