//! External programs the suites depend on, located loudly.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};

/// What to run when a peer is missing; every "not found" panic names it.
pub const INSTALL_PEERS: &str = "apt-get install -y nginx-light curl";

/// Finds `name` on `PATH` (plus the sbin directories, where Debian puts nginx) or panics
/// with the apt command that installs it: a missing peer must fail the suite, not skip it.
pub fn require_tool(name: &str, apt_package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!(
        "`{name}` is required by the end-to-end tests but was not found on PATH or in /usr/sbin: \
         install it with `apt-get install -y {apt_package}` (all peers: `{INSTALL_PEERS}`)"
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// nginx with the modules the suites use (DAV for uploads, HTTP/2 for the h2c origin).
pub fn require_nginx() -> PathBuf {
    static NGINX: OnceLock<PathBuf> = OnceLock::new();
    NGINX
        .get_or_init(|| {
            let nginx = require_tool("nginx", "nginx-light");
            let output = Command::new(&nginx)
                .arg("-V")
                .output()
                .unwrap_or_else(|error| panic!("cannot run `{} -V`: {error}", nginx.display()));
            // `nginx -V` prints its configure arguments on stderr.
            let configure = String::from_utf8_lossy(&output.stderr);
            for module in ["--with-http_dav_module", "--with-http_v2_module"] {
                assert!(
                    configure.contains(module),
                    "{} lacks {module}; install Debian's build with `apt-get install -y nginx-light`\n{configure}",
                    nginx.display()
                );
            }
            nginx
        })
        .clone()
}

/// curl with HTTP/2 support (for `--http2-prior-knowledge`).
pub fn require_curl() -> PathBuf {
    static CURL: OnceLock<PathBuf> = OnceLock::new();
    CURL.get_or_init(|| {
        let curl = require_tool("curl", "curl");
        let output = Command::new(&curl)
            .arg("--version")
            .output()
            .unwrap_or_else(|error| panic!("cannot run `{} --version`: {error}", curl.display()));
        let version = String::from_utf8_lossy(&output.stdout);
        assert!(
            version.contains("HTTP2"),
            "{} lacks HTTP/2 support; `{INSTALL_PEERS}`\n{version}",
            curl.display()
        );
        curl
    })
    .clone()
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The release `edge` binary: `$EDGE_BIN`, else `target/release/edge`. See [`release_bin`].
pub fn edge_bin() -> PathBuf {
    release_bin("edge")
}

/// The release binary of workspace package `package` (an app under `apps/`):
/// `$<PACKAGE>_BIN` (upper case, `-` as `_`: `EDGE_BIN`, `CUSTOM_FILTERS_BIN`), else
/// `target/release/<package>` (under `$CARGO_TARGET_DIR` when set). The suites test what
/// ships, so they never build it themselves; a missing binary is a loud failure.
pub fn release_bin(package: &str) -> PathBuf {
    let var = format!("{}_BIN", package.to_ascii_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        let path = PathBuf::from(path);
        assert!(
            is_executable(&path),
            "{var}={} is not an executable file",
            path.display()
        );
        return path;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    let path = target.join("release").join(package);
    assert!(
        is_executable(&path),
        "{} not found: build it first: cargo build --release -p {package} (tests/run.sh does this)",
        path.display()
    );
    warn_if_stale(&path, package);
    path
}

/// A release binary older than the sources it is built from tests yesterday's code; say
/// so on stderr (shown for failing tests) without failing, as mtimes can lie after a checkout.
fn warn_if_stale(binary: &Path, package: &str) {
    static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    if !WARNED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(package.to_owned())
    {
        return;
    }
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
        return;
    };
    let root = workspace_root();
    let app = format!("apps/{package}/src");
    let newest = ["proxy-core/src", "proxy-macros/src", app.as_str()]
        .iter()
        .filter_map(|dir| newest_mtime(&root.join(dir)))
        .max();
    if newest.is_some_and(|newest| newest > built) {
        eprintln!(
            "warning: {} is older than the proxy sources; rebuild with `cargo build --release -p {package}`",
            binary.display()
        );
    }
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry.metadata().ok()?.modified().ok()
        };
        newest = newest.max(time);
    }
    newest
}

/// What a curl run produced.
#[derive(Debug)]
pub struct CurlOutput {
    /// curl's exit code (0 on success; 7 cannot connect, 52 empty reply, 56 recv failure...).
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl CurlOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics with curl's stderr unless it exited 0.
    pub fn success(self) -> Self {
        assert!(self.code == 0, "curl exited {}: {}", self.code, self.stderr);
        self
    }
}

/// Runs curl with `args` (plus `-sS` and a `--max-time` bound) and captures its output.
pub fn curl<I, S>(args: I) -> CurlOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output = Command::new(require_curl())
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
    CurlOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
