//! `duplex agent`: one long-running process per state dir. It reconciles a
//! policy source (a directory or a git repository) by digest through the
//! core's application layer, serves the HTTP API, exposes Prometheus
//! metrics and delivers events as webhooks. Like the rest of the front end
//! it renders the core's plain data; it never re-implements the model.
//!
//! - `source`: where the desired policy comes from, and change watching;
//! - `reconcile`: the loop — resume, fetch, decide by digest, run;
//! - `record`: what the agent remembers between runs (achieved, abandoned,
//!   a fleet slot held);
//! - `gate`, `fleetlock`: on a host that is one of many, the slot of the
//!   fleet's semaphore a session starts under;
//! - `api`: the HTTP API (control socket, and TCP with a token);
//!   `fleet_api`: its fleet part (`--fleet` only), for the fleet page;
//! - `sink`, `events`, `outbox`, `webhooks`: where a session's events go;
//! - `metrics`: the Prometheus exposition.

pub mod api;
mod console;
pub mod events;
mod fleet;
mod fleet_api;
mod fleetlock;
mod gate;
pub mod metrics;
pub mod outbox;
pub mod reconcile;
pub mod record;
mod rest;
pub mod sink;
pub mod source;
pub mod webhooks;

use std::path::PathBuf;
use std::time::Duration;

/// `duplex agent`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy source: a directory holding the policy file.
    #[arg(long, value_name = "DIR", conflicts_with = "git")]
    pub dir: Option<PathBuf>,
    /// The policy source: a git repository (a path, or an https://, http://, ssh://, git:// or file:// URL).
    #[arg(long, value_name = "URL")]
    pub git: Option<String>,
    /// The branch of --git to follow.
    #[arg(long, default_value = "main", requires = "git")]
    pub branch: String,
    /// The policy file, relative to the directory or the repository.
    #[arg(long, value_name = "PATH", required_unless_present = "fleet")]
    pub policy: Option<PathBuf>,
    /// How often to fetch the source (besides watching it and `POST /v1/source/fetch`).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub fetch_interval: Duration,
    /// Also serve the API on this TCP address (e.g. 127.0.0.1:7450); writes need the bearer token.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// The API token file [default: <state>/agent/token, created mode 0600 on first start].
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Serve --listen over TLS with this certificate chain (PEM); with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key", requires = "listen")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Deliver events to this webhook URL (repeatable).
    #[arg(long = "webhook", value_name = "URL")]
    pub webhooks: Vec<String>,
    /// The HMAC key the webhooks are signed with (a file; its bytes, trailing newline removed).
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Start a session only holding a slot of this FleetLock server's semaphore
    /// (coreos/airlock's protocol, e.g. http://fleetlock.example:3333).
    #[arg(long, value_name = "URL")]
    pub fleetlock: Option<String>,
    /// The FleetLock group to lock in.
    #[arg(
        long,
        value_name = "GROUP",
        default_value = "default",
        requires = "fleetlock"
    )]
    pub fleetlock_group: String,
    /// This host's name in the fleet [default: the kernel's hostname].
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Take part in the fleet's rollouts on etcd (`duplex rollout apply`):
    /// the policy comes from the rollout that has a part for this host.
    #[arg(long, requires = "etcd", conflicts_with_all = ["dir", "git", "policy", "fleetlock"])]
    pub fleet: bool,
    /// The fleet's etcd members (comma-separated http://host:port).
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// The prefix of the fleet's keys in etcd.
    #[arg(long, value_name = "PREFIX", default_value = duplex_fleet::DEFAULT_PREFIX)]
    pub etcd_prefix: String,
    /// A label of this host (KEY=VALUE, repeatable), for rollouts' selectors.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// This host's name in the fleet: `--host`, else the kernel's hostname.
pub fn host_name(args: &Args) -> String {
    args.host.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    })
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<duplex_core::policy::HumanDuration>()
        .map(|d| d.as_duration())
}

/// One line of the agent's log, on stderr (journald keeps it).
pub fn log(line: &str) {
    crate::cli::output::eline(line);
}

/// Run the agent until SIGTERM/SIGINT; the exit code.
pub fn run(args: Args, state_dir: Option<PathBuf>) -> u8 {
    use crate::cli::exit;
    let fail = |message: String| {
        log(&format!("error: {message}"));
        exit::INVALID
    };
    let state_dir = match crate::cli::dirs::state_dir(state_dir) {
        Ok(d) => d,
        Err(e) => return fail(e.to_string()),
    };
    if let Err(e) = crate::api::socket::create_state_dir(&state_dir) {
        return fail(format!("{}: {e}", state_dir.display()));
    }
    let agent_dir = state_dir.join("agent");
    let policy = args.policy.clone().unwrap_or_default();
    let spec = match (&args.dir, &args.git, args.fleet) {
        (_, _, true) => None,
        (Some(dir), None, false) => Some(source::SourceSpec::Dir {
            dir: dir.clone(),
            file: policy,
        }),
        (None, Some(url), false) => Some(source::SourceSpec::Git {
            url: url.clone(),
            branch: args.branch.clone(),
            file: policy,
            workdir: agent_dir.join("git"),
        }),
        _ => {
            log("error: name the policy source: --dir DIR, --git URL, or --fleet");
            return exit::USAGE;
        }
    };
    let source = match spec.map(source::PolicySource::new).transpose() {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    if let Some(bad) = args
        .etcd
        .iter()
        .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
    {
        log(&format!(
            "error: --etcd {bad}: not an etcd member's URL (http://host:port)"
        ));
        return exit::USAGE;
    }
    let token = match api_token(&args, &agent_dir) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let secret = match &args.webhook_secret_file {
        Some(path) => match std::fs::read(path) {
            Ok(mut bytes) => {
                while bytes.last() == Some(&b'\n') {
                    bytes.pop();
                }
                Some(bytes)
            }
            Err(e) => return fail(format!("{}: {e}", path.display())),
        },
        None => None,
    };
    let targets = args
        .webhooks
        .iter()
        .enumerate()
        .map(|(i, url)| outbox::WebhookTarget {
            url: url.clone(),
            secret: secret.clone(),
            name: format!("webhook-{}", i + 1),
        })
        .collect();
    let outbox = match outbox::Outbox::open(
        &agent_dir.join("outbox"),
        targets,
        outbox::DeliveryPolicy {
            max_attempts: 20,
            ..Default::default()
        },
    ) {
        Ok(o) => o,
        Err(e) => return fail(e.to_string()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    let code = runtime.block_on(serve(args, state_dir, source, token, outbox));
    runtime.shutdown_background();
    code
}

async fn serve(
    args: Args,
    state_dir: PathBuf,
    source: Option<source::PolicySource>,
    token: String,
    outbox: outbox::Outbox,
) -> u8 {
    use crate::cli::exit;
    use std::sync::Arc;
    let metrics = Arc::new(metrics::Metrics::new());
    let app = Arc::new(crate::cli::app_for(state_dir.clone()));
    let (events_tx, events_rx) = std::sync::mpsc::channel::<webhooks::CloudEvent>();
    // The outbox is written on its own thread: the engine never waits on it.
    let writer = {
        let outbox = outbox.clone();
        let metrics = metrics.clone();
        std::thread::spawn(move || {
            for event in events_rx {
                if let Err(e) = outbox.enqueue(&event) {
                    log(&format!("error: cannot queue event {}: {e}", event.id));
                }
                metrics.set_outbox_pending(outbox.pending());
            }
        })
    };
    let delivery = {
        let metrics = metrics.clone();
        outbox.start_delivery(move |o| {
            let what = match (&o.result, o.gave_up) {
                (Ok(status), _) if (200..300).contains(status) => "delivered",
                (_, true) => "gave_up",
                _ => "retried",
            };
            metrics.delivery(what);
            log(&format!(
                "webhook {} {} {} (attempt {}): {}",
                o.target,
                o.event_type,
                o.event_id,
                o.attempt,
                match &o.result {
                    Ok(status) => format!("HTTP {status} {what}"),
                    Err(e) => format!("{e}; {what}"),
                }
            ));
        })
    };
    let link = if args.fleet {
        let config = duplex_fleet::FleetConfig {
            prefix: args.etcd_prefix.clone(),
            ..duplex_fleet::FleetConfig::new(args.etcd.clone())
        };
        let host = host_name(&args);
        log(&format!(
            "host {host} takes part in the fleet's rollouts on etcd {} (prefix {})",
            args.etcd.join(","),
            args.etcd_prefix
        ));
        Some(Arc::new(fleet::FleetLink::new(
            config,
            host,
            args.labels.iter().cloned().collect(),
        )))
    } else {
        None
    };
    let (live, _) = tokio::sync::broadcast::channel(1024);
    let (news_tx, news_rx) = tokio::sync::mpsc::unbounded_channel();
    let agent = Arc::new(reconcile::Agent {
        app: app.clone(),
        metrics,
        live,
        events: events_tx,
        news: news_tx,
        event_source: events::source(&state_dir),
        view: Default::default(),
        fetch_now: Default::default(),
        stop: duplex_core::cancel::Cancel::new(),
        policy_path: args.policy.clone().unwrap_or_default(),
        fleet: link.clone(),
    });
    let socket = match crate::api::socket::serve(&state_dir, api::router(agent.clone())) {
        Ok(Some(s)) => s,
        Ok(None) => {
            log(&format!(
                "error: another duplex serves {}: one agent (or apply) per state dir",
                crate::api::socket::path(&state_dir).display()
            ));
            return exit::INVALID;
        }
        Err(e) => {
            log(&format!("error: cannot serve the control socket: {e}"));
            return exit::INVALID;
        }
    };
    if let Some(addr) = args.listen {
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => match crate::api::tls::config(cert, key) {
                Ok(c) => Some(c),
                Err(e) => {
                    log(&format!("error: TLS: {e}"));
                    return exit::INVALID;
                }
            },
            _ => None,
        };
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                log(&format!("error: cannot listen on {addr}: {e}"));
                return exit::INVALID;
            }
        };
        let router = api::with_token(api::router(agent.clone()), Arc::new(token));
        let stop = agent.stop.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        match tls {
            Some(config) => {
                tokio::spawn(crate::api::tls::serve(listener, router, config, stop));
            }
            None => {
                tokio::spawn(async move {
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async move { stop.cancelled().await })
                        .await;
                });
            }
        }
        log(&format!(
            "API on {scheme}://{addr} (writes need the bearer token)"
        ));
    }
    crate::cli::signals::on_signal(
        agent.stop.clone(),
        "the session in flight is taken up when the agent starts again",
        "the next agent re-runs the request that was in progress",
        log,
    );
    log(&format!(
        "duplex agent {} on {} (pid {}); control socket {}",
        env!("CARGO_PKG_VERSION"),
        state_dir.display(),
        std::process::id(),
        crate::api::socket::path(&state_dir).display()
    ));
    let gate = match &args.fleetlock {
        Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
            log(&format!(
                "error: --fleetlock {url}: not a FleetLock server's URL (http:// or https://)"
            ));
            return exit::USAGE;
        }
        Some(url) => {
            let host = host_name(&args);
            log(&format!(
                "sessions start only holding a slot of FleetLock server {url} (group {}, id {host})",
                args.fleetlock_group
            ));
            gate::Gate::FleetLock(Arc::new(fleetlock::FleetLock::new(
                url,
                &host,
                &args.fleetlock_group,
            )))
        }
        None => match &link {
            Some(link) => gate::Gate::Fleet(link.clone()),
            None => gate::Gate::Open,
        },
    };
    let desire = match (source, link) {
        (Some(source), _) => reconcile::Desire::Source(source),
        (None, Some(link)) => reconcile::Desire::Fleet(link),
        (None, None) => unreachable!("a source or the fleet was checked above"),
    };
    let result = reconcile::run(agent.clone(), desire, args.fetch_interval, news_rx, gate).await;
    socket.close().await;
    delivery.shutdown();
    drop(agent);
    let _ = writer.join();
    match result {
        Ok(()) => {
            log("stopped");
            exit::OK
        }
        Err(e) => {
            log(&format!("error: {e}"));
            exit::INVALID
        }
    }
}

/// The API token: the file named, else `<state>/agent/token`, created with
/// 32 random bytes (hex) and mode 0600 on first start.
fn api_token(args: &Args, agent_dir: &std::path::Path) -> Result<String, String> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = args
        .token_file
        .clone()
        .unwrap_or_else(|| agent_dir.join("token"));
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => return Err(format!("{}: the token file is empty", path.display())),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("{}: {e}", path.display()));
        }
        Err(_) => {}
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(token)
}
