//! `nw trust`: evaluates a certificate chain — a server's, by connecting, or one in a file —
//! and prints the chain and every failed check, certificate by certificate. Exit 0 only when
//! the chain is trusted.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nw_connection::Endpoint;
use nw_connection::happy_eyeballs::Config as RaceConfig;
use nw_connection::{Parameters, SystemResolver, connect};
use nw_connection::{crypto, tls};
use nw_trust::TrustVerifier;
use nw_trust::evaluate;
use nw_trust::revocation::{Mode, Revocation};
use nw_trust::{Anchor, AnchorClass, CtRequirement, Evaluation, Options, Policy, Verdict};

use crate::{Outcome, UsageError};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 trusted, 1 not trusted (or not reached), 2 usage, 3 environment.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Option<TrustCommand>,
    /// HOST:PORT or a URL to connect to and evaluate (omit with --chain).
    #[arg(required_unless_present = "chain", conflicts_with = "chain")]
    target: Option<String>,
    /// Evaluate the chain in this PEM file instead (leaf first, then what was presented).
    #[arg(long, value_name = "FILE", requires = "host")]
    chain: Option<PathBuf>,
    /// The name (or IP literal) the certificate must be for; with a target, the target's host.
    #[arg(long, value_name = "NAME")]
    host: Option<String>,
    /// Evaluate at this time instead of now (RFC 3339, e.g. 2026-01-01T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Custom anchors (PEM, repeatable): the application's own, in place of the system store.
    #[arg(long, value_name = "FILE")]
    anchor: Vec<PathBuf>,
    /// Judge a client certificate (TLS client policy; no host name check).
    #[arg(long, conflicts_with = "target")]
    client: bool,
    #[command(flatten)]
    ct: CtArgs,
    /// Revocation: fetch the CRLs the chain's distribution points name (http://, cached until
    /// their nextUpdate); `soft` lets an unreachable list pass, `hard` fails it.
    #[arg(long, value_enum, default_value_t = RevocationArg::Soft)]
    revocation: RevocationArg,
    /// Print the evaluation as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
enum TrustCommand {
    /// Fetch the Certificate Transparency log list Chrome uses, check its signature, and keep
    /// it where every nw command finds it (CT is enforced while it is at most 70 days old).
    UpdateLogList(UpdateArgs),
}

#[derive(Debug, clap::Args)]
struct UpdateArgs {
    /// Where the list is published (v3 JSON); its signature is looked for beside it, with the
    /// extension `.sig`. Plain http:// is fine: the signature is what is trusted.
    #[arg(long, value_name = "URL", default_value = nw_trust::ct::GOOGLE_LOG_LIST_URL)]
    from: String,
    /// The signature's URL, when it is not the list's with `.sig`.
    #[arg(long, value_name = "URL")]
    signature: Option<String>,
    /// The key the list is signed with (PEM public key); Google's published key by default.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Write the list here instead of the state directory ($XDG_STATE_HOME/nwkit/ct/).
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

/// The most a published list may weigh (it is about 100 KiB), and its signature.
const LIST_LIMIT: usize = 16 << 20;
const SIGNATURE_LIMIT: usize = 4096;

async fn update_log_list(args: UpdateArgs) -> anyhow::Result<Outcome> {
    let key = match &args.key {
        Some(path) => {
            let bytes = nw_trust::read_limited(path, 64 << 10, "key")
                .map_err(|e| UsageError(format!("--key {}: {e}", path.display())))?;
            String::from_utf8(bytes)
                .map_err(|_| UsageError(format!("--key {}: not a PEM file", path.display())))?
        }
        None => nw_trust::ct::GOOGLE_LOG_LIST_KEY.to_owned(),
    };
    let signature_url = match &args.signature {
        Some(url) => url.clone(),
        None => match args.from.strip_suffix(".json") {
            Some(stem) => format!("{stem}.sig"),
            None => {
                return Err(UsageError(format!(
                    "--from {}: cannot tell where its signature is (it does not end in .json); give --signature URL",
                    args.from
                ))
                .into());
            }
        },
    };
    // The signature is what is trusted, so plain HTTP mirrors work.
    let config = nw_transfer::Configuration {
        allow_http: true,
        request_timeout: Duration::from_secs(30),
        ..nw_transfer::Configuration::default()
    };
    let session = nw_transfer::Session::ephemeral(config)?;
    let fetch = |url: String, limit: usize| {
        let session = &session;
        async move {
            let data =
                session.data(&url, limit).await.map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
            if data.status != 200 {
                anyhow::bail!("{url}: the server answered {}", data.status);
            }
            Ok(data.body)
        }
    };
    let fetched = async {
        let list = fetch(args.from.clone(), LIST_LIMIT).await?;
        let signature = fetch(signature_url.clone(), SIGNATURE_LIMIT).await?;
        nw_trust::ct::verify_signature(&list, &signature, &key)
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.from))?;
        nw_trust::ct::LogList::from_json(&list)
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.from))?;
        anyhow::Ok((list, signature))
    };
    let (list, signature) = match fetched.await {
        Ok(fetched) => fetched,
        Err(e) => {
            crate::output::error_line(&format!(
                "nw trust: {e}; nothing was saved{}",
                if nw_trust::ct::installed().is_some() { ", the list in place stays" } else { "" }
            ));
            return Ok(Outcome::Negative);
        }
    };
    let path = args.output.clone().unwrap_or_else(nw_trust::ct::saved_path);
    // Written and fsynced off the runtime.
    let target = path.clone();
    let saved =
        tokio::task::spawn_blocking(move || nw_trust::ct::save(&list, &signature, &key, &target))
            .await??;
    let usable = saved.logs.iter().filter(|l| l.state == nw_trust::ct::LogState::Usable).count();
    crate::output::line(&format!(
        "Saved the CT log list of {} ({} logs, {usable} usable; signature checked) to {}",
        nw_trust::time::rfc3339(saved.timestamp),
        saved.logs.len(),
        path.display()
    ))?;
    let age = saved.age_days(now());
    if age > nw_trust::ct::STALE_AFTER_DAYS {
        crate::output::error_line(&format!(
            "nw trust: that list is already {age} days old, so CT stays unenforced; is the mirror current?"
        ));
    }
    Ok(Outcome::Success)
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    if let Some(TrustCommand::UpdateLogList(update)) = args.command {
        return update_log_list(update).await;
    }
    let at = match &args.at {
        Some(text) => Some(
            nw_trust::time::parse_rfc3339(text).map_err(|e| UsageError(format!("--at: {e}")))?,
        ),
        None => None,
    };
    let options = options(&args.anchor, &args.ct, false)?;
    let revocation = match args.revocation {
        RevocationArg::Off => None,
        RevocationArg::Soft => Some(Revocation::http()),
        RevocationArg::Hard => Some(Revocation { mode: Mode::HardFail, ..Revocation::http() }),
    };
    let evaluation = match (&args.chain, &args.target) {
        (Some(file), _) => {
            let chain =
                nw_trust::load_pem(file).map_err(|e| UsageError(format!("--chain: {e}")))?;
            let policy = if args.client { Policy::Client } else { Policy::Server };
            let host = if args.client { None } else { args.host.as_deref() };
            let at = at.unwrap_or_else(now);
            let options = Options { policy, ..options };
            let options = match &revocation {
                Some(r) => r.prepare(&chain, at, &options),
                None => options,
            };
            evaluate(&chain, host, at, &options).map_err(|e| UsageError(format!("--chain: {e}")))?
        }
        (None, Some(target)) => match online(target, &args, options, at, revocation).await? {
            Some(e) => e,
            None => return Ok(Outcome::Negative),
        },
        (None, None) => {
            return Err(UsageError("give HOST:PORT, or --chain FILE --host NAME".into()).into());
        }
    };
    print(&evaluation, args.json);
    Ok(if evaluation.trusted() { Outcome::Success } else { Outcome::Negative })
}

/// The anchors — custom files, and the system store when there are none or `with_system` —
/// and the CT requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RevocationArg {
    Off,
    Soft,
    Hard,
}

/// Certificate Transparency settings, shared by `nw trust` and `nw cat`.
#[derive(Debug, clap::Args)]
pub(crate) struct CtArgs {
    /// The CT log list (v3 JSON, as published at www.gstatic.com/ct/log_list/v3/log_list.json)
    /// that SCTs of system-anchored chains are checked against; by default the one `nw trust
    /// update-log-list` saved. With none, or one more than 70 days old, CT is not enforced and
    /// `nw trust` says so.
    #[arg(long, value_name = "FILE", env = "NW_CT_LOG_LIST")]
    pub(crate) ct_log_list: Option<PathBuf>,
    /// Do not require Certificate Transparency for system-anchored chains.
    #[arg(long, conflicts_with = "ct_log_list")]
    pub(crate) no_ct: bool,
}

/// Every certificate in `files` (PEM) as a custom anchor; a bad file is a usage error naming
/// `flag`.
pub(crate) fn custom_anchors(files: &[PathBuf], flag: &str) -> anyhow::Result<Vec<Anchor>> {
    let mut anchors = Vec::new();
    for file in files {
        let certs = nw_trust::load_pem(file).map_err(|e| UsageError(format!("{flag}: {e}")))?;
        anchors.extend(certs.into_iter().map(|der| Anchor { der, class: AnchorClass::Custom }));
    }
    Ok(anchors)
}

pub(crate) fn options(
    anchor_files: &[PathBuf],
    ct_args: &CtArgs,
    with_system: bool,
) -> anyhow::Result<Options> {
    let mut anchors = custom_anchors(anchor_files, "--anchor")?;
    if anchors.is_empty() || with_system {
        match nw_trust::system_anchors() {
            Ok(system) => anchors.extend(system),
            // Custom anchors alone still work; with none at all, say what is missing.
            Err(e) if anchors.is_empty() => return Err(e.into()),
            Err(e) => tracing::debug!("{e}"),
        }
    }
    let ct = if ct_args.no_ct { CtRequirement::Off } else { CtRequirement::SystemAnchored };
    let log_list = match &ct_args.ct_log_list {
        Some(path) => {
            let list = nw_trust::ct::LogList::from_file(path)
                .map_err(|e| UsageError(format!("--ct-log-list {e}")))?;
            Some(Arc::new(list))
        }
        None if ct_args.no_ct => None,
        None => installed_log_list(),
    };
    Ok(Options { anchors, ct, log_list, ..Options::default() })
}

/// The log list `nw trust update-log-list` saved (or a packaged one), read once per process
/// (the one default trust uses everywhere). One that cannot be read is said, and left out: CT
/// then goes unenforced, as with none.
fn installed_log_list() -> Option<Arc<nw_trust::ct::LogList>> {
    if let Some(e) = nw_trust::ct::shared_problem() {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            crate::output::error_line(&format!(
                "nw: ignoring the installed CT log list, {e}; `nw trust update-log-list` fetches a good one"
            ));
        });
    }
    nw_trust::ct::shared()
}

/// Connects with the evaluator as the TLS verifier and returns its evaluation, trusted or not.
async fn online(
    target: &str,
    args: &Args,
    options: Options,
    at: Option<i64>,
    revocation: Option<Revocation>,
) -> anyhow::Result<Option<Evaluation>> {
    let endpoint = Endpoint::parse(target).map_err(|e| UsageError(e.to_string()))?;
    let mut verifier = TrustVerifier::new(options, crypto::provider()).at(at);
    if let Some(r) = revocation {
        verifier = verifier.with_revocation(r);
    }
    let verifier = Arc::new(verifier);
    let tls =
        tls::ClientOptions { verifier: Some(verifier.clone()), ..tls::ClientOptions::default() }
            .config()?;
    let params = Parameters {
        race: RaceConfig { timeout: Duration::from_secs(15), ..RaceConfig::default() },
        tls: Some(tls),
        server_name: args.host.clone(),
        ..Parameters::default()
    };
    let result = connect(
        &endpoint.host(),
        endpoint.port(),
        &params,
        Arc::new(SystemResolver::from_system()),
    )
    .await;
    match (verifier.last(), result) {
        (Some(evaluation), _) => Ok(Some(evaluation)),
        (None, Ok(_)) => Ok(None), // cannot happen: a TLS connection was verified
        (None, Err(e)) => {
            crate::output::error_line(&format!("nw trust: {e}"));
            Ok(None)
        }
    }
}

fn print(e: &Evaluation, json: bool) {
    if json {
        if let Ok(text) = serde_json::to_string(e) {
            let _ = crate::output::line(&text);
        }
        return;
    }
    let _ = crate::output::line(&format!("Chain (verify time {}):", nw_trust::time::rfc3339(e.at)));
    for c in &e.certificates {
        let f = &c.facts;
        let role = match (c.anchor, e.anchor_class) {
            (true, Some(AnchorClass::System)) => " — anchor (system)".to_owned(),
            (true, Some(AnchorClass::Custom)) => " — anchor (custom)".to_owned(),
            (true, Some(AnchorClass::UserAdded)) => " — anchor (user-added)".to_owned(),
            _ => String::new(),
        };
        let sans: Vec<String> = f
            .dns_names
            .iter()
            .cloned()
            .chain(f.ip_addresses.iter().map(ToString::to_string))
            .collect();
        let _ = crate::output::line(&format!("  {} “{}”{role}", c.index, f.name));
        let _ = crate::output::line(&format!(
            "      issued by {} · valid {} → {} · {}{}",
            f.issuer,
            &nw_trust::time::rfc3339(f.not_before)[..10],
            &nw_trust::time::rfc3339(f.not_after)[..10],
            f.key,
            if sans.is_empty() { String::new() } else { format!(" · SAN {}", sans.join(", ")) }
        ));
    }
    let verdict = match e.verdict {
        Verdict::Proceed if e.excepted => {
            "proceed (an exception for this leaf accepts its failures)"
        }
        Verdict::Proceed => "proceed",
        Verdict::RecoverableFailure => "recoverable failure",
        Verdict::FatalFailure => "fatal failure",
    };
    let _ = crate::output::line(&format!("Verdict: {verdict}"));
    for note in &e.notes {
        let _ = crate::output::line(&format!(
            "Note: {note}; `nw trust update-log-list` fetches the current list"
        ));
    }
    for c in e.certificates.iter().filter(|c| !c.problems.is_empty()) {
        let _ = crate::output::line(&c.to_string());
        for p in &c.problems {
            let _ = crate::output::line(&format!("    {}: {}", p.sentence(), p.detail()));
        }
    }
}

/// Now, in Unix seconds: the default verify time, and when `nw cert` certificates start.
#[allow(clippy::disallowed_methods, reason = "the front end is where the clock is read")]
pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
