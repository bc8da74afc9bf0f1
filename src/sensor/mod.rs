//! `sikker sensor`: low-interaction honeypot listeners that turn what
//! attackers do into sensor events, spool them on disk and ship them to a
//! `sikker serve`. Nothing an attacker sends is ever executed.
//!
//! `start` binds every listener and returns a `SensorHandle` with the bound
//! addresses (port 0 works), like `app::start` does for the server.

mod event;
mod io;
mod shell;
pub mod shipper;
pub mod spool;

mod http;
mod redis;
mod smtp;
mod ssh;
mod tcp;
mod telnet;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::domain::{Clock, Protocol};
use crate::service::sensors::WireEvent;

pub use event::CredentialKey;
use event::Recorder;

/// Which honeypot answers on a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Ssh,
    Telnet,
    Http,
    Smtp,
    Redis,
    /// Accepts, records the connection, and says nothing (port-scan evidence).
    Tcp(Protocol),
}

impl Service {
    pub fn protocol(self) -> Protocol {
        match self {
            Self::Ssh => Protocol::Ssh,
            Self::Telnet => Protocol::Telnet,
            Self::Http => Protocol::Http,
            Self::Smtp => Protocol::Smtp,
            Self::Redis => Protocol::Redis,
            Self::Tcp(p) => p,
        }
    }
}

/// Bounds that keep one client from costing more than a little.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Simultaneous connections over all listeners; more are closed at once.
    pub max_connections: usize,
    /// A client silent for this long is disconnected.
    pub idle_timeout: Duration,
    /// No connection lives longer than this.
    pub max_session: Duration,
    /// Longest line kept (the rest of a longer line is read and discarded).
    pub max_line: usize,
    /// Bytes read from one connection at most.
    pub max_session_bytes: u64,
    /// Events recorded from one connection at most.
    pub max_session_events: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            idle_timeout: Duration::from_secs(30),
            max_session: Duration::from_secs(600),
            max_line: 4096,
            max_session_bytes: 1024 * 1024,
            max_session_events: 200,
        }
    }
}

/// Everything `start` needs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Base URL of the server (`https://host:port`).
    pub server: String,
    pub token: String,
    /// PEM certificate(s) to trust in addition to the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub ssh_banner: String,
    pub listeners: Vec<(Service, SocketAddr)>,
    pub limits: Limits,
}

/// Maps a connection's peer address to the source address recorded.
///
/// Production uses `PeerMap::identity()`. Tests connect from loopback, which
/// the server rightly refuses as a source, so the test API passes a map onto
/// public addresses; there is deliberately no flag for this.
#[derive(Clone)]
pub struct PeerMap(Arc<dyn Fn(SocketAddr) -> IpAddr + Send + Sync>);

impl PeerMap {
    pub fn identity() -> Self {
        Self(Arc::new(|a: SocketAddr| a.ip()))
    }

    pub fn new(f: impl Fn(SocketAddr) -> IpAddr + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    fn map(&self, a: SocketAddr) -> IpAddr {
        (self.0)(a)
    }
}

impl std::fmt::Debug for PeerMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerMap")
    }
}

/// Counters of what the sensor did, for logs and tests.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub connections_refused: AtomicU64,
    pub events_recorded: AtomicU64,
    /// Events from private, loopback or reserved sources (never shipped).
    pub events_non_public: AtomicU64,
    /// Events that would not pass the server's validation.
    pub events_invalid: AtomicU64,
    pub events_spool_full: AtomicU64,
    pub events_shipped: AtomicU64,
    /// Posts the server acknowledged (each of one or more segments).
    pub batches_shipped: AtomicU64,
    pub batches_rejected: AtomicU64,
    pub ship_failures: AtomicU64,
}

impl Stats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What every connection handler shares.
pub(crate) struct Ctx {
    pub sink: mpsc::Sender<WireEvent>,
    pub clock: Clock,
    pub stats: Arc<Stats>,
    pub key: CredentialKey,
    pub peers: PeerMap,
    pub limits: Limits,
    pub ssh: Option<Arc<russh::server::Config>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// A running sensor.
pub struct SensorHandle {
    /// Every listener with the address it is bound to (real port for `:0`).
    pub addrs: Vec<(Service, SocketAddr)>,
    pub stats: Arc<Stats>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    ship_stop: watch::Sender<bool>,
    shipper: JoinHandle<()>,
}

impl std::fmt::Debug for SensorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SensorHandle")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl SensorHandle {
    /// The bound address of the first listener of `service`.
    pub fn addr(&self, service: Service) -> Option<SocketAddr> {
        self.addrs.iter().find(|(s, _)| *s == service).map(|x| x.1)
    }

    /// Stops listening, seals the spool and gives the shipper a few seconds
    /// to deliver what is left (the rest stays spooled for the next start).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // The spool seals its last segment before the shipper's final pass.
        let tasks = self.tasks.into_iter().chain([("shipper", self.shipper)]);
        for (name, task) in tasks {
            if name == "shipper" {
                let _ = self.ship_stop.send(true);
            }
            match tokio::time::timeout(Duration::from_secs(15), task).await {
                Ok(Ok(())) => tracing::debug!(task = name, "task stopped"),
                Ok(Err(e)) => tracing::error!(task = name, error = %e, "task failed"),
                Err(_) => tracing::warn!(task = name, "task did not stop in time"),
            }
        }
    }
}

/// Starts a sensor recording real peer addresses.
pub async fn start(settings: Settings, clock: Clock) -> Result<SensorHandle, StartError> {
    start_with_peer_map(settings, clock, PeerMap::identity()).await
}

/// Starts a sensor whose recorded source addresses come from `peers`
/// (the test API: loopback clients stand in for public attackers).
pub async fn start_with_peer_map(
    settings: Settings,
    clock: Clock,
    peers: PeerMap,
) -> Result<SensorHandle, StartError> {
    if settings.listeners.is_empty() {
        return Err(StartError::Other("no listener enabled".into()));
    }
    spool::ensure_dir(&settings.spool_dir)?;
    let key = CredentialKey::load_or_create(&settings.spool_dir.join("credential.key"))?;
    let ssh = if settings.listeners.iter().any(|(s, _)| *s == Service::Ssh) {
        Some(ssh::config(&settings)?)
    } else {
        None
    };
    let client = shipper::client(settings.ca_pem.as_deref())?;
    let stats = Arc::new(Stats::default());
    let (tx, rx) = mpsc::channel(4096);
    let (shutdown, srx) = watch::channel(false);
    let mut tasks = Vec::new();

    let mut bound = Vec::new();
    for (service, addr) in &settings.listeners {
        let l = TcpListener::bind(addr).await.map_err(io_err(format!(
            "cannot listen on {addr} for {}",
            service.protocol()
        )))?;
        let local = l
            .local_addr()
            .map_err(io_err("cannot read a listening address"))?;
        bound.push((*service, local, l));
    }

    let spool = spool::Spool::open(&settings.spool_dir, settings.spool_max_bytes)?;
    let notify = spool.notify();
    let used = spool.used();
    tasks.push((
        "spool",
        tokio::spawn(spool.run(
            rx,
            settings.batch_size,
            settings.flush_interval,
            stats.clone(),
            srx.clone(),
        )),
    ));
    let ship = shipper::Shipper::new(
        client,
        format!("{}/v1/sensor/events", settings.server.trim_end_matches('/')),
        settings.token.clone(),
        settings.spool_dir.clone(),
        stats.clone(),
        used,
    );
    let (ship_stop, ship_rx) = watch::channel(false);
    let shipper = tokio::spawn(ship.run(notify, ship_rx));

    let ctx = Arc::new(Ctx {
        sink: tx,
        clock,
        stats: stats.clone(),
        key,
        peers,
        limits: settings.limits.clone(),
        ssh,
    });
    let sem = Arc::new(Semaphore::new(settings.limits.max_connections));
    let mut addrs = Vec::new();
    for (service, local, l) in bound {
        addrs.push((service, local));
        tasks.push((
            "listener",
            tokio::spawn(accept_loop(
                l,
                service,
                ctx.clone(),
                sem.clone(),
                srx.clone(),
            )),
        ));
    }
    Ok(SensorHandle {
        addrs,
        stats,
        shutdown,
        tasks,
        ship_stop,
        shipper,
    })
}

async fn accept_loop(
    listener: TcpListener,
    service: Service,
    ctx: Arc<Ctx>,
    sem: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = sem.clone().try_acquire_owned() else {
            Stats::inc(&ctx.stats.connections_refused);
            drop(stream);
            continue;
        };
        Stats::inc(&ctx.stats.connections);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let max = ctx.limits.max_session;
            let _ = tokio::time::timeout(max, serve(service, stream, peer, ctx)).await;
        });
    }
}

async fn serve(service: Service, stream: TcpStream, peer: SocketAddr, ctx: Arc<Ctx>) {
    let local_port = stream.local_addr().map_or(0, |a| a.port());
    let rec = Recorder::new(ctx.clone(), peer, local_port, service.protocol());
    match service {
        Service::Ssh => ssh::serve(stream, rec, &ctx).await,
        Service::Telnet => telnet::serve(stream, rec).await,
        Service::Http => http::serve(stream, rec).await,
        Service::Smtp => smtp::serve(stream, rec).await,
        Service::Redis => redis::serve(stream, rec).await,
        Service::Tcp(_) => tcp::serve(stream, rec).await,
    }
}
