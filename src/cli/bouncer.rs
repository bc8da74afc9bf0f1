//! `sikker bouncer`: keeps an nftables or ipset set in sync with a sikker
//! server's block list, polling with `If-None-Match` and applying only the
//! addresses added and removed since the last poll.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::bouncer::{Backend, Delta, Family, Target, parse_plain, valid_name};

/// Options of `sikker bouncer` (flags and SIKKER_BOUNCER_* variables).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Bouncer options")]
pub struct BouncerArgs {
    /// Base URL of the sikker server, e.g. https://rep.example.net (required).
    #[arg(long, env = "SIKKER_BOUNCER_URL", value_name = "URL", value_parser = super::sensor::parse_server)]
    pub url: String,

    /// API key whose block-list quota the polls use (required; prefer the env var over the flag).
    #[arg(
        long,
        env = "SIKKER_BOUNCER_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub key: String,

    /// Set name; nftables gets <SET>4 and <SET>6, ipset <SET> and <SET>6.
    #[arg(long, env = "SIKKER_BOUNCER_SET", value_name = "SET", default_value = "sikker_block", value_parser = valid_name)]
    pub set: String,

    /// Firewall tool holding the set.
    #[arg(
        long,
        env = "SIKKER_BOUNCER_BACKEND",
        value_name = "BACKEND",
        default_value = "nft"
    )]
    pub backend: Backend,

    /// nftables table family (inet holds both IPv4 and IPv6).
    #[arg(
        long,
        env = "SIKKER_BOUNCER_FAMILY",
        value_name = "FAMILY",
        default_value = "inet"
    )]
    pub family: Family,

    /// nftables table name.
    #[arg(long, env = "SIKKER_BOUNCER_TABLE", value_name = "TABLE", default_value = "sikker", value_parser = valid_name)]
    pub table: String,

    /// Time between polls; an unchanged list costs no quota (304 Not Modified).
    #[arg(long, env = "SIKKER_BOUNCER_INTERVAL", value_name = "DURATION", default_value = "60s", value_parser = super::sensor::parse_duration)]
    pub interval: Duration,

    /// Lowest confidence (1-100) an address needs to be blocked.
    #[arg(long, env = "SIKKER_BOUNCER_SCORE_MINIMUM", value_name = "N", default_value = "50",
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub score_minimum: u8,

    /// Cap the list at N entries (1-10000000), highest confidence first; with --collapse the cap counts merged networks (default: no cap).
    #[arg(long, env = "SIKKER_BOUNCER_MAX_ENTRIES", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub max_entries: Option<u64>,

    /// Merge adjacent addresses into the fewest exact CIDRs; sets then hold networks (hash:net, nft interval sets) (default: off).
    #[arg(long, env = "SIKKER_BOUNCER_COLLAPSE")]
    pub collapse: bool,

    /// List IPv6 attackers as their /N network (32-128), with allowlisted addresses cut out (default: off, one entry per address).
    #[arg(long, env = "SIKKER_BOUNCER_IPV6_PREFIX", value_name = "N",
          value_parser = clap::value_parser!(u8).range(32..=128))]
    pub ipv6_prefix: Option<u8>,

    /// Print the nft/ipset commands instead of running them.
    #[arg(long, env = "SIKKER_BOUNCER_DRY_RUN")]
    pub dry_run: bool,

    /// Poll once, apply, and exit (for cron or a systemd timer).
    #[arg(long, env = "SIKKER_BOUNCER_ONCE")]
    pub once: bool,

    /// PEM certificate to trust for the server, e.g. its DATA_DIR/tls/self-signed.crt; system roots otherwise.
    #[arg(long, env = "SIKKER_BOUNCER_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Log filter (tracing syntax).
    #[arg(
        long,
        env = "SIKKER_BOUNCER_LOG",
        value_name = "FILTER",
        default_value = "info"
    )]
    pub log: String,
}

/// What the bouncer holds between polls.
struct State {
    etag: Option<String>,
    /// What the set holds; None until the first successful apply.
    applied: Option<BTreeSet<IpNet>>,
}

pub async fn run(args: BouncerArgs) -> anyhow::Result<()> {
    let ca = match &args.ca_file {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("cannot read --ca-file {}", p.display()))?,
        ),
        None => None,
    };
    let client = crate::sensor::shipper::client(ca.as_deref())?;
    let target = Target {
        backend: args.backend,
        family: args.family,
        table: args.table.clone(),
        set: args.set.clone(),
        networks: args.collapse || args.ipv6_prefix.is_some(),
    };
    let url = list_url(&args);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut state = State {
        etag: None,
        applied: None,
    };
    loop {
        match poll(&client, &url, &args, &target, &mut state).await {
            Ok(()) => {}
            Err(e) if args.once => return Err(e),
            Err(e) => tracing::error!(error = format!("{e:#}"), "poll failed; retrying"),
        }
        if args.once {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}

/// The block-list request: plaintext, with the sizing options passed on.
fn list_url(args: &BouncerArgs) -> String {
    let mut url = format!(
        "{}/v1/key/blacklist?plaintext=true&scoreMinimum={}",
        args.url, args.score_minimum
    );
    if let Some(n) = args.max_entries {
        let _ = write!(url, "&maxEntries={n}");
    }
    if args.collapse {
        url.push_str("&collapse=true");
    }
    if let Some(n) = args.ipv6_prefix {
        let _ = write!(url, "&ipv6Prefix={n}");
    }
    url
}

async fn poll(
    client: &reqwest::Client,
    url: &str,
    args: &BouncerArgs,
    target: &Target,
    state: &mut State,
) -> anyhow::Result<()> {
    // A list compresses about twofold (plaintext), which a bouncer far
    // from its server gains on every change.
    let mut req = client
        .get(url)
        .bearer_auth(&args.key)
        .header(reqwest::header::ACCEPT_ENCODING, "gzip");
    if let (Some(tag), Some(_)) = (&state.etag, &state.applied) {
        req = req.header(reqwest::header::IF_NONE_MATCH, tag);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.url))?;
    if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
        tracing::debug!("block list unchanged");
        if args.dry_run {
            report("# unchanged (304 Not Modified)\n")?;
        }
        return Ok(());
    }
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        bail!("the server answered {status}: {}", body.trim());
    }
    let etag = resp
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let gzipped = resp
        .headers()
        .get(reqwest::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let bytes = resp.bytes().await.context("cannot read the block list")?;
    let body = if gzipped {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
            .context("cannot decompress the block list")?;
        text
    } else {
        String::from_utf8(bytes.to_vec()).context("the block list is not UTF-8 text")?
    };
    let new = parse_plain(&body).map_err(anyhow::Error::msg)?;
    // The first poll after start empties the sets and fills them anew.
    let (script, delta) = if let Some(old) = &state.applied {
        let d = Delta::between(old, &new);
        (target.delta_script(&d), d)
    } else {
        let d = Delta::between(&BTreeSet::new(), &new);
        (target.setup_script() + &target.delta_script(&d), d)
    };
    let summary = format!(
        "# {} listed, {} added, {} removed\n",
        new.len(),
        delta.add.len(),
        delta.remove.len()
    );
    if args.dry_run {
        report(&(summary + &script))?;
    } else if !script.is_empty() {
        apply(target, &script).await?;
        tracing::info!(
            listed = new.len(),
            added = delta.add.len(),
            removed = delta.remove.len(),
            "firewall set updated"
        );
    }
    state.applied = Some(new);
    state.etag = etag;
    Ok(())
}

fn report(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Runs the script through `nft -f -` or `ipset restore` as one batch.
async fn apply(target: &Target, script: &str) -> anyhow::Result<()> {
    let (program, args) = target.command();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
