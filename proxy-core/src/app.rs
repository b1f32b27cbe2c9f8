//! The command line every generated proxy has, and the start-up sequence.
//!
//! Start-up order: parse flags → read runtime inputs (all errors at once) → `--check`
//! report, or start the workers → bind every listener (any failure aborts before
//! traffic) → serve until SIGTERM/SIGINT → drain → remove socket files → exit 0.
//!
//! Worker model (`--runtime`): by default thread-per-core — `--concurrency N` threads,
//! each with its own single-threaded runtime, accept loops and share of the upstream
//! pools, and background work on the main thread's runtime (see `server::workers`);
//! `--runtime multi-thread` runs everything on one work-stealing tokio runtime with `N`
//! worker threads instead. docs/architecture.md ("Worker model") has the measurements.

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::config::Inputs;
use crate::server::{Http1Codec, Server, ServerSettings, Workers};
use crate::topology::Topology;

/// Exit code for a bad runtime input (environment variable), as for a usage error.
const EXIT_CONFIG: u8 = 2;
/// Exit code when serving could not start (bind failure, runtime failure).
const EXIT_START: u8 = 1;

#[derive(Debug, Parser)]
#[command(about = "A reverse proxy whose topology was compiled into this binary.")]
struct Cli {
    /// Print the compiled topology with its resolved runtime inputs, then exit.
    #[arg(long)]
    check: bool,

    /// Worker threads serving connections (default: one per CPU).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: Option<u16>,

    /// Worker model: `per-core` (each worker thread runs its own single-threaded runtime,
    /// accept loops and upstream pools) or `multi-thread` (one work-stealing runtime).
    #[arg(long, value_name = "MODEL", value_enum, default_value_t = RuntimeModel::PerCore)]
    runtime: RuntimeModel,

    /// Log level: error, warn, info, debug or trace. `RUST_LOG`, when set, takes precedence.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: tracing::Level,

    /// After SIGTERM/SIGINT, how long in-flight requests may take before connections
    /// are closed regardless (e.g. 10s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,

    /// Downstream HTTP/1.1 implementation: `native` (this proxy's own) or `hyper` (the
    /// reference implementation, for comparison).
    #[arg(long, value_name = "CODEC", value_enum, default_value_t = Http1Codec::default())]
    http1: Http1Codec,
}

/// How requests are spread over threads; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RuntimeModel {
    /// Thread-per-core: one current-thread runtime per worker.
    PerCore,
    /// One tokio multi-thread (work-stealing) runtime.
    MultiThread,
}

type StartHook = Box<dyn FnOnce() -> Result<(), Box<dyn std::error::Error + Send + Sync>>>;

/// Launches a compiled topology. `Proxy::main()` is `App::<Proxy>::new().run()`.
pub struct App<T: Topology> {
    name: &'static str,
    version: &'static str,
    before_serve: Vec<StartHook>,
    _topology: PhantomData<fn() -> T>,
}

impl<T: Topology> std::fmt::Debug for App<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl<T: Topology> Default for App<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Topology> App<T> {
    pub fn new() -> Self {
        Self {
            name: "proxy",
            version: env!("CARGO_PKG_VERSION"),
            before_serve: Vec::new(),
            _topology: PhantomData,
        }
    }

    /// The program name and version shown by `--help` and `--version` (the app's own
    /// `CARGO_PKG_NAME`/`CARGO_PKG_VERSION`, passed by the generated code).
    pub fn identity(mut self, name: &'static str, version: &'static str) -> Self {
        self.name = name;
        self.version = version;
        self
    }

    /// Runs `hook` inside the runtime before listeners are bound: for work the binary
    /// wants beside the proxy (the quickstart's demo origin). An error aborts start-up.
    pub fn before_serve(
        mut self,
        hook: impl FnOnce() -> Result<(), Box<dyn std::error::Error + Send + Sync>> + 'static,
    ) -> Self {
        self.before_serve.push(Box::new(hook));
        self
    }

    /// Parses the command line and runs the proxy until it is told to stop.
    pub fn run(self) -> ExitCode {
        self.run_with_args(std::env::args_os())
    }

    fn run_with_args(self, args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
        let command = <Cli as clap::CommandFactory>::command()
            .name(self.name)
            .version(self.version);
        let cli = match command
            .try_get_matches_from(args)
            .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m))
        {
            Ok(cli) => cli,
            Err(error) => {
                let _ = error.print();
                return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(EXIT_CONFIG));
            }
        };
        init_tracing(cli.log_level);
        let workers = cli.concurrency.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            usize::from,
        );
        if cli.runtime == RuntimeModel::PerCore {
            // Before the topology is built: each endpoint's pool gets one shard per worker.
            crate::server::set_worker_count(workers);
        }

        let mut inputs = Inputs::from_process_env();
        let topology = T::build(&mut inputs);
        if !inputs.errors().is_empty() {
            for error in inputs.errors() {
                eprintln!("{}: error: {error}", self.name);
            }
            return ExitCode::from(EXIT_CONFIG);
        }
        if cli.check {
            print!("{}", check_report(&topology, &inputs));
            return ExitCode::SUCCESS;
        }

        let settings = ServerSettings {
            drain_timeout: cli.drain_timeout,
            http1: cli.http1,
            ..ServerSettings::default()
        };
        let name = self.name;
        let started = match cli.runtime {
            RuntimeModel::PerCore => per_core(workers),
            RuntimeModel::MultiThread => multi_thread(workers),
        };
        let (runtime, workers) = match started {
            Ok(started) => started,
            Err(error) => {
                eprintln!("{name}: error: cannot start the runtime: {error}");
                return ExitCode::from(EXIT_START);
            }
        };
        let server = match &workers {
            Some(workers) => Server::with_workers(settings, workers.handles()),
            None => Server::new(settings),
        };
        // Built once, needed until exit: leaking it lets every request borrow routers,
        // filter chains and clusters for `'static` instead of counting references.
        let topology: &'static T = Box::leak(Box::new(topology));
        let served = runtime.block_on(serve(topology, server, self.before_serve));
        if let Some(workers) = workers {
            workers.stop();
        }
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{name}: error: {error}");
                ExitCode::from(EXIT_START)
            }
        }
    }
}

/// Thread-per-core: `workers` threads with a current-thread runtime each, and a
/// current-thread runtime on this thread for signals, start-up and background tasks.
fn per_core(workers: usize) -> std::io::Result<(tokio::runtime::Runtime, Option<Workers>)> {
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("proxy-blocking")
        .build()?;
    Ok((control, Some(Workers::start(workers)?)))
}

/// One work-stealing runtime with `workers` worker threads for everything.
fn multi_thread(workers: usize) -> std::io::Result<(tokio::runtime::Runtime, Option<Workers>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .thread_name(crate::server::WORKER_THREAD_NAME)
        .build()?;
    Ok((runtime, None))
}

async fn serve<T: Topology>(
    topology: &'static T,
    mut server: Server,
    hooks: Vec<StartHook>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Registered before binding so a signal during start-up is not lost.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;

    for hook in hooks {
        hook()?;
    }
    warm_dns_clusters(topology, &mut server).await;
    if let Err(error) = topology.serve(&mut server) {
        // Listeners bound before the failure must not leave socket files behind.
        server.shutdown().await;
        return Err(error.into());
    }
    server.spawn_background(prune_idle_connections(topology));
    // Active health checks, for the clusters that have them (one task per endpoint).
    for cluster in topology.clusters() {
        if let Some(checks) = cluster.health_checks() {
            server.spawn_background(checks);
        }
        // Outlier detection's review (returns ejected endpoints), where configured.
        if let Some(review) = cluster.outlier_detection() {
            server.spawn_background(review);
        }
    }
    tracing::info!("ready");

    let signal = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    tracing::info!(signal, drain_timeout = ?server.settings.drain_timeout, "draining");
    server.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Starts DNS discovery for the clusters that use it and waits, at most
/// [`WARMING_TIMEOUT`](crate::cluster::WARMING_TIMEOUT), for each target's first
/// resolution, so the first requests find endpoints (Envoy's cluster warming). Past the
/// bound the proxy serves anyway: those clusters answer 503 `UH` until a resolution
/// succeeds, and discovery keeps retrying.
async fn warm_dns_clusters<T: Topology>(topology: &'static T, server: &mut Server) {
    let mut warming = Vec::new();
    for cluster in topology.clusters() {
        if let Some(discovery) = cluster.discovery() {
            server.spawn_background(discovery);
            warming.push(cluster);
        }
    }
    if warming.is_empty() {
        return;
    }
    let all = async {
        for cluster in &warming {
            cluster.discovery_warmed().await;
        }
    };
    let timeout = crate::cluster::WARMING_TIMEOUT;
    if tokio::time::timeout(timeout, all).await.is_err() {
        tracing::warn!(
            ?timeout,
            "DNS clusters not resolved in time; serving anyway, resolution continues"
        );
    }
    for cluster in warming {
        let endpoints = cluster.current_endpoints().len();
        if endpoints == 0 {
            tracing::warn!(cluster = cluster.name(), "DNS cluster has no endpoints yet");
        } else {
            tracing::info!(cluster = cluster.name(), endpoints, "DNS cluster warmed");
        }
    }
}

/// Closes pooled upstream connections past their idle timeout, for every cluster.
async fn prune_idle_connections<T: Topology>(topology: &'static T) {
    let period = topology
        .clusters()
        .iter()
        .map(|cluster| cluster.options().idle_timeout / 2)
        .min()
        .unwrap_or(Duration::from_secs(30))
        .max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for cluster in topology.clusters() {
            cluster.prune_idle();
        }
    }
}

fn init_tracing(level: tracing::Level) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.as_str()));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// The `--check` report: the topology as compiled, then every value resolved at start-up.
fn check_report<T: Topology>(topology: &T, inputs: &Inputs) -> String {
    let mut out = String::new();
    out.push_str(T::SUMMARY.trim_end());
    out.push_str("\n\nresolved at start-up:\n");
    for listener in topology.listeners() {
        let _ = write!(
            out,
            "  listener {} on {}",
            listener.name(),
            listener.bind_address()
        );
        if let Some(mode) = listener.mode() {
            let _ = write!(out, " (mode {mode:o})");
        }
        out.push('\n');
    }
    for cluster in topology.clusters() {
        // A DNS cluster's endpoints are only known once it runs: show its targets.
        let endpoints: Vec<String> = match cluster.dns_discovery() {
            Some(dns) => cluster
                .dns_targets()
                .iter()
                .map(|t| format!("{:?} dns {}:{}", dns.mode, t.host, t.port).to_lowercase())
                .collect(),
            None => cluster
                .endpoints()
                .iter()
                .map(|e| e.address().to_string())
                .collect(),
        };
        let _ = writeln!(
            out,
            "  cluster {} -> [{}]",
            cluster.name(),
            endpoints.join(", ")
        );
    }
    if !inputs.resolved().is_empty() {
        out.push_str("environment:\n");
        for (var, value) in inputs.resolved() {
            let _ = writeln!(out, "  {var} = {value}");
        }
    }
    out
}
