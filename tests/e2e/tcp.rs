//! The L4 proxy built from the DSL (`tcp { .. }` listeners), in front of a real Redis
//! driven with `redis-cli`: TCP and Unix-socket listeners, a large value, a user
//! network filter, and a source-IP rule.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should panic with its error

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use proxy_tests::{DEADLINE, ProxyCommand, poll_until, require_tool, tempdir};

const INSTALL: &str = "apt-get install -y redis-server";

/// A `redis-server` on a Unix socket in the test's directory, killed on drop.
struct Redis {
    child: Child,
    socket: PathBuf,
}

impl Redis {
    fn start(dir: &Path) -> Self {
        require_tool("redis-server", "redis-server");
        require_tool("redis-cli", "redis-server");
        let socket = dir.join("redis.sock");
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocket",
            ])
            .arg(&socket)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): {INSTALL}"));
        let redis = Redis { child, socket };
        poll_until("redis-server to answer PING", DEADLINE, || {
            let out = cli_unix(&redis.socket, &["PING"]);
            (out.status.success() && out.stdout == b"PONG\n").then_some(())
        });
        redis
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(args: &[&str], target: &[String], stdin: Option<&Path>) -> Output {
    let mut command = Command::new("redis-cli");
    command.args(target).args(args);
    if let Some(input) = stdin {
        command.stdin(std::fs::File::open(input).expect("open redis-cli input"));
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): {INSTALL}"))
}

fn cli_unix(socket: &Path, args: &[&str]) -> Output {
    cli(args, &["-s".into(), socket.display().to_string()], None)
}

fn cli_tcp(addr: std::net::SocketAddr, args: &[&str]) -> Output {
    cli(
        args,
        &[
            "-h".into(),
            addr.ip().to_string(),
            "-p".into(),
            addr.port().to_string(),
        ],
        None,
    )
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn redis_through_tcp_and_unix_listeners_with_a_filter_and_source_rules() {
    let dir = tempdir();
    let redis = Redis::start(dir.path());
    let proxy_socket = dir.path().join("redis-proxy.sock");
    let mut proxy = ProxyCommand::new(env!("CARGO_BIN_EXE_tcp_fixture"), dir.path())
        .env("REDIS_SOCK", &redis.socket)
        .env("REDIS_PROXY_SOCK", &proxy_socket)
        .spawn();
    let tcp = proxy.tcp_listener("redis_tcp");
    let denied = proxy.tcp_listener("denied");

    // TCP listener → Unix-socket Redis.
    assert_eq!(stdout(&cli_tcp(tcp, &["SET", "greeting", "hello"])), "OK\n");
    assert_eq!(stdout(&cli_tcp(tcp, &["GET", "greeting"])), "hello\n");
    // Unix listener → the same Redis.
    assert_eq!(
        stdout(&cli_unix(&proxy_socket, &["GET", "greeting"])),
        "hello\n"
    );

    // A large value, in through the TCP listener, out through the Unix one.
    let big = dir.path().join("big");
    let value: Vec<u8> = (0..8 * 1024 * 1024)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    std::fs::write(&big, &value).unwrap();
    let target = [
        "-h".to_owned(),
        tcp.ip().to_string(),
        "-p".to_owned(),
        tcp.port().to_string(),
    ];
    let set = cli(&["-x", "SET", "big"], &target, Some(&big));
    assert_eq!(stdout(&set), "OK\n", "{set:?}");
    let got = cli_unix(&proxy_socket, &["--no-raw", "STRLEN", "big"]);
    assert_eq!(stdout(&got), "(integer) 8388608\n");
    let got = cli_unix(&proxy_socket, &["GET", "big"]);
    assert_eq!(
        got.stdout.len(),
        value.len() + 1,
        "GET big returned the wrong length"
    );
    assert_eq!(&got.stdout[..value.len()], &value[..]);

    // The user filter closes the connection on FLUSHALL: nothing reaches Redis.
    let flush = cli_tcp(tcp, &["FLUSHALL"]);
    assert!(
        !stdout(&flush).contains("OK"),
        "FLUSHALL went through: {flush:?}"
    );
    assert_eq!(
        stdout(&cli_unix(&redis.socket, &["GET", "greeting"])),
        "hello\n"
    );

    // Loopback is denied on the third listener: the connection closes without a reply.
    let ping = cli_tcp(denied, &["PING"]);
    assert!(
        !stdout(&ping).contains("PONG"),
        "denied listener answered: {ping:?}"
    );

    let status = proxy.terminate();
    assert!(
        status.success(),
        "proxy exit: {status:?}\n{}",
        proxy.stderr()
    );
    assert!(
        !proxy_socket.exists(),
        "the proxy's Unix socket file was not removed"
    );
}
