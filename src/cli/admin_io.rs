//! The long-running `sikker admin` commands — imports, export, backup and
//! restore — with progress (a bar on a terminal, periodic lines otherwise)
//! and the output helpers every admin command shares (aligned tables,
//! colours only on a terminal and without `NO_COLOR`).

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::admin::{Conn, ImportCmd, Usage};
use crate::datadir::{DataDir, DataDirError};
use crate::service::admin::AdminRequest;
use crate::service::operator::{self, IMPORT_BATCH, ImportOutcome, LineError};
use crate::service::report_csv::{CsvLine, CsvReader};
use crate::service::reports::ReportRow;
use crate::service::sensors::WireEvent;

/// Request bytes per import batch, well under the socket's line limit.
const BATCH_BYTES: usize = crate::admin::MAX_LINE / 2;
/// Errors listed one by one in the summary; the rest are counted.
const MAX_ERRORS_SHOWN: usize = 50;

/// How results are printed.
pub struct Output {
    pub json: bool,
    color: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        let color = !json
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Self { json, color }
    }

    fn bold(&self, s: &str) -> String {
        if self.color {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// An aligned table for listings; key/value lines for objects.
    pub fn table(&self, v: &Value) -> String {
        let cell = |x: &Value| match x {
            Value::String(s) => s.clone(),
            Value::Null => "-".to_owned(),
            other => other.to_string(),
        };
        match v {
            Value::Array(rows) if rows.is_empty() => "(none)".to_owned(),
            Value::Array(rows) => {
                let cols: Vec<String> = rows[0]
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                let mut grid = vec![cols.clone()];
                for r in rows {
                    grid.push(
                        cols.iter()
                            .map(|c| cell(r.get(c).unwrap_or(&Value::Null)))
                            .collect(),
                    );
                }
                let widths: Vec<usize> = (0..cols.len())
                    .map(|i| grid.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
                    .collect();
                grid.iter()
                    .enumerate()
                    .map(|(n, r)| {
                        let line = r
                            .iter()
                            .zip(&widths)
                            .map(|(c, w)| format!("{c:<w$}"))
                            .collect::<Vec<_>>()
                            .join("  ")
                            .trim_end()
                            .to_owned();
                        if n == 0 { self.bold(&line) } else { line }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Value::Object(o) => {
                let w = o.keys().map(|k| k.chars().count()).max().unwrap_or(0) + 1;
                o.iter()
                    .map(|(k, x)| {
                        let label = format!("{:<w$}", format!("{k}:"));
                        format!("{} {}", self.bold(&label), cell(x))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            other => cell(other),
        }
    }
}

/// Progress over a file: a bar with rate and ETA on a terminal, a line
/// every few seconds otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_line: Instant,
    total: Option<u64>,
    what: &'static str,
}

impl Progress {
    /// A spinner saying `what` is being done, for work without a known size.
    fn spinner(what: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        let p = Self::new(None, "");
        if let Some(b) = &p.bar {
            b.set_message(what);
            b.enable_steady_tick(Duration::from_millis(120));
        }
        p
    }

    fn new(total: Option<u64>, what: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = total.map_or_else(indicatif::ProgressBar::new_spinner, indicatif::ProgressBar::new);
            let style = if total.is_some() {
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {msg}"
            } else {
                "{spinner} [{elapsed_precise}] {msg}"
            };
            if let Ok(s) = indicatif::ProgressStyle::with_template(style) {
                b.set_style(s);
            }
            b
        });
        Self {
            bar,
            started: Instant::now(),
            last_line: Instant::now(),
            total,
            what,
        }
    }

    #[allow(clippy::cast_precision_loss)] // rates and percentages for display
    fn update(&mut self, pos: u64, done: usize) {
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        if let Some(b) = &self.bar {
            b.set_position(pos);
            b.set_message(format!("{done} {} ({rate:.0}/s)", self.what));
        } else if self.last_line.elapsed() >= Duration::from_secs(2) {
            self.last_line = Instant::now();
            match self.total {
                Some(t) if t > 0 => eprintln!(
                    "{done} {} ({rate:.0}/s), {:.0}% of the input",
                    self.what,
                    pos as f64 * 100.0 / t as f64
                ),
                _ => eprintln!("{done} {} ({rate:.0}/s)", self.what),
            }
        }
    }

    fn finish(&self) -> Duration {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        self.started.elapsed()
    }
}

/// Reads lines with their 1-based numbers and the bytes read so far,
/// without holding more than one line.
struct Lines {
    input: Box<dyn BufRead>,
    buf: Vec<u8>,
    n: usize,
    pos: u64,
}

impl Lines {
    fn open(file: &Path) -> anyhow::Result<(Self, Option<u64>)> {
        let (input, total): (Box<dyn Read>, _) = if file.as_os_str() == "-" {
            (Box::new(std::io::stdin()), None)
        } else {
            let f = std::fs::File::open(file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(f), len)
        };
        Ok((
            Self {
                input: Box::new(BufReader::with_capacity(1 << 20, input)),
                buf: Vec::new(),
                n: 0,
                pos: 0,
            },
            total,
        ))
    }

    /// The next line (`Err` text: not UTF-8), or `None` at the end.
    fn next_line(&mut self) -> anyhow::Result<Option<(usize, Result<&str, String>)>> {
        self.buf.clear();
        let read = self.input.read_until(b'\n', &mut self.buf)?;
        if read == 0 {
            return Ok(None);
        }
        self.n += 1;
        self.pos += read as u64;
        let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        Ok(Some((
            self.n,
            std::str::from_utf8(line).map_err(|_| "is not valid UTF-8".to_owned()),
        )))
    }
}

/// Accumulates one batch of report rows or events.
enum Batch {
    Reports {
        key: Option<u64>,
        rows: Vec<(usize, ReportRow)>,
    },
    Events(Vec<(usize, WireEvent)>),
}

impl Batch {
    fn len(&self) -> usize {
        match self {
            Self::Reports { rows, .. } => rows.len(),
            Self::Events(e) => e.len(),
        }
    }

    fn take(&mut self) -> AdminRequest {
        match self {
            Self::Reports { key, rows } => AdminRequest::ImportReports {
                key: *key,
                rows: std::mem::take(rows),
            },
            Self::Events(e) => AdminRequest::ImportEvents {
                events: std::mem::take(e),
            },
        }
    }
}

struct Importer<'a> {
    conn: &'a mut Conn,
    batch: Batch,
    bytes: usize,
    total: ImportOutcome,
    lines: usize,
}

impl Importer<'_> {
    fn reject(&mut self, line: usize, error: String) {
        self.total.rejected += 1;
        self.total.errors.push(LineError { line, error });
    }

    async fn push_row(&mut self, n: usize, row: ReportRow) -> anyhow::Result<()> {
        self.bytes += 48
            + row.ip.len()
            + row.category.len()
            + row.protocol.as_ref().map_or(0, String::len)
            + row.comment.as_ref().map_or(0, |c| c.len() * 2);
        if let Batch::Reports { rows, .. } = &mut self.batch {
            rows.push((n, row));
        }
        self.maybe_flush().await
    }

    async fn push_event(&mut self, n: usize, ev: WireEvent, size: usize) -> anyhow::Result<()> {
        self.bytes += size * 2 + 64;
        if let Batch::Events(e) = &mut self.batch {
            e.push((n, ev));
        }
        self.maybe_flush().await
    }

    async fn maybe_flush(&mut self) -> anyhow::Result<()> {
        if self.batch.len() >= IMPORT_BATCH || self.bytes >= BATCH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.batch.len() == 0 {
            return Ok(());
        }
        self.bytes = 0;
        let result = self.conn.ok(self.batch.take()).await?;
        let o: ImportOutcome = serde_json::from_value(result).context("unexpected answer")?;
        self.total.add(o);
        Ok(())
    }
}

/// Runs one streamed import and prints its summary. Lines that cannot be
/// imported are listed with their numbers; the rest is imported, and the
/// command exits 1 when any line was rejected.
#[allow(clippy::too_many_lines, clippy::cast_precision_loss)] // one loop over the formats; a displayed rate
pub async fn import(conn: &mut Conn, cmd: ImportCmd, out: &Output) -> anyhow::Result<()> {
    let (file, kind) = match &cmd {
        ImportCmd::Reports { file, .. } => (file.clone(), "reports"),
        ImportCmd::List { file, .. } => (file.clone(), "list"),
        ImportCmd::Fail2ban { file, .. } => (file.clone(), "fail2ban"),
        ImportCmd::Cowrie { file } => (file.clone(), "cowrie"),
        ImportCmd::TorExits { .. } => bail!("tor-exits is a single request"),
    };
    let (mut lines, size) = Lines::open(&file)?;
    let batch = match &cmd {
        ImportCmd::Reports { key, .. }
        | ImportCmd::List { key, .. }
        | ImportCmd::Fail2ban { key, .. } => Batch::Reports {
            key: *key,
            rows: Vec::new(),
        },
        _ => Batch::Events(Vec::new()),
    };
    let category = match &cmd {
        ImportCmd::List { category, .. } => Some(category),
        ImportCmd::Fail2ban { category, .. } => category.as_ref(),
        _ => None,
    };
    if let Some(category) = category
        && crate::domain::Category::parse(category).is_none()
    {
        return Err(Usage(format!(
            "unknown category '{category}' (use a name or 1-16)"
        ))
        .into());
    }
    if let ImportCmd::Fail2ban { file, category, .. } = &cmd
        && file.as_os_str() != "-"
        && super::fail2ban_db::is_sqlite(file)
    {
        let mut imp = Importer {
            conn,
            batch,
            bytes: 0,
            total: ImportOutcome::default(),
            lines: 0,
        };
        let started = import_fail2ban_db(&mut imp, file, category.as_deref()).await?;
        return summarise(imp, file, "fail2ban", started.elapsed(), out, "bans");
    }
    let mut imp = Importer {
        conn,
        batch,
        bytes: 0,
        total: ImportOutcome::default(),
        lines: 0,
    };
    let mut progress = Progress::new(size, "lines");
    let mut csv = CsvReader::new();
    let mut jail = None;
    while let Some((n, line)) = lines.next_line()? {
        imp.lines = n;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                imp.reject(n, e);
                continue;
            }
        };
        match &cmd {
            ImportCmd::Reports { .. } => match csv.line(n, line) {
                Ok(CsvLine::Skip) => {}
                Ok(CsvLine::Row(r)) => imp.push_row(n, r).await?,
                Ok(CsvLine::Bad(e)) => imp.reject(n, e.error),
                Err(e) => imp.reject(n, e),
            },
            ImportCmd::List {
                category,
                protocol,
                comment,
                ..
            } => match operator::list_line(line) {
                Ok(ips) => {
                    for ip in ips {
                        let row = ReportRow {
                            ip,
                            category: category.clone(),
                            protocol: protocol.clone(),
                            comment: comment.clone(),
                            at_ms: None,
                        };
                        imp.push_row(n, row).await?;
                    }
                }
                Err(e) => imp.reject(n, e),
            },
            ImportCmd::Fail2ban { category, .. } => {
                for ip in operator::fail2ban_line(line, &mut jail) {
                    let row =
                        operator::fail2ban_row(ip, jail.as_deref(), category.as_deref(), None);
                    imp.push_row(n, row).await?;
                }
            }
            ImportCmd::Cowrie { .. } => {
                if line.trim().is_empty() {
                    continue;
                }
                match operator::cowrie_line(line) {
                    Ok(Some(ev)) => imp.push_event(n, ev, line.len()).await?,
                    Ok(None) => {}
                    Err(e) => imp.reject(n, e),
                }
            }
            ImportCmd::TorExits { .. } => {}
        }
        if n % 4096 == 0 {
            progress.update(lines.pos, n);
        }
    }
    imp.flush().await?;
    let elapsed = progress.finish();
    summarise(imp, &file, kind, elapsed, out, "lines")
}

/// Imports fail2ban's ban history from its database, one dated report per
/// ban; returns when it started.
async fn import_fail2ban_db(
    imp: &mut Importer<'_>,
    file: &Path,
    category: Option<&str>,
) -> anyhow::Result<Instant> {
    let mut bans = super::fail2ban_db::BanReader::open(file)?;
    let mut progress = Progress::new(None, "bans");
    let started = Instant::now();
    let mut n = 0_usize;
    loop {
        let chunk = bans.next_chunk()?;
        if chunk.is_empty() {
            break;
        }
        for ban in chunk {
            n += 1;
            imp.lines = n;
            match ban {
                Ok(b) => {
                    let row = operator::fail2ban_row(b.ip, Some(&b.jail), category, Some(b.at_ms));
                    imp.push_row(usize::try_from(b.row).unwrap_or(n), row)
                        .await?;
                }
                Err((row, e)) => imp.reject(usize::try_from(row).unwrap_or(n), e),
            }
        }
        progress.update(u64::try_from(n).unwrap_or(0), n);
    }
    imp.flush().await?;
    progress.finish();
    Ok(started)
}

/// Prints an import's summary (JSON or a line, with the first rejected
/// `unit`s by number) and fails when anything was rejected.
#[allow(clippy::cast_precision_loss)] // a displayed rate
fn summarise(
    imp: Importer<'_>,
    file: &Path,
    kind: &str,
    elapsed: Duration,
    out: &Output,
    unit: &str,
) -> anyhow::Result<()> {
    let mut total = imp.total;
    total.errors.sort_by_key(|e| e.line);
    let lines_read = imp.lines;
    let secs = elapsed.as_secs_f64();
    if out.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "kind": kind,
                unit: lines_read,
                "accepted": total.accepted,
                "rejected": total.rejected,
                "duplicates": total.duplicates,
                "elapsed_secs": secs,
                "errors": total.errors,
            }))?
        );
    } else {
        for e in total.errors.iter().take(MAX_ERRORS_SHOWN) {
            eprintln!("{}:{}: {}", file.display(), e.line, e.error);
        }
        if total.errors.len() > MAX_ERRORS_SHOWN {
            eprintln!(
                "… and {} more rejected {unit}",
                total.errors.len() - MAX_ERRORS_SHOWN
            );
        }
        println!(
            "{kind} import: {lines_read} {unit} in {secs:.1}s ({:.0} {unit}/s): {} accepted, {} rejected, {} duplicates",
            lines_read as f64 / secs.max(1e-3),
            total.accepted,
            total.rejected,
            total.duplicates
        );
    }
    if total.rejected > 0 {
        bail!(
            "{} {unit} were rejected (the rest was imported)",
            total.rejected
        );
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ExportFormat {
    /// A JSON array of indicator objects.
    Json,
    /// `ip,score,first_seen,last_seen,reports,events,categories`.
    Csv,
    /// A STIX 2.1 bundle of indicators.
    Stix,
}

/// Streams every live indicator page by page.
#[allow(clippy::too_many_lines)] // one loop over the three formats
pub async fn export(
    conn: &mut Conn,
    format: ExportFormat,
    output: Option<&Path>,
    _out: &Output,
) -> anyhow::Result<()> {
    let (mut w, tmp): (Box<dyn Write>, _) = match output {
        Some(p) => {
            let tmp = p.with_extension("partial");
            let f = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            (Box::new(std::io::BufWriter::new(f)), Some(tmp))
        }
        None => (
            Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            None,
        ),
    };
    let mut progress = Progress::new(None, "indicators");
    match format {
        ExportFormat::Json => w.write_all(b"[")?,
        ExportFormat::Csv => {
            w.write_all(b"ip,score,first_seen,last_seen,reports,events,categories\n")?;
        }
        ExportFormat::Stix => {
            let id = hex::encode(crate::crypto::random_bytes::<16>());
            let uuid = format!(
                "{}-{}-4{}-a{}-{}",
                &id[..8],
                &id[8..12],
                &id[13..16],
                &id[17..20],
                &id[20..32]
            );
            write!(
                w,
                "{{\"type\":\"bundle\",\"id\":\"bundle--{uuid}\",\"objects\":[{}",
                crate::service::stix::identity()
            )?;
        }
    }
    let mut after = None;
    let mut n = 0_usize;
    loop {
        let page = conn
            .ok(AdminRequest::ExportIndicators {
                after: after.clone(),
                limit: 5000,
            })
            .await?;
        for it in page["items"].as_array().into_iter().flatten() {
            match format {
                ExportFormat::Json => {
                    let mut it = it.clone();
                    if let Some(o) = it.as_object_mut() {
                        o.remove("stix");
                    }
                    w.write_all(if n == 0 { b"\n" } else { b",\n" })?;
                    serde_json::to_writer(&mut w, &it)?;
                }
                ExportFormat::Csv => {
                    let cats: Vec<&str> = it["categories"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    writeln!(
                        w,
                        "{},{},{},{},{},{},{}",
                        it["ip"].as_str().unwrap_or_default(),
                        it["score"],
                        it["first_seen"].as_str().unwrap_or_default(),
                        it["last_seen"].as_str().unwrap_or_default(),
                        it["reports"],
                        it["events"],
                        cats.join(";")
                    )?;
                }
                ExportFormat::Stix => {
                    if !it["stix"].is_null() {
                        w.write_all(b",\n")?;
                        serde_json::to_writer(&mut w, &it["stix"])?;
                    }
                }
            }
            n += 1;
        }
        progress.update(0, n);
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    match format {
        ExportFormat::Json => w.write_all(b"\n]\n")?,
        ExportFormat::Csv => {}
        ExportFormat::Stix => w.write_all(b"\n]}\n")?,
    }
    w.flush()?;
    drop(w);
    let elapsed = progress.finish();
    if let (Some(tmp), Some(p)) = (tmp, output) {
        std::fs::rename(&tmp, p).with_context(|| format!("cannot create {}", p.display()))?;
        eprintln!(
            "{n} indicators exported to {} in {:.1}s",
            p.display(),
            elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// Asks the server (or the offline services) to write the backup: the
/// file is written where the database is read, in one read transaction.
pub async fn backup(conn: &mut Conn, file: &Path, out: &Output) -> anyhow::Result<()> {
    let abs = std::path::absolute(file).with_context(|| format!("bad path {}", file.display()))?;
    let progress = Progress::spinner(format!("writing {}", abs.display()));
    let r = conn
        .ok(AdminRequest::Backup {
            path: abs.display().to_string(),
        })
        .await;
    let elapsed = progress.finish();
    let r = r?;
    if out.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "backup written to {} ({} entries in {} tables, {} bytes, schema v{}, {}) in {:.1}s",
            abs.display(),
            r["entries"],
            r["tables"].as_array().map_or(0, Vec::len),
            r["bytes"],
            r["schema_version"],
            if conn.online() { "online" } else { "offline" },
            elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// Replaces the database with a verified backup; refused while a server runs.
pub async fn restore(
    dir: &DataDir,
    file: &Path,
    verify_only: bool,
    out: &Output,
) -> anyhow::Result<()> {
    let file = file.to_path_buf();
    if verify_only {
        let s = tokio::task::spawn_blocking(move || crate::store::backup::verify(&file))
            .await?
            .map_err(|e| anyhow::anyhow!("{}", operator::backup_error(e)))?;
        print_summary(&s, "backup verified", out)?;
        return Ok(());
    }
    let lock = stopped(dir, "restoring").await?;
    let (db, key) = (dir.db(), dir.secret_key());
    let progress = Progress::spinner("restoring");
    let r = tokio::task::spawn_blocking(move || crate::store::backup::restore(&file, &db, &key))
        .await?;
    progress.finish();
    drop(lock);
    let s =
        r.map_err(|e| anyhow::anyhow!("{} (nothing was changed)", operator::backup_error(e)))?;
    print_summary(&s, "database restored", out)
}

/// The data dir's lock, for work on the database file itself; refused
/// while a server runs on it (`doing`: what would need it stopped).
async fn stopped(dir: &DataDir, doing: &str) -> anyhow::Result<crate::datadir::DirLock> {
    if crate::admin::client::Client::connect(&dir.socket())
        .await?
        .is_some()
    {
        bail!(
            "a sikker server is running on {}; stop it before {doing}",
            dir.root().display()
        );
    }
    match dir.lock() {
        Ok(l) => Ok(l),
        Err(DataDirError::AlreadyRunning { path }) => {
            bail!("a sikker server holds {path}; stop it before {doing}")
        }
        Err(e) => Err(e.into()),
    }
}

/// `bytes` in megabytes with one decimal, e.g. "476.1 MB".
pub fn megabytes(bytes: u64) -> String {
    let tenths = bytes.saturating_add(50_000) / 100_000;
    format!("{}.{} MB", tenths / 10, tenths % 10)
}

/// `sikker admin compact`: moves the database's pages to the front of its
/// file and gives the free rest back to the file system (the server must be
/// stopped). Interrupted, it leaves a valid file.
pub async fn compact(dir: &DataDir, cache_bytes: usize, out: &Output) -> anyhow::Result<()> {
    let lock = stopped(dir, "compacting").await?;
    let db = dir.db();
    if !db.exists() {
        bail!("{} holds no database yet", dir.root().display());
    }
    let progress = Progress::spinner("compacting");
    let started = Instant::now();
    let r = tokio::task::spawn_blocking(move || {
        crate::store::Store::open_with_cache(&db, cache_bytes)?
            .store
            .compact()
    })
    .await?;
    progress.finish();
    drop(lock);
    let c = r.map_err(|e| anyhow::anyhow!("{e}"))?;
    let secs = started.elapsed().as_secs_f64();
    if out.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "before": c.before,
                "after": c.after,
                "seconds": (secs * 10.0).round() / 10.0,
            }))?
        );
    } else {
        println!(
            "database compacted in {secs:.1} s: {} → {} ({} given back; the tables hold {})",
            megabytes(c.before.file_bytes),
            megabytes(c.after.file_bytes),
            megabytes(c.before.file_bytes.saturating_sub(c.after.file_bytes)),
            megabytes(c.after.table_bytes)
        );
    }
    Ok(())
}

fn print_summary(
    s: &crate::store::backup::Summary,
    what: &str,
    out: &Output,
) -> anyhow::Result<()> {
    if out.json {
        println!("{}", serde_json::to_string_pretty(s)?);
    } else {
        println!(
            "{what}: {} entries in {} tables, schema v{} (this sikker: v{}), taken {}",
            s.entries,
            s.tables.len(),
            s.schema_version,
            crate::store::migrate::CURRENT,
            crate::domain::UnixMillis(s.created_ms).rfc3339()
        );
    }
    Ok(())
}
