//! The topology the `grpc` and `http2` suites run. Virtual hosts are chosen by authority,
//! so a gRPC client picks a cluster with its channel's authority and an HTTP client with
//! its `Host`/`:authority`.
//!
//! ```text
//! listener main  GRPC_FIXTURE_ADDR
//!   tcp.grpc     /e2e.Echo/ ─▶ grpc_tcp   h2c over TCP          (GRPC_TCP_ADDR)
//!   unix.grpc    /e2e.Echo/ ─▶ grpc_unix  h2c over a Unix socket (GRPC_UNIX_ADDR=unix:..)
//!   down.grpc    /          ─▶ down_tcp   h2c, a closed port     (DOWN_TCP_ADDR)
//!   gone.grpc    /          ─▶ down_unix  h2c, an absent socket  (DOWN_UNIX_ADDR=unix:..)
//!   reset.grpc   /          ─▶ reset      h2c, closes at once    (RESET_ADDR)
//!   stall.grpc   /short/ (timeout 300ms), /none/ (timeout none), / (timeout 10s)
//!                           ─▶ stall      h2c, answers nothing   (STALL_ADDR)
//!   h2.origin    /          ─▶ nginx_h2   h2c                    (NGINX_H2_ADDR)
//!   h1.origin    /          ─▶ nginx_h1   HTTP/1.1               (NGINX_H1_ADDR)
//!   echo.origin  /          ─▶ echo_h2    h2c, the suite's own hyper origin (ECHO_H2_ADDR)
//! ```
//!
//! Any other authority matches no virtual host (`404 NR`, gRPC `UNIMPLEMENTED`).

proxy_core::proxy! {
    listener main {
        bind: env("GRPC_FIXTURE_ADDR", "127.0.0.1:0"),
        http {
            virtual_host tcp {
                domains: ["tcp.grpc"],
                route prefix("/e2e.Echo/") => cluster(grpc_tcp) { timeout: 10s },
            }
            virtual_host unix {
                domains: ["unix.grpc"],
                route prefix("/e2e.Echo/") => cluster(grpc_unix) { timeout: 10s },
            }
            virtual_host down {
                domains: ["down.grpc"],
                route prefix("/") => cluster(down_tcp),
            }
            virtual_host gone {
                domains: ["gone.grpc"],
                route prefix("/") => cluster(down_unix),
            }
            virtual_host reset {
                domains: ["reset.grpc"],
                route prefix("/") => cluster(reset),
            }
            virtual_host stall {
                domains: ["stall.grpc"],
                route prefix("/short/") => cluster(stall) { timeout: 300ms },
                route prefix("/none/") => cluster(stall) { timeout: none },
                route prefix("/") => cluster(stall) { timeout: 10s },
            }
            virtual_host h2_origin {
                domains: ["h2.origin"],
                route prefix("/") => cluster(nginx_h2),
            }
            virtual_host h1_origin {
                domains: ["h1.origin"],
                route prefix("/") => cluster(nginx_h1),
            }
            virtual_host echo_origin {
                domains: ["echo.origin"],
                route prefix("/") => cluster(echo_h2),
            }
        }
    }

    cluster grpc_tcp {
        endpoints: [env("GRPC_TCP_ADDR", "127.0.0.1:1")],
        protocol: http2,
    }
    cluster grpc_unix {
        endpoints: [env("GRPC_UNIX_ADDR", "unix:/tmp/grpc-fixture-unused.sock")],
        protocol: http2,
    }
    cluster down_tcp {
        endpoints: [env("DOWN_TCP_ADDR", "127.0.0.1:1")],
        protocol: http2,
        connect_timeout: 2s,
    }
    cluster down_unix {
        endpoints: [env("DOWN_UNIX_ADDR", "unix:/tmp/grpc-fixture-absent.sock")],
        protocol: http2,
        connect_timeout: 2s,
    }
    cluster reset {
        endpoints: [env("RESET_ADDR", "127.0.0.1:1")],
        protocol: http2,
    }
    cluster stall {
        endpoints: [env("STALL_ADDR", "127.0.0.1:1")],
        protocol: http2,
    }
    cluster nginx_h2 {
        endpoints: [env("NGINX_H2_ADDR", "127.0.0.1:1")],
        protocol: http2,
    }
    cluster nginx_h1 {
        endpoints: [env("NGINX_H1_ADDR", "127.0.0.1:1")],
    }
    cluster echo_h2 {
        endpoints: [env("ECHO_H2_ADDR", "127.0.0.1:1")],
        protocol: http2,
    }
}

fn main() -> std::process::ExitCode {
    Proxy::main()
}
