//! WebSocket through the proxy with real peers: Python `websockets` as client and as
//! echo server (on a Unix socket). Text, binary, a 4 MiB message, ordering, the close
//! handshake, and refusal on a route that does not allow upgrades.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use proxy_tests::{ProxyCommand, tempdir};

const INSTALL: &str = "python3 -m pip install websockets";

fn python_with_websockets() {
    let found = Command::new("python3")
        .args(["-c", "import websockets"])
        .status();
    assert!(
        matches!(found, Ok(status) if status.success()),
        "python3 with the `websockets` package is required: {INSTALL}"
    );
}

/// The echo server, killed on drop.
struct EchoServer(Child);

impl EchoServer {
    fn start(socket: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ws/echo_server.py");
        let mut child = match Command::new("python3")
            .arg(script)
            .arg(socket)
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(error) => panic!("cannot start the echo server ({error}): {INSTALL}"),
        };
        // It prints "ready" once listening: a readiness signal, not a sleep.
        let stdout = child.stdout.take().map(BufReader::new);
        let ready = stdout.and_then(|mut out| {
            let mut line = String::new();
            out.read_line(&mut line).ok()?;
            Some(line)
        });
        let server = EchoServer(child);
        assert_eq!(
            ready.as_deref(),
            Some("ready\n"),
            "the echo server did not start"
        );
        server
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn websocket_frames_cross_the_proxy_and_other_routes_refuse_upgrades() {
    python_with_websockets();
    let dir = tempdir();
    let socket = dir.path().join("ws.sock");
    let _server = EchoServer::start(&socket);
    let mut proxy = ProxyCommand::new(env!("CARGO_BIN_EXE_upgrade_fixture"), dir.path())
        .env("WS_ADDR", format!("unix:{}", socket.display()))
        .spawn();
    let addr = proxy.tcp_listener("main");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ws/client.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(format!("ws://{addr}/ws/echo"))
        .arg(format!("ws://{addr}/plain"))
        .output()
        .unwrap_or_else(|error| panic!("cannot run the client ({error}): {INSTALL}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed:\n{stdout}\n{}\nproxy:\n{}",
        String::from_utf8_lossy(&output.stderr),
        proxy.stderr()
    );
    assert_eq!(
        stdout,
        "text ok\nbinary ok\nlarge ok\nordered ok\nclose ok 1000\nrefused 403\n",
        "proxy:\n{}",
        proxy.stderr()
    );
}
