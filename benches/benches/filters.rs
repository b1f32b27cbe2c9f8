//! What a filter chain costs on the request path: one request through the real proxy
//! (accept loop, hyper, routing, the exchange) answered by a `direct_response`, with no
//! filters and with five no-op filters on the route. The difference is the chain's cost:
//! its state, every hook call, and the response-body wrapper that carries the state.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use proxy_core::Topology;
use proxy_core::bytes::Bytes;
use proxy_core::config::{BindAddress, Inputs};
use proxy_core::filter::HttpFilter;
use proxy_core::server::{Server, ServerSettings};

/// Does nothing; every hook keeps its default.
struct Noop;

impl HttpFilter for Noop {
    type State = ();
}

proxy_core::proxy! {
    listener bare {
        bind: "127.0.0.1:0",
        http {
            virtual_host all { domains: ["*"], route prefix("/") => direct_response(200, "ok\n") }
        }
    }
    listener filtered {
        bind: "127.0.0.1:0",
        http {
            filters: [a = Noop, b = Noop, c = Noop, d = Noop, e = Noop],
            virtual_host all { domains: ["*"], route prefix("/") => direct_response(200, "ok\n") }
        }
    }
}

fn filters(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("runtime: {error}"),
    };
    let proxy: &'static Proxy = Box::leak(Box::new(Proxy::build(&mut Inputs::default())));
    let (bare, filtered) = runtime.block_on(async {
        let mut server = Server::new(ServerSettings::default());
        let bare = server.http(&proxy.__listener_bare, &proxy.__router_bare);
        let filtered = server.http(&proxy.__listener_filtered, &proxy.__router_filtered);
        // The server runs for the rest of the process.
        std::mem::forget(server);
        match (bare, filtered) {
            (Ok(BindAddress::Tcp(bare)), Ok(BindAddress::Tcp(filtered))) => (bare, filtered),
            other => panic!("bind: {other:?}"),
        }
    });

    let mut group = c.benchmark_group("request_through_proxy");
    group.measurement_time(Duration::from_secs(5));
    for (name, address) in [("0_filters", bare), ("5_noop_filters", filtered)] {
        let mut sender = runtime.block_on(async {
            let stream = match tokio::net::TcpStream::connect(address).await {
                Ok(stream) => stream,
                Err(error) => panic!("connect: {error}"),
            };
            let (sender, connection) = match http1::handshake(TokioIo::new(stream)).await {
                Ok(pair) => pair,
                Err(error) => panic!("handshake: {error}"),
            };
            tokio::spawn(connection);
            sender
        });
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let request = http::Request::get("/")
                        .header("host", "bench")
                        .body(Empty::<Bytes>::new());
                    let Ok(request) = request else {
                        panic!("request")
                    };
                    let response = match sender.send_request(request).await {
                        Ok(response) => response,
                        Err(error) => panic!("send: {error}"),
                    };
                    match response.into_body().collect().await {
                        Ok(body) => body.to_bytes().len(),
                        Err(error) => panic!("body: {error}"),
                    }
                })
            })
        });
    }
    group.finish();
}

/// The chain's own work per request, without the network: state, both header hooks and
/// completion, for five no-op filters as the generated code holds them.
fn chain_hooks(c: &mut Criterion) {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use proxy_core::filter::{RequestInfo, Summary};

    type Five = (
        Arc<Noop>,
        (Arc<Noop>, (Arc<Noop>, (Arc<Noop>, (Arc<Noop>, ())))),
    );
    let chain: Five = (
        Arc::new(Noop),
        (
            Arc::new(Noop),
            (Arc::new(Noop), (Arc::new(Noop), (Arc::new(Noop), ()))),
        ),
    );
    let (mut request, ()) = http::Request::new(()).into_parts();
    let (mut response, ()) = http::Response::new(()).into_parts();
    let info = RequestInfo {
        client_ip: None,
        listener: "bench",
        route: "bench/all/0",
        start: std::time::Instant::now(),
    };
    let summary = Summary {
        status: http::StatusCode::OK,
        response_flags: "",
        bytes_received: 0,
        bytes_sent: 0,
        duration: Duration::ZERO,
        upstream: None,
        completed: true,
    };
    // The hooks' futures are ready at once; one poll with a no-op waker runs them.
    fn ready<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(output) => output,
            Poll::Pending => panic!("a no-op hook was pending"),
        }
    }
    c.bench_function("chain_hooks/5_noop_filters", |b| {
        b.iter(|| {
            let mut state = <Five as HttpFilter>::State::default();
            let a = ready(chain.on_request_headers(&mut state, &mut request, &info)).is_continue();
            let b =
                ready(chain.on_response_headers(&mut state, &mut response, &info)).is_continue();
            chain.on_complete(state, &info, &summary);
            a && b
        })
    });
}

criterion_group!(benches, filters, chain_hooks);
criterion_main!(benches);
