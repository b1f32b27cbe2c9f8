//! The demo origin behind the quickstart proxy: answers every request with a short text
//! that shows what the proxy forwarded.

use std::convert::Infallible;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::UnixListener;

/// The same variable and default as the `demo` cluster's endpoint.
const SOCKET_VAR: &str = "QUICKSTART_ORIGIN_SOCK";
const SOCKET_DEFAULT: &str = "/tmp/proxy-quickstart/origin.sock";

/// Binds the origin's socket and serves it on the proxy's runtime.
pub fn start() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let path = std::env::var(SOCKET_VAR)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| SOCKET_DEFAULT.into());
    let path = PathBuf::from(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // The socket is this binary's own: one left by an earlier run is always stale.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    eprintln!("demo origin listening on unix:{}", path.display());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer))
                    .await;
            });
        }
    });
    Ok(())
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let body = format!(
        "Hello from the demo origin, through the proxy.\n\
         {} {} (host: {}, x-forwarded-for: {}, x-request-id: {})\n",
        request.method(),
        request.uri(),
        header("host"),
        header("x-forwarded-for"),
        header("x-request-id"),
    );
    Ok(Response::builder()
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default())
}
