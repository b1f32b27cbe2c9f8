//! The command line every generated proxy has, exercised on the shipped `edge` binary:
//! `--help`, `--version`, `--check`, flag validation, runtime-input errors (exit 2), bind
//! failures (exit 1), `--concurrency` and `--log-level`, and the start-up log lines.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test reports failure

use std::net::TcpListener;
use std::path::Path;

use proxy_tests::*;

fn edge_cmd(dir: &Path) -> ProxyCommand {
    ProxyCommand::new(edge_bin(), dir)
}

#[track_caller]
fn assert_exit(run: &Finished, code: i32) {
    assert_eq!(
        run.code(),
        code,
        "unexpected exit status\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn help_lists_every_flag() {
    let dir = tempdir();
    let run = edge_cmd(dir.path()).arg("--help").run();
    assert_exit(&run, 0);
    for needle in [
        "Usage: edge",
        "--check",
        "--concurrency <N>",
        "--log-level <LEVEL>",
        "--drain-timeout <DURATION>",
        "--help",
        "--version",
    ] {
        assert!(
            run.stdout.contains(needle),
            "--help lacks {needle:?}:\n{}",
            run.stdout
        );
    }
}

#[test]
fn version_names_the_app() {
    let dir = tempdir();
    let run = edge_cmd(dir.path()).arg("--version").run();
    assert_exit(&run, 0);
    // edge shares the workspace version with this crate.
    assert_eq!(run.stdout, format!("edge {}\n", env!("CARGO_PKG_VERSION")));
}

/// Lines of the `--check` report from "resolved at start-up:" on, split into the
/// addresses block and the (order-free) environment block.
fn resolved_section(report: &str) -> (Vec<&str>, Vec<&str>) {
    let (summary, resolved) = report
        .split_once("resolved at start-up:\n")
        .unwrap_or_else(|| panic!("no `resolved at start-up:` in\n{report}"));
    assert!(
        !summary.trim().is_empty(),
        "the compiled topology is printed first:\n{report}"
    );
    let (addresses, environment) = resolved
        .split_once("environment:\n")
        .unwrap_or((resolved, ""));
    let mut environment: Vec<&str> = environment.lines().collect();
    environment.sort_unstable();
    (addresses.lines().collect(), environment)
}

#[test]
fn check_prints_the_topology_and_every_resolved_value_without_binding() {
    let dir = tempdir();
    // A port that is in use: --check must not try to bind it.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap();
    let run = edge_cmd(dir.path())
        .arg("--check")
        .env("EDGE_ADDR", busy_addr.to_string())
        .env("API_ADDR", "unix:/srv/api.sock")
        .run();
    assert_exit(&run, 0);
    let summary = run
        .stdout
        .split("resolved at start-up:")
        .next()
        .unwrap_or_default();
    for name in ["edge", "api", "hugo", "/api/"] {
        assert!(
            summary.contains(name),
            "topology summary lacks {name:?}:\n{}",
            run.stdout
        );
    }
    let (addresses, environment) = resolved_section(&run.stdout);
    let listener = format!("  listener edge on {busy_addr}");
    assert_eq!(
        addresses,
        [
            listener.as_str(),
            "  cluster api -> [unix:/srv/api.sock]",
            "  cluster hugo -> [unix:/dev/shm/hugo.sock]"
        ]
    );
    let edge_env = format!("  EDGE_ADDR = {busy_addr} (from environment)");
    let mut expected = vec![
        edge_env.as_str(),
        "  API_ADDR = unix:/srv/api.sock (from environment)",
        "  HUGO_SOCK = /dev/shm/hugo.sock (default)",
    ];
    expected.sort_unstable();
    assert_eq!(environment, expected);
    assert!(
        !run.stderr.contains("listening"),
        "--check must not serve:\n{}",
        run.stderr
    );

    // With nothing set, every value is its default.
    let run = edge_cmd(dir.path()).arg("--check").run();
    assert_exit(&run, 0);
    let (addresses, environment) = resolved_section(&run.stdout);
    assert_eq!(
        addresses,
        [
            "  listener edge on 0.0.0.0:8080",
            "  cluster api -> [127.0.0.1:8081]",
            "  cluster hugo -> [unix:/dev/shm/hugo.sock]"
        ]
    );
    assert_eq!(
        environment,
        [
            "  API_ADDR = 127.0.0.1:8081 (default)",
            "  EDGE_ADDR = 0.0.0.0:8080 (default)",
            "  HUGO_SOCK = /dev/shm/hugo.sock (default)"
        ]
    );
}

#[test]
fn a_bad_environment_value_exits_2_naming_it() {
    let dir = tempdir();
    let run = edge_cmd(dir.path()).env("EDGE_ADDR", "nonsense").run();
    assert_exit(&run, 2);
    assert!(
        run.stderr
            .contains(r#"EDGE_ADDR="nonsense" is not valid: expected ip:port"#),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("listening"), "{}", run.stderr);
}

#[test]
fn every_bad_environment_value_is_reported_at_once() {
    let dir = tempdir();
    for extra in [None, Some("--check")] {
        let mut command = edge_cmd(dir.path())
            .env("EDGE_ADDR", "nonsense")
            .env("API_ADDR", "no-port")
            .env("HUGO_SOCK", "relative.sock");
        if let Some(flag) = extra {
            command = command.arg(flag);
        }
        let run = command.run();
        assert_exit(&run, 2);
        for needle in [
            r#"EDGE_ADDR="nonsense""#,
            r#"API_ADDR="no-port""#,
            r#"HUGO_SOCK="relative.sock""#,
        ] {
            assert!(
                run.stderr.contains(needle),
                "{extra:?}: {needle} not reported:\n{}",
                run.stderr
            );
        }
        assert!(
            run.stdout.is_empty(),
            "{extra:?}: nothing on stdout:\n{}",
            run.stdout
        );
    }
}

#[test]
fn bad_flags_are_usage_errors() {
    let dir = tempdir();
    for args in [
        &["--concurrency", "0"][..],
        &["--concurrency", "many"],
        &["--log-level", "loud"],
        &["--drain-timeout", "soon"],
        &["--no-such-flag"],
    ] {
        let run = edge_cmd(dir.path()).args(args).run();
        assert_exit(&run, 2);
        assert!(run.stderr.contains("error:"), "{args:?}:\n{}", run.stderr);
    }
}

#[test]
fn a_bind_failure_exits_1() {
    let dir = tempdir();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let run = edge_cmd(dir.path())
        .env("EDGE_ADDR", addr.to_string())
        .run();
    assert_exit(&run, 1);
    assert!(
        run.stderr.contains(&format!("cannot bind {addr}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("edge"),
        "names the listener:\n{}",
        run.stderr
    );

    let missing = dir.path().join("no-such-dir").join("edge.sock");
    let run = edge_cmd(dir.path())
        .env("EDGE_ADDR", format!("unix:{}", missing.display()))
        .run();
    assert_exit(&run, 1);
    assert!(run.stderr.contains("cannot bind unix:"), "{}", run.stderr);
}

/// Names of the runtime's worker threads of `pid`.
fn worker_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "proxy-worker")
        .count()
}

/// edge whose upstreams refuse connections: every request gets a local 502, which is
/// enough to see it serve.
fn serving_edge(
    dir: &Path,
    closed: &ClosedPort,
    args: &[&str],
) -> (ProxyProcess, std::path::PathBuf) {
    let socket = dir.join("edge.sock");
    let mut edge = edge_cmd(dir)
        .env("EDGE_ADDR", format!("unix:{}", socket.display()))
        .env("API_ADDR", closed.addr().to_string())
        .env("HUGO_SOCK", dir.join("absent.sock"))
        .args(args)
        .spawn();
    edge.wait_unix(&socket);
    let out = curl([
        "--unix-socket",
        &socket.display().to_string(),
        "-i",
        "http://edge.local/api/x",
    ])
    .success();
    assert!(
        out.stdout_text()
            .starts_with("HTTP/1.1 502 Bad Gateway\r\n"),
        "{}",
        out.stdout_text()
    );
    (edge, socket)
}

#[test]
fn concurrency_sets_the_number_of_worker_threads() {
    let dir = tempdir();
    let closed = ClosedPort::new();
    for n in [1, 3] {
        let (mut edge, _) = serving_edge(dir.path(), &closed, &["--concurrency", &n.to_string()]);
        assert_eq!(worker_threads(edge.pid()), n, "--concurrency {n}");
        assert_eq!(edge.terminate().code(), Some(0));
    }
}

#[test]
fn logs_listening_and_ready_at_the_default_level() {
    let dir = tempdir();
    let closed = ClosedPort::new();
    let (mut edge, socket) = serving_edge(dir.path(), &closed, &[]);
    edge.wait_log("ready");
    let log = proxy_tests::process::strip_ansi(&edge.stderr());
    let listening = log
        .lines()
        .find(|l| l.contains("listening"))
        .unwrap_or_else(|| panic!("no listening line:\n{log}"));
    assert!(
        listening.contains("edge") && listening.contains(&format!("unix:{}", socket.display())),
        "{listening}"
    );
    assert!(!log.contains("DEBUG"), "default level is info:\n{log}");
    assert_eq!(edge.terminate().code(), Some(0));
}

#[test]
fn log_level_and_rust_log_control_verbosity() {
    let dir = tempdir();
    let closed = ClosedPort::new();

    let (mut edge, _) = serving_edge(dir.path(), &closed, &["--log-level", "error"]);
    assert_eq!(edge.terminate().code(), Some(0));
    let log = edge.stderr();
    assert!(
        !log.contains("INFO") && !log.contains("WARN") && !log.contains("listening"),
        "error level:\n{log}"
    );

    let (mut edge, socket) = serving_edge(dir.path(), &closed, &["--log-level", "debug"]);
    // A client speaking nonsense is logged at debug level.
    let mut garbage = RawHttp::connect_unix(&socket);
    garbage.send(b"NOT HTTP AT ALL\r\n\r\n");
    garbage.read_to_close();
    edge.wait_log("DEBUG");
    assert_eq!(edge.terminate().code(), Some(0));

    // RUST_LOG wins over --log-level.
    let socket = dir.path().join("edge.sock");
    let mut edge = edge_cmd(dir.path())
        .env("EDGE_ADDR", format!("unix:{}", socket.display()))
        .env("API_ADDR", closed.addr().to_string())
        .env("RUST_LOG", "error")
        .args(["--log-level", "debug"])
        .spawn();
    edge.wait_unix(&socket);
    assert_eq!(edge.terminate().code(), Some(0));
    assert!(
        !edge.stderr().contains("DEBUG") && !edge.stderr().contains("INFO"),
        "{}",
        edge.stderr()
    );
}
