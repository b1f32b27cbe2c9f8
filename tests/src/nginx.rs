//! nginx as the origin: a config built from snippets, run in the foreground from a test's
//! temporary directory, killed on drop.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::net::{free_port, poll_until};
use crate::tools::require_nginx;
use crate::{DEADLINE, POLL_INTERVAL};

/// How one nginx `server` listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listen {
    Tcp,
    /// HTTP/2 without TLS: nginx then speaks h2c with prior knowledge only.
    H2c,
    /// HTTPS: the body must name `ssl_certificate` and `ssl_certificate_key`.
    Tls,
    Unix,
}

#[derive(Debug, Clone)]
struct ServerSpec {
    name: String,
    listen: Listen,
    body: String,
}

/// Collects `server` blocks; [`NginxBuilder::start`] runs them.
#[derive(Debug)]
pub struct NginxBuilder {
    dir: PathBuf,
    servers: Vec<ServerSpec>,
    http_extra: String,
}

/// A running nginx (single process: `master_process off`, so a kill leaves no workers).
///
/// Files, all under `<dir>/nginx/`: `nginx.conf`, `error.log`, `<server>.access.log`, temp
/// directories; document root `<dir>/www`; Unix sockets `<dir>/<server>.sock`.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    home: PathBuf,
    root: PathBuf,
    servers: Vec<(ServerSpec, Address)>,
}

#[derive(Debug, Clone)]
enum Address {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// `log_format` of every access log: fields separated by `|`, parsed by [`AccessLog`].
const LOG_FORMAT: &str = "$connection|$connection_requests|$request_method|$request_uri|$status|$request_length|$body_bytes_sent|$server_protocol";

impl Nginx {
    /// A builder whose files will live in `dir` (a test's temporary directory).
    pub fn builder(dir: &Path) -> NginxBuilder {
        NginxBuilder {
            dir: dir.to_path_buf(),
            servers: Vec::new(),
            http_extra: String::new(),
        }
    }

    fn server(&self, name: &str) -> &Address {
        self.servers
            .iter()
            .find(|(spec, _)| spec.name == name)
            .map(|(_, addr)| addr)
            .unwrap_or_else(|| panic!("no nginx server named `{name}`"))
    }

    /// The TCP address of server `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        match self.server(name) {
            Address::Tcp(addr) => *addr,
            Address::Unix(path) => panic!("server `{name}` listens on {}, not TCP", path.display()),
        }
    }

    /// The Unix socket path of server `name`.
    pub fn socket(&self, name: &str) -> PathBuf {
        match self.server(name) {
            Address::Unix(path) => path.clone(),
            Address::Tcp(addr) => panic!("server `{name}` listens on {addr}, not a Unix socket"),
        }
    }

    /// The document root shared by all servers (DAV uploads land here too).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The access log of server `name`.
    pub fn access_log(&self, name: &str) -> AccessLog {
        let _ = self.server(name);
        AccessLog {
            path: self.home.join(format!("{name}.access.log")),
        }
    }

    /// nginx's error log so far, for failure messages.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.home.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- nginx error log (last {lines} lines) ---\n{}\n--- end ---",
                crate::process::tail(&self.error_log(), crate::process::TAIL_LINES),
                lines = crate::process::TAIL_LINES
            );
        }
    }
}

impl NginxBuilder {
    fn add(mut self, name: &str, listen: Listen, body: &str) -> Self {
        assert!(
            !self.servers.iter().any(|s| s.name == name),
            "duplicate nginx server name `{name}`"
        );
        self.servers.push(ServerSpec {
            name: name.to_owned(),
            listen,
            body: body.to_owned(),
        });
        self
    }

    /// A server on a free 127.0.0.1 port speaking HTTP/1.1. `body` is the inside of the
    /// `server` block (locations); `root` and `access_log` are already set.
    pub fn tcp(self, name: &str, body: &str) -> Self {
        self.add(name, Listen::Tcp, body)
    }

    /// A server on a free 127.0.0.1 port speaking h2c (prior knowledge).
    pub fn h2c(self, name: &str, body: &str) -> Self {
        self.add(name, Listen::H2c, body)
    }

    /// A server on a free 127.0.0.1 port speaking HTTPS (HTTP/1.1 and h2 by ALPN).
    pub fn tls(self, name: &str, body: &str) -> Self {
        self.add(name, Listen::Tls, body)
    }

    /// A server on the Unix socket `<dir>/<name>.sock`.
    pub fn unix(self, name: &str, body: &str) -> Self {
        self.add(name, Listen::Unix, body)
    }

    /// Extra directives for the `http` block.
    pub fn http(mut self, directives: &str) -> Self {
        self.http_extra.push_str(directives);
        self.http_extra.push('\n');
        self
    }

    /// Writes the config, starts nginx and waits until every server accepts connections.
    /// A port taken between choosing and binding it makes nginx exit with "Address
    /// already in use"; that attempt is retried with new ports.
    pub fn start(self) -> Nginx {
        let nginx = require_nginx();
        let home = self.dir.join("nginx");
        let root = self.dir.join("www");
        for dir in [&home, &root, &home.join("tmp")] {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        const ATTEMPTS: usize = 10;
        for attempt in 1..=ATTEMPTS {
            let servers: Vec<(ServerSpec, Address)> = self
                .servers
                .iter()
                .map(|spec| {
                    let addr = match spec.listen {
                        Listen::Tcp | Listen::H2c | Listen::Tls => {
                            Address::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())))
                        }
                        Listen::Unix => Address::Unix(self.dir.join(format!("{}.sock", spec.name))),
                    };
                    (spec.clone(), addr)
                })
                .collect();
            for (_, addr) in &servers {
                if let Address::Unix(path) = addr {
                    let _ = std::fs::remove_file(path);
                }
            }
            let config = self.config(&home, &root, &servers);
            let conf_path = home.join("nginx.conf");
            std::fs::write(&conf_path, config)
                .unwrap_or_else(|e| panic!("write {}: {e}", conf_path.display()));
            let error_log = home.join("error.log");
            let _ = std::fs::remove_file(&error_log);
            let output = |name: &str| {
                let path = home.join(name);
                File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
            };
            let child = Command::new(&nginx)
                .arg("-p")
                .arg(&home)
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(&error_log)
                .args(["-g", "daemon off; master_process off;"])
                .stdin(Stdio::null())
                .stdout(output("stdout.log"))
                .stderr(output("stderr.log"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", nginx.display()));
            let mut running = Nginx {
                child,
                home: home.clone(),
                root: root.clone(),
                servers,
            };
            match running.wait_ready() {
                Ok(()) => return running,
                Err(log) if log.contains("Address already in use") && attempt < ATTEMPTS => {
                    continue;
                }
                Err(log) => panic!(
                    "nginx did not start (attempt {attempt}):\n{log}\n--- nginx.conf ---\n{}",
                    std::fs::read_to_string(&conf_path).unwrap_or_default()
                ),
            }
        }
        unreachable!("the last attempt panics")
    }

    fn config(&self, home: &Path, root: &Path, servers: &[(ServerSpec, Address)]) -> String {
        let home = home.display();
        let mut config = format!(
            "user root;\n\
             worker_processes 1;\n\
             pid {home}/nginx.pid;\n\
             error_log {home}/error.log notice;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
             default_type application/octet-stream;\n\
             log_format e2e '{LOG_FORMAT}';\n\
             access_log off;\n\
             client_body_temp_path {home}/tmp/body;\n\
             proxy_temp_path {home}/tmp/proxy;\n\
             fastcgi_temp_path {home}/tmp/fastcgi;\n\
             uwsgi_temp_path {home}/tmp/uwsgi;\n\
             scgi_temp_path {home}/tmp/scgi;\n\
             client_max_body_size 0;\n\
             keepalive_timeout 75s;\n\
             keepalive_requests 100000;\n\
             sendfile on;\n\
             {}\n",
            self.http_extra
        );
        for (spec, addr) in servers {
            let listen = match (addr, spec.listen) {
                (Address::Tcp(addr), Listen::H2c) => format!("{addr} http2"),
                (Address::Tcp(addr), Listen::Tls) => format!("{addr} ssl http2"),
                (Address::Tcp(addr), _) => addr.to_string(),
                (Address::Unix(path), _) => format!("unix:{}", path.display()),
            };
            let _ = write!(
                config,
                "server {{\n\
                 listen {listen};\n\
                 server_name _;\n\
                 root {root};\n\
                 access_log {home}/{name}.access.log e2e;\n\
                 {body}\n\
                 }}\n",
                root = root.display(),
                name = spec.name,
                body = spec.body,
            );
        }
        config.push_str("}\n");
        config
    }
}

impl Nginx {
    /// Polls every listen address; `Err(error log)` if nginx exits first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let stderr =
                    std::fs::read_to_string(self.home.join("stderr.log")).unwrap_or_default();
                return Err(format!(
                    "nginx exited with {status}\n{}{stderr}",
                    self.error_log()
                ));
            }
            let ready = self.servers.iter().all(|(_, addr)| match addr {
                Address::Tcp(addr) => std::net::TcpStream::connect(addr).is_ok(),
                Address::Unix(path) => std::os::unix::net::UnixStream::connect(path).is_ok(),
            });
            if ready {
                return Ok(());
            }
            if start.elapsed() > DEADLINE {
                return Err(format!(
                    "nginx not accepting after {DEADLINE:?}\n{}",
                    self.error_log()
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// One access-log line (see [`LOG_FORMAT`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// nginx's connection serial number: equal values mean the same upstream connection.
    pub connection: u64,
    /// Requests served on that connection so far, this one included.
    pub connection_requests: u64,
    pub method: String,
    pub uri: String,
    pub status: u16,
    pub request_length: u64,
    pub body_bytes_sent: u64,
    pub protocol: String,
}

/// An nginx access log. nginx writes a line after the response is sent, so a client can
/// see a response before its line exists: read with [`AccessLog::wait_for`].
#[derive(Debug, Clone)]
pub struct AccessLog {
    path: PathBuf,
}

impl AccessLog {
    /// The log file, for readers that follow it incrementally.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every complete line written so far.
    pub fn entries(&self) -> Vec<AccessEntry> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| parse_entry(l.trim_end()))
            .collect()
    }

    /// Polls until at least `count` lines exist, then returns them all.
    pub fn wait_for(&self, count: usize) -> Vec<AccessEntry> {
        poll_until(
            &format!("{count} lines in {}", self.path.display()),
            DEADLINE,
            || {
                let entries = self.entries();
                (entries.len() >= count).then_some(entries)
            },
        )
    }

    /// How many different connections carried `entries`.
    pub fn distinct_connections(entries: &[AccessEntry]) -> usize {
        entries
            .iter()
            .map(|e| e.connection)
            .collect::<BTreeSet<_>>()
            .len()
    }
}

fn parse_entry(line: &str) -> AccessEntry {
    let fields: Vec<&str> = line.split('|').collect();
    let [
        connection,
        connection_requests,
        method,
        uri,
        status,
        request_length,
        body_bytes_sent,
        protocol,
    ] = fields.as_slice()
    else {
        panic!("unexpected access log line {line:?}");
    };
    let number = |s: &str| {
        s.parse::<u64>()
            .unwrap_or_else(|e| panic!("{s:?} in {line:?}: {e}"))
    };
    AccessEntry {
        connection: number(connection),
        connection_requests: number(connection_requests),
        method: (*method).to_owned(),
        uri: (*uri).to_owned(),
        status: u16::try_from(number(status)).unwrap_or_else(|e| panic!("status in {line:?}: {e}")),
        request_length: number(request_length),
        body_bytes_sent: number(body_bytes_sent),
        protocol: (*protocol).to_owned(),
    }
}

/// Crashing and restarting an origin, for the fault suites.
impl Nginx {
    /// SIGKILLs nginx and reaps it, as an origin that crashes. nginx runs as a single
    /// process (`master_process off`), so this one kill takes every server down at once:
    /// no worker survives to keep answering. Addresses, config and logs are kept for
    /// [`Nginx::restart`].
    pub fn kill(&mut self) {
        // `Child::kill` sends SIGKILL on Unix.
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("SIGKILL nginx (pid {}): {e}", self.child.id()));
        let _ = self.child.wait();
    }

    /// Starts nginx again with the same config — the same TCP ports and Unix socket paths,
    /// appending to the same logs — and waits until every server accepts. Stale socket
    /// files of a killed nginx are removed first (nginx refuses to bind over them).
    /// Panics if nginx is still running or cannot bind its old addresses.
    pub fn restart(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            panic!("restart of an nginx that is still running: kill it first");
        }
        for (_, addr) in &self.servers {
            if let Address::Unix(path) = addr {
                let _ = std::fs::remove_file(path);
            }
        }
        let output = |name: &str| {
            let path = self.home.join(name);
            File::options()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        };
        let conf_path = self.home.join("nginx.conf");
        self.child = Command::new(require_nginx())
            .arg("-p")
            .arg(&self.home)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(self.home.join("error.log"))
            .args(["-g", "daemon off; master_process off;"])
            .stdin(Stdio::null())
            .stdout(output("stdout.log"))
            .stderr(output("stderr.log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot restart nginx: {e}"));
        if let Err(log) = self.wait_ready() {
            panic!("nginx did not restart on its old addresses:\n{log}");
        }
    }
}
