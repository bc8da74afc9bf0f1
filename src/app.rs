//! The composition root: opens the data dir, store and keys, builds the
//! services, and spawns every long-running task under a name. `AppHandle`
//! owns them and shuts them down in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::acme::{AcmeFiles, AcmeOptions, Challenges};
use crate::config::Config;
use crate::crypto::SecretKey;
use crate::datadir::{DataDir, DataDirError, DirLock};
use crate::domain::Clock;
use crate::http::dispatch::{self, ConnInfo, HttpState};
use crate::http::tls::{self, CertFiles, CertResolver, TlsError};
use crate::http::{HttpOptions, redirect, server};
use crate::service::{Mode, Services};
use crate::store::{self, Store};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// How long shutdown waits for a write already under way.
const WRITER_GRACE: Duration = Duration::from_secs(60);

/// A running server.
pub struct AppHandle {
    /// The address the main listener is bound to (the real port for `:0`).
    pub local_addr: SocketAddr,
    /// `https` or `http` (with `--insecure-http`).
    pub scheme: &'static str,
    /// The plain-HTTP redirect listener's address, when configured.
    pub redirect_addr: Option<SocketAddr>,
    /// The one-time bootstrap token, on the first start of a data dir only.
    pub bootstrap_token: Option<String>,
    /// Warnings to show the operator (e.g. data dir permissions).
    pub warnings: Vec<String>,
    pub services: Arc<Services>,
    data_dir: DataDir,
    resolver: Option<Arc<CertResolver>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    grace: Duration,
    _lock: DirLock,
}

impl std::fmt::Debug for AppHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Starts the server on `listener` with time from `clock`.
pub async fn start(
    config: &Config,
    listener: TcpListener,
    clock: Clock,
) -> Result<AppHandle, StartError> {
    let (data_dir, dir_warning) = DataDir::create(&config.data_dir)?;
    let lock = data_dir.lock()?;
    // TLS first: a bad certificate must fail before a bootstrap token is
    // issued, or the token would be stored but never shown.
    let mut tls = tls_setup(config, &data_dir, &clock)?;
    let secret_path = data_dir.secret_key();
    let secret = SecretKey::load_or_create(&secret_path)
        .map_err(io(format!("cannot use {}", secret_path.display())))?;
    let opts = service_options(config, &listener)?;
    let senders = alert_senders(config)?;
    let (services, created) = open_services(&data_dir, secret, opts, clock.clone()).await?;
    tracing::info!(
        indicators = services.indicator_count(),
        "threat index loaded"
    );
    let bootstrap_token = if created {
        Some(
            services
                .issue_bootstrap_token()
                .await
                .map_err(|e| StartError::Other(e.to_string()))?,
        )
    } else {
        None
    };
    let mut warnings = Vec::new();
    if config.demo {
        seed_demo(&services, created, &mut warnings).await?;
    }

    let opts = HttpOptions::from_config(config);
    let local_addr = listener
        .local_addr()
        .map_err(io("cannot read the listening address"))?;
    let (shutdown, rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let socket = crate::admin::server::bind(&data_dir.socket()).map_err(io(format!(
        "cannot create admin socket {}",
        data_dir.socket().display()
    )))?;
    tasks.push((
        "admin-socket",
        tokio::spawn(crate::admin::server::serve(
            socket,
            services.clone(),
            rx.clone(),
        )),
    ));

    spawn_maintenance(config, &services, &rx, &mut tasks);
    spawn_alert_jobs(&services, senders, &rx, &mut tasks);

    spawn_acme(&mut tls, &clock, &rx, &mut tasks);

    let redirect_addr = match config.http_redirect_listen {
        Some(addr) => Some(spawn_redirect(addr, local_addr, config, &opts, &rx, &mut tasks).await?),
        None => None,
    };

    let state = Arc::new(HttpState::new(services.clone(), opts.clone()));
    let handler = move |req, conn| dispatch::dispatch(state.clone(), conn, req);
    tasks.push((
        "https",
        tokio::spawn(server::serve(
            listener,
            tls.acceptor,
            handler,
            opts.limits.clone(),
            rx,
            config.shutdown_grace,
        )),
    ));

    warnings.extend(dir_warning);
    Ok(AppHandle {
        local_addr,
        scheme: if config.insecure_http {
            "http"
        } else {
            "https"
        },
        redirect_addr,
        bootstrap_token,
        warnings,
        services,
        data_dir,
        resolver: tls.resolver,
        shutdown,
        tasks,
        grace: config.shutdown_grace,
        _lock: lock,
    })
}

/// The services' options; without `--public-url`, links in e-mails point
/// at the address actually bound (port 0 included).
fn service_options(
    config: &Config,
    listener: &TcpListener,
) -> Result<crate::service::Options, StartError> {
    let mut opts = config.service_options().map_err(StartError::Other)?;
    if config.public_url.is_none() {
        let scheme = if config.insecure_http {
            "http"
        } else {
            "https"
        };
        if let Ok(a) = listener.local_addr() {
            opts.accounts.base_url = format!("{scheme}://{a}");
        }
    }
    Ok(opts)
}

/// Fills a freshly created database with the synthetic demo data set.
async fn seed_demo(
    services: &Services,
    created: bool,
    warnings: &mut Vec<String>,
) -> Result<(), StartError> {
    if !created {
        warnings.push(
            "--demo ignored: the data dir already holds data (demo data is only seeded into a fresh data dir)".to_owned(),
        );
        return Ok(());
    }
    let out = services
        .seed_demo()
        .await
        .map_err(|e| StartError::Other(format!("cannot seed the demo data: {e}")))?;
    tracing::info!(
        events = out.accepted,
        indicators = services.indicator_count(),
        "demo data seeded (synthetic, sensor \"{}\")",
        crate::service::demo::DEMO_SENSOR
    );
    Ok(())
}

/// The SMTP and webhook senders; a bad SMTP setting (or an unreadable
/// password file) fails here, before a bootstrap token is issued.
fn alert_senders(config: &Config) -> Result<crate::jobs::alerts::Senders, StartError> {
    let mailer = config
        .smtp()
        .map_err(StartError::Other)?
        .map(|o| crate::notify::smtp::Mailer::new(&o))
        .transpose()
        .map_err(StartError::Other)?;
    let webhook = crate::notify::webhook::WebhookClient::new(
        config.webhook_allow_http,
        config.webhook_ca_file.as_deref(),
    )
    .map_err(StartError::Other)?;
    Ok(crate::jobs::alerts::Senders { mailer, webhook })
}

/// The retention sweep and the usage-counter flush.
fn spawn_maintenance(
    config: &Config,
    services: &Arc<Services>,
    rx: &watch::Receiver<bool>,
    tasks: &mut Vec<(&'static str, JoinHandle<()>)>,
) {
    tasks.push((
        "sweep",
        tokio::spawn(crate::jobs::sweep(
            services.clone(),
            config.sweep_interval,
            rx.clone(),
        )),
    ));
    tasks.push((
        "usage-flush",
        tokio::spawn(crate::jobs::flush_usage(services.clone(), rx.clone())),
    ));
    tasks.push((
        "jwt-rotation",
        tokio::spawn(crate::jobs::jwt_rotation(services.clone(), rx.clone())),
    ));
    tasks.push((
        "ingest-checkpoint",
        tokio::spawn(crate::jobs::checkpoint_ingest(services.clone(), rx.clone())),
    ));
}

fn spawn_alert_jobs(
    services: &Arc<Services>,
    senders: crate::jobs::alerts::Senders,
    rx: &watch::Receiver<bool>,
    tasks: &mut Vec<(&'static str, JoinHandle<()>)>,
) {
    tasks.push((
        "alerts",
        tokio::spawn(crate::jobs::alerts::alerts(services.clone(), rx.clone())),
    ));
    tasks.push((
        "alert-delivery",
        tokio::spawn(crate::jobs::alerts::deliveries(
            services.clone(),
            senders,
            rx.clone(),
        )),
    ));
}

/// Opens (or creates and migrates) the database and builds the services;
/// also says whether the database was created just now.
async fn open_services(
    data_dir: &DataDir,
    secret: SecretKey,
    opts: crate::service::Options,
    clock: Clock,
) -> Result<(Arc<Services>, bool), StartError> {
    let db_path = data_dir.db();
    let root = data_dir.root().to_path_buf();
    let cache = opts.db_cache_bytes;
    tokio::task::spawn_blocking(move || {
        let opened = Store::open_with_cache(&db_path, cache)?;
        if let Some(from) = opened.migrated_from {
            tracing::info!(
                from,
                to = store::migrate::CURRENT,
                "database schema migrated"
            );
        }
        let t0 = std::time::Instant::now();
        let services = Services::open(opened.store, clock, secret, Mode::Server, root, opts)
            .map_err(|e| StartError::Other(e.to_string()))?;
        tracing::info!(
            ms = t0.elapsed().as_secs_f64() * 1000.0,
            "indexes and GeoIP databases loaded"
        );
        Ok::<_, StartError>((Arc::new(services), opened.created))
    })
    .await
    .map_err(|e| StartError::Other(e.to_string()))?
}

struct Tls {
    resolver: Option<Arc<CertResolver>>,
    acceptor: Option<TlsAcceptor>,
    /// The renewal loop's state, with --acme-domain.
    acme: Option<(AcmeOptions, AcmeFiles, Arc<Challenges>)>,
}

/// The certificate resolver and acceptor, or neither for `--insecure-http`.
/// With ACME a stored certificate is served at once, without asking the
/// CA; until the first one is issued the self-signed one stands in.
fn tls_setup(config: &Config, data_dir: &DataDir, clock: &Clock) -> Result<Tls, StartError> {
    if config.insecure_http {
        return Ok(Tls {
            resolver: None,
            acceptor: None,
            acme: None,
        });
    }
    let self_signed = |extra: &[String]| {
        let ip = config.listen.ip();
        let mut names = extra.to_vec();
        if !(ip.is_unspecified() || ip.is_loopback()) {
            names.push(ip.to_string());
        }
        tls::ensure_self_signed(&data_dir.tls_dir(), &names, clock.now().0 / 1000)
    };
    let mut acme = None;
    let resolver = if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        CertResolver::new(CertFiles {
            cert: cert.clone(),
            key: key.clone(),
        })?
    } else if let Some(opts) = config.acme() {
        let files = AcmeFiles::new(data_dir.acme_dir());
        let challenges = Arc::new(Challenges::default());
        let issued = CertFiles {
            cert: files.cert(),
            key: files.key(),
        };
        let r = CertResolver::acme(issued, self_signed(&opts.domains)?, challenges.clone())?;
        acme = Some((opts, files, challenges));
        r
    } else {
        CertResolver::new(self_signed(&[])?)?
    };
    let resolver = Arc::new(resolver);
    let cfg = tls::server_config(resolver.clone()).map_err(|e| StartError::Other(e.to_string()))?;
    Ok(Tls {
        resolver: Some(resolver),
        acceptor: Some(TlsAcceptor::from(Arc::new(cfg))),
        acme,
    })
}

/// How often the ACME loop looks at the clock.
const ACME_TICK: Duration = Duration::from_secs(60);

fn spawn_acme(
    tls: &mut Tls,
    clock: &Clock,
    rx: &watch::Receiver<bool>,
    tasks: &mut Vec<(&'static str, JoinHandle<()>)>,
) {
    let (Some((opts, files, challenges)), Some(resolver)) = (tls.acme.take(), &tls.resolver) else {
        return;
    };
    let resolver = resolver.clone();
    let job = crate::jobs::acme::AcmeJob {
        opts,
        files,
        challenges,
        reload: Arc::new(move || resolver.reload().map_err(|e| e.to_string())),
        clock: clock.clone(),
        tick: ACME_TICK,
    };
    tasks.push((
        "acme",
        tokio::spawn(crate::jobs::acme::run(job, rx.clone())),
    ));
}

/// Binds the plain-HTTP listener that redirects to `https_addr`.
async fn spawn_redirect(
    addr: SocketAddr,
    https_addr: SocketAddr,
    config: &Config,
    opts: &HttpOptions,
    rx: &watch::Receiver<bool>,
    tasks: &mut Vec<(&'static str, JoinHandle<()>)>,
) -> Result<SocketAddr, StartError> {
    let l = TcpListener::bind(addr).await.map_err(io(format!(
        "cannot listen on {addr} (--http-redirect-listen / SIKKER_HTTP_REDIRECT_LISTEN)"
    )))?;
    let bound = l
        .local_addr()
        .map_err(io("cannot read the redirect address"))?;
    let public = opts.public_url.clone();
    let handler = move |req: http::Request<hyper::body::Incoming>, _conn: ConnInfo| {
        let public = public.clone();
        async move { redirect::answer(&req, https_addr, public.as_deref()) }
    };
    let task = server::serve(
        l,
        None,
        handler,
        opts.limits.clone(),
        rx.clone(),
        config.shutdown_grace,
    );
    tasks.push(("http-redirect", tokio::spawn(task)));
    Ok(bound)
}

impl AppHandle {
    /// Re-reads operator certificate files (SIGHUP; the GeoIP files are
    /// reloaded separately by `Services::geoip_reload`). The self-signed
    /// certificate is reloaded too, which is harmless.
    pub fn reload(&self) -> Result<(), TlsError> {
        match &self.resolver {
            Some(r) => r.reload(),
            None => Ok(()),
        }
    }

    /// Stops accepting, drains in-flight requests (up to the grace period),
    /// stops every task, and releases the data dir.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + self.grace + Duration::from_secs(5);
        for (name, mut task) in self.tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => tracing::debug!(task = name, "task stopped"),
                Ok(Err(e)) => tracing::error!(task = name, error = %e, "task failed"),
                Err(_) => {
                    // Past the grace period: stop it, so nothing keeps the
                    // database open after shutdown returns.
                    tracing::warn!(task = name, "task did not stop in time; aborting it");
                    task.abort();
                    let _ = task.await;
                }
            }
        }
        // A write already handed to the writer thread (say, by a request
        // or job stopped above) finishes before shutdown returns, so the
        // database is not being written after it: the thread runs its
        // tasks in order, and this one comes last.
        let writer_done = self.services.threat.writer.run(|| ());
        if tokio::time::timeout(WRITER_GRACE, writer_done)
            .await
            .is_err()
        {
            tracing::warn!("a write was still running at shutdown");
        } else if let Err(e) = self.services.checkpoint_ingest(Duration::ZERO).await {
            // Nothing is lost: the next start replays the ingest log.
            tracing::warn!(error = %e, "no checkpoint of the ingest log at shutdown");
        }
        let _ = std::fs::remove_file(self.data_dir.socket());
        tracing::info!("stopped");
    }
}
