//! Use cases. Each takes `now` from the clock it is given and talks to the
//! store; none knows about HTTP.

pub mod accounts;
pub mod admin;
pub mod alerts;
pub mod apikeys;
pub mod audience;
pub mod audit;
pub mod batch_room;
pub mod blockshape;
pub mod bootstrap;
pub mod demo;
pub mod error;
pub mod geo;
pub mod group_commit;
pub mod jwtkeys;
pub mod list_room;
pub mod lockout;
pub mod mail;
pub mod operator;
pub mod privacy;
pub mod quotas;
pub mod report_csv;
pub mod reports;
pub mod reputation;
pub mod room;
pub mod sensors;
pub mod sessions;
pub mod stix;
pub mod sweep;
pub mod task_thread;
pub mod taxii;
pub mod threat;
pub mod tiers;
pub mod whitelist;

use std::path::PathBuf;
use std::sync::Arc;

use crate::crypto::SecretKey;
use crate::domain::{Clock, UnixMillis};

use crate::store::Store;

pub use error::{Error, Result};
pub use threat::Retention;

/// The operator's settings the use cases need, taken from `Config` by the
/// composition root.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub retention: Retention,
    /// IPv6 evidence is also aggregated per prefix of this length.
    pub ipv6_prefix: crate::domain::prefix::PrefixLen,
    pub privacy: privacy::PrivacyOptions,
    pub tiers: tiers::TierTable,
    pub accounts: accounts::AccountOptions,
    pub alerts: alerts::AlertOptions,
    pub geoip: crate::geoip::GeoFiles,
    pub scrubber: crate::domain::scrub::Scrubber,
    /// redb's page cache, reads and write buffer together.
    pub db_cache_bytes: usize,
    /// Memory for the entries of block lists being built and sent at once
    /// (0: `list_room::DEFAULT_BYTES`).
    pub blocklist_memory_bytes: usize,
    /// Memory for sensor batches being received and ingested at once
    /// (0: `batch_room::DEFAULT_BYTES`).
    pub sensor_batch_memory_bytes: usize,
}

/// How the services were started: inside `sikker serve`, or by an offline
/// `sikker admin` command holding the data dir lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Server,
    Offline,
}

/// Everything a use case may need, built once by the composition root.
#[derive(Debug)]
pub struct Services {
    pub store: Store,
    pub clock: Clock,
    pub secret: SecretKey,
    pub mode: Mode,
    pub started: UnixMillis,
    pub data_dir: PathBuf,
    pub retention: Retention,
    pub(crate) threat: Arc<threat::ThreatState>,
    /// Sensor batches waiting for the next shared commit.
    pub(crate) sensor_commits: Arc<group_commit::GroupCommit<sensors::Ingested>>,
    pub(crate) keys: apikeys::KeyCache,
    pub tiers: tiers::TierTable,
    pub(crate) quotas: quotas::Quotas,
    pub accounts: accounts::AccountOptions,
    pub(crate) hashing: accounts::Hashing,
    pub(crate) jwt: jwtkeys::JwtRing,
    pub(crate) lockout: lockout::Lockout,
    pub alerts: alerts::AlertState,
    pub(crate) geo: geo::GeoState,
    pub(crate) privacy: privacy::PrivacyState,
    pub(crate) audience: audience::AudienceState,
    /// Applied to every report comment before it is stored.
    pub scrubber: crate::domain::scrub::Scrubber,
    /// Block lists being built at once: one per core. Each takes a core
    /// and 48 bytes per listed address while it is built; more requests
    /// wait for a turn instead of piling up on the blocking pool.
    pub(crate) list_builds: tokio::sync::Semaphore,
    /// Memory for the entries of block lists being built and sent.
    pub(crate) list_rooms: list_room::ListRooms,
    /// Memory for sensor batches being received and ingested.
    pub(crate) batch_rooms: batch_room::BatchRooms,
}

impl Services {
    /// A turn to build a block list (`list_builds`), held until the list
    /// is ready to send.
    pub async fn list_build_turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.list_builds
            .acquire()
            .await
            .map_err(|_| Error::Internal {
                detail: "block list turns closed".into(),
            })
    }

    /// Builds the services over an open store, loading the in-memory index,
    /// whitelist, key cache and GeoIP databases (`geoip` names the
    /// operator's files; a bad one fails here, naming its flag). Blocking:
    /// call off the reactor.
    pub fn open(
        store: Store,
        clock: Clock,
        secret: SecretKey,
        mode: Mode,
        data_dir: PathBuf,
        opts: Options,
    ) -> Result<Self> {
        let Options {
            retention,
            ipv6_prefix,
            privacy,
            tiers,
            accounts,
            alerts,
            geoip,
            scrubber,
            db_cache_bytes: _,
            blocklist_memory_bytes,
            sensor_batch_memory_bytes,
        } = opts;
        let periods = crate::store::periods::Periods {
            indicators_ms: retention.indicators_ms,
            repeat_keep_days: retention.repeat_keep_days(),
            account_after_deletion_ms: privacy.account_after_deletion_ms,
        };
        let (recorded, refiled) = store.write_blocking(|txn| {
            let recorded = crate::store::periods::filed_with(txn)?;
            let refiled = crate::store::periods::refile_from(txn, recorded, periods)?;
            Ok((recorded, refiled))
        })?;
        if let Some(moved) = refiled {
            tracing::info!(
                indicators = moved.indicators,
                names = moved.names,
                histories = moved.histories,
                erased_accounts = moved.erased_accounts,
                "expiry buckets filed under the configured retention"
            );
            // An offline command normally runs with the server's settings;
            // different ones move every bucket now and again when the
            // server next starts.
            if matches!(mode, Mode::Offline) && recorded.is_some() {
                tracing::warn!(
                    "this command's retention settings differ from the ones the stored data was filed with (the server's, if it ran last); pass the server's --config to offline commands"
                );
            }
        }
        // Batches answered before a stop without a checkpoint, first: the
        // index below is built from the database with them.
        let log_path = crate::store::ingest_log::path_beside(store.path());
        let (log, held) =
            crate::store::ingest_log::IngestLog::open(&log_path).map_err(|e| Error::Internal {
                detail: format!("cannot open {}: {e}", log_path.display()),
            })?;
        let replayed = sensors::replay_ingest_log(&store, &secret, retention, &log, &held)?;
        if replayed > 0 {
            tracing::warn!(
                batches = replayed,
                "sensor batches written again from the ingest log (the last stop made no checkpoint)"
            );
        }
        let sensor_commits = Arc::new(group_commit::GroupCommit::with_log(
            Arc::new(log),
            store.path(),
        )?);
        let privacy = privacy::PrivacyState::load(&store, privacy)?;
        let geo = geo::GeoState::load(&store, geoip)?;
        let threat = Arc::new(threat::ThreatState::load(&store, retention, ipv6_prefix)?);
        let keys = apikeys::KeyCache::load(&store)?;
        let alerts = alerts::AlertState::load(&store, alerts)?;
        let started = clock.now();
        let jwt = jwtkeys::JwtRing::load(&store, &secret, started, accounts.jwt_rotate_ms)?;
        Ok(Self {
            store,
            clock,
            secret,
            mode,
            started,
            data_dir,
            retention,
            threat,
            sensor_commits,
            keys,
            tiers,
            quotas: quotas::Quotas::default(),
            hashing: accounts::Hashing::new(accounts.hash_concurrency),
            jwt,
            accounts,
            lockout: lockout::Lockout::default(),
            alerts,
            geo,
            privacy,
            audience: audience::AudienceState::default(),
            scrubber,
            list_builds: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            ),
            list_rooms: list_room::ListRooms::new(blocklist_memory_bytes),
            batch_rooms: batch_room::BatchRooms::new(sensor_batch_memory_bytes),
        })
    }

    /// Liveness plus a read of the database, for `/healthz`.
    pub async fn health(&self) -> Result<()> {
        self.store.read(crate::store::meta::schema_version).await?;
        Ok(())
    }

    /// Live indicators in memory.
    pub fn indicator_count(&self) -> usize {
        self.threat
            .with_index(crate::index::IpIndex::len)
            .unwrap_or(0)
    }
}
