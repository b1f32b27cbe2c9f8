//! wrk, the load generator: run in the background against the proxy while a test breaks
//! things, stopped with SIGINT, and its report parsed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::process::send_signal;
use crate::tools::require_tool;
use crate::{DEADLINE, POLL_INTERVAL};

/// wrk (`apt-get install -y wrk`), or a panic naming that command.
pub fn require_wrk() -> PathBuf {
    static WRK: OnceLock<PathBuf> = OnceLock::new();
    WRK.get_or_init(|| require_tool("wrk", "wrk")).clone()
}

/// A running wrk, killed on drop if the test did not [`stop`](Wrk::stop) it.
#[derive(Debug)]
pub struct Wrk {
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    started: Instant,
}

/// What wrk printed at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrkReport {
    /// Completed requests (`N requests in ...`).
    pub requests: u64,
    /// The `Socket errors: connect N, read N, write N, timeout N` line; wrk prints it only
    /// when one of them is non-zero.
    pub socket_errors: Option<String>,
    /// `Non-2xx or 3xx responses: N`; wrk prints it only when N is non-zero.
    pub non_2xx_3xx: u64,
    /// The whole report, for failure messages.
    pub text: String,
}

impl WrkReport {
    /// Whether every request got a 2xx/3xx response and no connection failed.
    pub fn clean(&self) -> bool {
        self.socket_errors.is_none() && self.non_2xx_3xx == 0
    }
}

impl Wrk {
    /// Starts `wrk -t threads -c connections` against `url` for up to `max_duration`
    /// (stop it earlier with [`Wrk::stop`]), with a per-request timeout of `timeout` (whole seconds, as wrk takes them):
    /// a response slower than that is a socket error (`timeout N`). Output goes to files
    /// in `dir`.
    pub fn start(
        url: &str,
        threads: u32,
        connections: u32,
        max_duration: Duration,
        timeout: Duration,
        dir: &Path,
    ) -> Self {
        let wrk = require_wrk();
        let stdout_path = dir.join("wrk.stdout.log");
        let stderr_path = dir.join("wrk.stderr.log");
        let create =
            |path: &Path| File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let child = Command::new(&wrk)
            .arg(format!("-t{threads}"))
            .arg(format!("-c{connections}"))
            .arg(format!("-d{}s", max_duration.as_secs().max(1)))
            .arg(format!("--timeout={}s", timeout.as_secs().max(1)))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(create(&stdout_path))
            .stderr(create(&stderr_path))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", wrk.display()));
        Self {
            child,
            stdout_path,
            stderr_path,
            started: Instant::now(),
        }
    }

    /// Whether wrk is still generating load.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How long wrk has been running.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops wrk with SIGINT (it then prints its report, as at the end of its duration),
    /// waits for it and parses the report. Panics if wrk had already exited (the load
    /// ended before the test was done with it) or failed.
    pub fn stop(mut self) -> WrkReport {
        assert!(
            self.is_running(),
            "wrk exited before the test stopped it (its duration was too short):\n{}",
            self.output()
        );
        send_signal(self.child.id(), "INT");
        let status = self.wait_exit();
        let text = self.output();
        assert!(status.success(), "wrk failed: {status}\n{text}");
        parse_report(&text)
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if start.elapsed() < DEADLINE => std::thread::sleep(POLL_INTERVAL),
                Ok(None) => panic!("wrk still running {DEADLINE:?} after SIGINT"),
                Err(e) => panic!("waitpid wrk: {e}"),
            }
        }
    }

    fn output(&self) -> String {
        let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
        format!("{}{}", read(&self.stdout_path), read(&self.stderr_path))
    }
}

impl Drop for Wrk {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parses wrk's report; panics if it has no `N requests in` line.
pub fn parse_report(text: &str) -> WrkReport {
    let requests = text
        .lines()
        .find_map(|line| {
            let (count, rest) = line.trim().split_once(' ')?;
            rest.starts_with("requests in ")
                .then(|| count.parse::<u64>().ok())
                .flatten()
        })
        .unwrap_or_else(|| panic!("no `N requests in` line in wrk's report:\n{text}"));
    let socket_errors = text
        .lines()
        .find(|line| line.trim().starts_with("Socket errors:"))
        .map(|line| line.trim().to_owned());
    let non_2xx_3xx = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .map_or(0, |n| {
            n.trim()
                .parse()
                .unwrap_or_else(|e| panic!("`Non-2xx or 3xx responses:{n}`: {e}"))
        });
    WrkReport {
        requests,
        socket_errors,
        non_2xx_3xx,
        text: text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_clean_and_failed_reports() {
        let clean = "Running 10s test @ http://127.0.0.1:1/\n  2 threads and 16 connections\n  \
                     Thread Stats   Avg      Stdev     Max   +/- Stdev\n    \
                     Latency     1.20ms  300.00us   9.00ms   90.00%\n  \
                     12345 requests in 4.20s, 1.50MB read\nRequests/sec:   2939.29\n";
        let report = parse_report(clean);
        assert_eq!(report.requests, 12345);
        assert!(report.clean());

        let failed = "  100 requests in 1.00s, 10.00KB read\n  \
                      Socket errors: connect 0, read 3, write 0, timeout 1\n  \
                      Non-2xx or 3xx responses: 7\nRequests/sec:    100.00\n";
        let report = parse_report(failed);
        assert_eq!(report.requests, 100);
        assert_eq!(report.non_2xx_3xx, 7);
        assert_eq!(
            report.socket_errors.as_deref(),
            Some("Socket errors: connect 0, read 3, write 0, timeout 1")
        );
        assert!(!report.clean());
    }
}
