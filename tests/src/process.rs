//! Proxy binaries under test as child processes: start, wait until ready, signal, reap.

use std::ffi::OsString;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{DEADLINE, POLL_INTERVAL};

/// How to start a proxy binary. The environment is cleared (only `PATH` and `NO_COLOR`
/// are set) so a developer's `RUST_LOG` or `EDGE_ADDR` cannot change what a test sees.
#[derive(Debug, Clone)]
pub struct ProxyCommand {
    bin: PathBuf,
    dir: PathBuf,
    env: Vec<(OsString, OsString)>,
    args: Vec<OsString>,
}

/// Output of a run to completion (`--help`, `--check`, a failed start).
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The exit code; panics (with the output) if the process died from a signal.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {self:?}"))
    }
}

impl ProxyCommand {
    /// `bin` run with its logs written into `dir` (a test's temporary directory).
    pub fn new(bin: impl AsRef<Path>, dir: &Path) -> Self {
        let bin = bin.as_ref().to_path_buf();
        assert!(bin.is_file(), "{} does not exist", bin.display());
        Self {
            bin,
            dir: dir.to_path_buf(),
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Starts the process; output goes to files in the directory so nothing blocks on a
    /// full pipe and a failing test can show everything the proxy said.
    pub fn spawn(&self) -> ProxyProcess {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = self
            .bin
            .file_name()
            .map_or_else(|| "proxy".into(), |n| n.to_string_lossy().into_owned());
        let stdout_path = self.dir.join(format!("{name}-{seq}.stdout.log"));
        let stderr_path = self.dir.join(format!("{name}-{seq}.stderr.log"));
        // Append mode, so a proxy that also opens its own stdout by name (an access log
        // to `/dev/stdout`) appends whole lines instead of overwriting at its own offset.
        let create = |path: &Path| {
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
        };
        let mut command = Command::new(&self.bin);
        command
            .args(&self.args)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(create(&stdout_path))
            .stderr(create(&stderr_path));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        ProxyProcess {
            child,
            label: format!("{name} {:?}", self.args),
            stdout_path,
            stderr_path,
        }
    }

    /// Runs to completion (bounded by [`DEADLINE`]) and returns status and output.
    pub fn run(&self) -> Finished {
        let mut process = self.spawn();
        let status = process.wait_exit(DEADLINE);
        Finished {
            status,
            stdout: process.stdout(),
            stderr: process.stderr(),
        }
    }
}

/// A running proxy. Killed (SIGKILL) and reaped on drop if the test did not stop it, so
/// a failing test never leaks a process.
#[derive(Debug)]
pub struct ProxyProcess {
    child: Child,
    label: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl ProxyProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stderr so far (the tracing logs).
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// Panics with `message` and the process's output.
    pub fn fail(&self, message: &str) -> ! {
        panic!(
            "{message}\n--- {} stderr ---\n{}\n--- end ---",
            self.label,
            self.stderr()
        )
    }

    /// Panics (with the logs) if the process has exited.
    fn assert_running(&mut self, waiting_for: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.fail(&format!(
                "exited with {status} while waiting for {waiting_for}"
            ));
        }
    }

    /// Waits for the `listening` log line of TCP listener `listener` (started with port 0)
    /// and returns the bound address once it accepts connections. Binding `127.0.0.1:0`
    /// and reading the port back avoids any race for a free port.
    pub fn tcp_listener(&mut self, listener: &str) -> SocketAddr {
        let what = format!("listener `{listener}` to log its address");
        let addr = self.poll(&what, |p| {
            listening_address(&p.stderr(), listener)?
                .parse::<SocketAddr>()
                .ok()
        });
        self.poll(&format!("{addr} to accept"), |_| {
            std::net::TcpStream::connect(addr).ok().map(drop)
        });
        addr
    }

    /// Waits until the proxy accepts connections on the Unix socket at `path`.
    pub fn wait_unix(&mut self, path: &Path) {
        self.poll(&format!("{} to accept", path.display()), |_| {
            std::os::unix::net::UnixStream::connect(path).ok().map(drop)
        });
    }

    /// Waits until stderr contains `needle` (e.g. `ready`), failing fast if the process exits.
    pub fn wait_log(&mut self, needle: &str) {
        self.poll(&format!("`{needle}` in the log"), |p| {
            p.stderr().contains(needle).then_some(())
        });
    }

    fn poll<T>(&mut self, what: &str, mut probe: impl FnMut(&Self) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(value) = probe(self) {
                return value;
            }
            self.assert_running(what);
            if start.elapsed() > DEADLINE {
                self.fail(&format!("timed out after {DEADLINE:?} waiting for {what}"));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`) with the `kill` utility.
    pub fn signal(&self, signal: &str) {
        send_signal(self.pid(), signal);
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if start.elapsed() < timeout => std::thread::sleep(POLL_INTERVAL),
                Ok(None) => self.fail(&format!(
                    "still running {timeout:?} after it was expected to exit"
                )),
                Err(error) => self.fail(&format!("waitpid failed: {error}")),
            }
        }
    }

    /// SIGTERM, then the exit status (the proxy must stop by itself within [`DEADLINE`]).
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(DEADLINE)
    }

    /// The proxy's peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        peak_rss_kib(self.pid())
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A test that panics mid-exchange (a timeout, say) seldom has the proxy at hand to
        // show its logs; the test harness prints this with the failure.
        if std::thread::panicking() {
            eprintln!(
                "--- {} stderr (last {TAIL_LINES} lines) ---\n{}\n--- end ---",
                self.label,
                tail(&self.stderr(), TAIL_LINES)
            );
        }
    }
}

/// How much of a process's log a failed test shows when it drops the process.
pub const TAIL_LINES: usize = 200;

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> &str {
    let Some(before_last) = lines.checked_sub(1) else {
        return "";
    };
    let start = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .rmatch_indices('\n')
        .nth(before_last)
        .map_or(0, |(at, _)| at + 1);
    &text[start..]
}

/// Sends a signal by pid through `kill(1)`, which keeps the suites free of `unsafe`.
pub fn send_signal(pid: u32, signal: &str) {
    let kill = crate::tools::require_tool("kill", "procps");
    let status = Command::new(kill)
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
    assert!(status.success(), "kill -{signal} {pid} failed: {status}");
}

/// Peak resident set size (`VmHWM` in `/proc/<pid>/status`), in KiB: what a streaming
/// test bounds to prove bodies are not buffered.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"))
}

/// The `address=` of the `listening` log line for `listener`, if it was logged yet.
/// Tolerates ANSI colour codes and either quoting of the listener name.
pub fn listening_address(log: &str, listener: &str) -> Option<String> {
    let quoted = format!("listener=\"{listener}\"");
    let bare = format!("listener={listener} ");
    strip_ansi(log).lines().find_map(|line| {
        if !line.contains("listening")
            || !(line.contains(&quoted) || format!("{line} ").contains(&bare))
        {
            return None;
        }
        let rest = &line[line.find("address=")? + "address=".len()..];
        Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
    })
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a\nb\n", 5), "a\nb\n");
        assert_eq!(tail("", 3), "");
        assert_eq!(tail("a\n", 0), "");
    }

    #[test]
    fn parses_listening_lines() {
        let log = "2026-01-01T00:00:00Z  INFO proxy_core::server: \u{1b}[3mlistening\u{1b}[0m \
                   \u{1b}[3mlistener\u{1b}[0m\u{1b}[2m=\u{1b}[0m\"edge\" \u{1b}[3maddress\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:4321\n";
        assert_eq!(
            listening_address(log, "edge").as_deref(),
            Some("127.0.0.1:4321")
        );
        assert_eq!(listening_address(log, "edg"), None);
        let plain = "INFO listening listener=pipe address=unix:/tmp/x.sock\n";
        assert_eq!(
            listening_address(plain, "pipe").as_deref(),
            Some("unix:/tmp/x.sock")
        );
    }
}
