//! `nw condition`: runs a client command across a conditioned link (nw-conditioner) to an
//! optional server command, then tears everything down.
//!
//! Two lab namespaces are joined by the link; the server command (through `sh -c`) runs in
//! the far one, the client command in the near one, each with `NW_SELF` (its own address) and
//! `NW_PEER` (the other side's). Every setting applies to each direction unless an `--up-*` or
//! `--down-*` form says otherwise. When the client exits, the link's counters go to stderr and
//! nw exits with the client's status — or 125 when nw itself failed.

use std::process::Stdio;
use std::time::Duration;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use nw_conditioner::control::{self, Patch, Request};
use nw_conditioner::{ConditionedLink, FAR_V4, NEAR_V4};
use nw_conditioner::{Faults, Proxy, ProxyConfig};
use nw_conditioner::{LinkCounters, Profile, QueueLimit};

use crate::{Outcome, UsageError};

/// nw's own failure, as `env`, `nice` and `timeout` report theirs.
const EXIT_NW_FAILED: u8 = 125;

const UP: &str = "up (client → server)";
const DOWN: &str = "down (server → client)";

#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Units: durations 50ms, 1.5s, 200us; rates 10mbit, 256kbit, 1gbit, 9600bit; loss 1% or 0.5%; queue 100 (packets) or 64kb (bytes, 1 kb = 1024).\nWhile it runs, `nw condition set --delay 200ms` (from the client, the server or any shell given NW_CONDITION) changes the link from the next packet on, and `nw condition show` prints its state.\nExit status: the client's; 127 (126) when the client is not found (not executable), as a shell says; 125 when nw failed (no root, no TUN); 2 for usage."
)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    settings: Settings,
    /// Seed of the loss and jitter draws (the same seed, the same run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A server to run in the far namespace (through sh -c), for as long as the client runs.
    #[arg(long, value_name = "CMD")]
    server: Option<String>,
    /// Where to put the control socket (default: a new directory under $TMPDIR); both
    /// commands get its path in NW_CONDITION.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Print the counters as one JSON object.
    #[arg(long)]
    json: bool,
    /// Without namespaces or root: a proxy on loopback to this address conditions TCP (or
    /// UDP, with --udp); the client connects to NW_PROXY instead, and the server command, if
    /// any, runs on this host.
    #[arg(long, value_name = "HOST:PORT")]
    proxy: Option<SocketAddr>,
    /// Where the proxy listens (default 127.0.0.1 on a free port).
    #[arg(long, value_name = "ADDR:PORT", requires = "proxy")]
    listen: Option<SocketAddr>,
    /// Proxy UDP datagrams instead of TCP connections (loss applies to UDP only).
    #[arg(long, requires = "proxy")]
    udp: bool,
    /// Proxy fault: reset each TCP connection once this many bytes went to the client (0: at
    /// once).
    #[arg(long, value_name = "BYTES", requires = "proxy", value_parser = bytes)]
    reset_after: Option<u64>,
    /// Proxy fault: stop passing anything, either way, once this many bytes went to the
    /// client, and hold the connection open (0: accept and never answer).
    #[arg(long, value_name = "BYTES", requires = "proxy", value_parser = bytes)]
    stall_after: Option<u64>,
    /// Proxy fault: hold each close (FIN) this long before passing it on.
    #[arg(long, value_name = "DURATION", requires = "proxy", value_parser = duration)]
    slow_close: Option<Duration>,
    /// The client command, run in the near namespace.
    #[arg(last = true, required = true, value_name = "CLIENT_CMD")]
    client: Vec<String>,
}

/// Talking to a running `nw condition`.
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Change a running link's conditions from the next packet on; what is not given stays.
    Set(Box<SetArgs>),
    /// Print a running link's conditions and counters.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
struct SetArgs {
    #[command(flatten)]
    settings: Settings,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// The running link's control socket.
    #[arg(long, env = "NW_CONDITION", value_name = "PATH")]
    control: PathBuf,
    /// Print the state as one JSON object.
    #[arg(long)]
    json: bool,
}

/// The link's conditions, as flags.
#[derive(Debug, clap::Args)]
struct Settings {
    /// Start from a named preset (3g, 3g-slow, edge, 2g, lte, dsl, cable, fios, wifi,
    /// very-bad-network, 100-loss, high-latency-dns); the flags below override it.
    #[arg(long, value_name = "NAME", value_parser = preset)]
    preset: Option<nw_conditioner::Preset>,
    /// One-way delay, each direction (so 50ms gives a 100 ms round trip).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    delay: Option<Duration>,
    /// Delay variation: each packet's delay varies uniformly within ± this.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    jitter: Option<Duration>,
    /// Rate limit (`unlimited` removes it).
    #[arg(long, value_name = "RATE", value_parser = rate)]
    rate: Option<u64>,
    /// Random loss (uniform).
    #[arg(long, value_name = "PERCENT", value_parser = percent)]
    loss: Option<f64>,
    /// Queue in front of the rate limit: packets, or bytes with a unit.
    #[arg(long, value_name = "SIZE", value_parser = queue)]
    queue: Option<QueueLimit>,
    /// Extra delay for DNS packets only (port 53).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    dns_delay: Option<Duration>,
    /// Near → far only: overrides --delay.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    up_delay: Option<Duration>,
    /// Far → near only: overrides --delay.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    down_delay: Option<Duration>,
    /// Near → far only: overrides --rate.
    #[arg(long, value_name = "RATE", value_parser = rate)]
    up_rate: Option<u64>,
    /// Far → near only: overrides --rate.
    #[arg(long, value_name = "RATE", value_parser = rate)]
    down_rate: Option<u64>,
    /// Near → far only: overrides --loss.
    #[arg(long, value_name = "PERCENT", value_parser = percent)]
    up_loss: Option<f64>,
    /// Far → near only: overrides --loss.
    #[arg(long, value_name = "PERCENT", value_parser = percent)]
    down_loss: Option<f64>,
}

impl Settings {
    /// Each direction's change: the preset's whole profile (when one is named), then the
    /// shared settings, then that direction's overrides.
    fn patches(&self) -> (Patch, Patch) {
        let one = |base: Option<&Profile>,
                   delay: Option<Duration>,
                   rate: Option<u64>,
                   loss: Option<f64>| {
            let given = Patch {
                rate_bps: rate.or(self.rate),
                delay_us: delay.or(self.delay).map(control::micros),
                jitter_us: self.jitter.map(control::micros),
                dns_delay_us: self.dns_delay.map(control::micros),
                loss: loss.or(self.loss),
                ..Patch::default()
            }
            .with_queue(self.queue);
            base.map_or_else(Patch::default, Patch::of).then(&given)
        };
        let preset = self.preset.as_ref();
        (
            one(preset.map(|p| &p.up), self.up_delay, self.up_rate, self.up_loss),
            one(preset.map(|p| &p.down), self.down_delay, self.down_rate, self.down_loss),
        )
    }

    /// Each direction's profile for a new link: the defaults with [`Self::patches`] applied.
    fn profiles(&self) -> Result<(Profile, Profile), UsageError> {
        let (up, down) = self.patches();
        let apply = |p: Patch| p.apply(&Profile::default()).map_err(UsageError);
        Ok((apply(up)?, apply(down)?))
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    match &args.action {
        Some(Action::Set(set)) => {
            let (up, down) = set.settings.patches();
            if up.is_empty() && down.is_empty() {
                return Err(UsageError(
                    "nothing to set: give --delay, --rate, --loss, --queue, a preset or a per-direction form".into(),
                )
                .into());
            }
            return show(&set.show, &Request::Set { up, down });
        }
        Some(Action::Show(args)) => return show(args, &Request::Show {}),
        None => {}
    }
    let (up, down) = args.settings.profiles()?;
    let (program, _) = client(&args)?;
    if let Err((code, why)) = runnable(program) {
        crate::output::error_line(&format!("nw condition: {why}"));
        return Ok(Outcome::Exit(code));
    }
    let outcome = match args.proxy {
        Some(target) => through_proxy(&args, target, up, down).await,
        None => condition(&args, up, down).await,
    };
    match outcome {
        Ok(outcome) => Ok(outcome),
        Err(e) if e.downcast_ref::<UsageError>().is_some() => Err(e),
        Err(e) => {
            crate::output::error_line(&format!("nw condition: {}", crate::output::error_text(&e)));
            Ok(Outcome::Exit(EXIT_NW_FAILED))
        }
    }
}

/// Sends `request` to a running link and prints its state after it.
fn show(args: &ShowArgs, request: &Request) -> anyhow::Result<Outcome> {
    let state = control::request(&args.control, request).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidInput {
            anyhow::Error::new(UsageError(e.to_string()))
        } else {
            anyhow::Error::new(e)
        }
    })?;
    if args.json {
        crate::output::line(&serde_json::to_string(&state)?)?;
    } else {
        for (name, p) in [(UP, &state.up), (DOWN, &state.down)] {
            crate::output::line(&format!("{name}: {}", describe(p)))?;
        }
        for line in counter_lines(&state.counters) {
            crate::output::line(&line)?;
        }
    }
    Ok(Outcome::Success)
}

/// One direction's conditions, in words.
fn describe(p: &Patch) -> String {
    let ms = |us: Option<u64>| {
        #[allow(clippy::cast_precision_loss, reason = "display")]
        let ms = us.unwrap_or(0) as f64 / 1e3;
        format!("{ms} ms")
    };
    let rate = match p.rate_bps {
        None | Some(0) => "unlimited".to_owned(),
        #[allow(clippy::cast_precision_loss, reason = "display")]
        Some(bps) => format!("{} Mbit/s", bps as f64 / 1e6),
    };
    let queue = match (p.queue_packets, p.queue_bytes) {
        (_, Some(bytes)) => format!("{bytes} bytes"),
        (packets, None) => format!("{} packets", packets.unwrap_or(0)),
    };
    format!(
        "delay {}, jitter {}, DNS delay {}, rate {rate}, loss {}%, queue {queue}",
        ms(p.delay_us),
        ms(p.jitter_us),
        ms(p.dns_delay_us),
        p.loss.unwrap_or(0.0) * 100.0
    )
}

fn counter_lines(counters: &LinkCounters) -> Vec<String> {
    [(UP, counters.up), (DOWN, counters.down)]
        .into_iter()
        .map(|(name, c)| {
            format!(
                "{name}: {} enqueued, {} dropped by the queue, {} dropped by loss, {} delivered; queue peak {} packets, {} bytes",
                c.enqueued,
                c.dropped_queue,
                c.dropped_loss,
                c.delivered,
                c.max_queue_packets,
                c.max_queue_bytes
            )
        })
        .collect()
}

fn preset(name: &str) -> Result<nw_conditioner::Preset, String> {
    nw_conditioner::preset(name).ok_or_else(|| {
        let names: Vec<&str> = nw_conditioner::presets().iter().map(|p| p.name).collect();
        format!("no preset {name:?}; there are {}", names.join(", "))
    })
}

async fn condition(args: &Args, up: Profile, down: Profile) -> anyhow::Result<Outcome> {
    let lab = nw_lab::Lab::new()?;
    let near = lab.namespace("near")?;
    let far = lab.namespace("far")?;
    let link = ConditionedLink::start(&near, &far, up, down, args.seed).map_err(|e| {
        anyhow::anyhow!("cannot build the conditioned link: {e} (is /dev/net/tun there?)")
    })?;
    let socket = ControlSocket::new(args.control.as_deref())?;
    let _control = link.control(&socket.path)?;
    // The server runs until the client is done; its guard (and the namespace's) ends it.
    let mut server = match &args.server {
        Some(server) => {
            let mut cmd = far.command("sh");
            cmd.args(["-c", server]).env("NW_SELF", FAR_V4).env("NW_PEER", NEAR_V4);
            cmd.env("NW_CONDITION", &socket.path);
            cmd.stdout(Stdio::null());
            Some(far.spawn(cmd)?)
        }
        None => None,
    };
    let (program, rest) = client(args)?;
    let mut cmd = tokio::process::Command::from(near.command(program));
    cmd.args(rest).env("NW_SELF", NEAR_V4).env("NW_PEER", FAR_V4);
    cmd.env("NW_CONDITION", &socket.path);
    let status = run_client(cmd, program).await?;
    say_if_the_server_ended(server.as_mut());
    let counters = link.counters();
    drop(link);
    drop((near, far));
    finish(args, &counters, &status)
}

/// The mode without root: a proxy on loopback to `target`, the server (if any) and the
/// client on this host.
async fn through_proxy(
    args: &Args,
    target: SocketAddr,
    up: Profile,
    down: Profile,
) -> anyhow::Result<Outcome> {
    let lossy = |p: &Profile| p.loss != nw_conditioner::Loss::None;
    if !args.udp && (lossy(&up) || lossy(&down)) {
        return Err(UsageError(
            "the TCP proxy cannot lose bytes of a stream: loss applies with --udp, or in the namespace mode (without --proxy)".into(),
        )
        .into());
    }
    let faulty = args.reset_after.is_some() || args.stall_after.is_some();
    if args.udp && (faulty || args.slow_close.is_some()) {
        return Err(UsageError(
            "--reset-after, --stall-after and --slow-close are TCP faults; drop --udp".into(),
        )
        .into());
    }
    let faults = Faults {
        reset_after: args.reset_after,
        stall_after: args.stall_after,
        stall_close: None,
        slow_close: args.slow_close.unwrap_or_default(),
    };
    let mut config = ProxyConfig { faults, seed: args.seed, ..ProxyConfig::new(up, down) };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let proxy = if args.udp { Proxy::udp(target, config) } else { Proxy::tcp(target, config) }?;
    let socket = ControlSocket::new(args.control.as_deref())?;
    let _control = proxy.control(&socket.path)?;
    let local = proxy.local_addr().to_string();
    let mut server = match &args.server {
        Some(server) => {
            let mut cmd = std::process::Command::new("sh");
            cmd.args(["-c", server]).env("NW_SELF", target.to_string());
            cmd.env("NW_CONDITION", &socket.path).stdout(Stdio::null());
            // Its own process group: the server and all it started end with the run.
            Some(nw_lab::Child::spawn_group(cmd)?)
        }
        None => None,
    };
    let (program, rest) = client(args)?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(rest).env("NW_PROXY", &local).env("NW_PEER", target.to_string());
    cmd.env("NW_CONDITION", &socket.path);
    let status = run_client(cmd, program).await?;
    say_if_the_server_ended(server.as_mut());
    let counters = proxy.counters();
    drop(proxy);
    finish(args, &counters, &status)
}

fn client(args: &Args) -> Result<(&String, &[String]), UsageError> {
    args.client.split_first().ok_or_else(|| UsageError("give a client command after --".into()))
}

/// A server command that ended before the client was done (it failed to start, its port was
/// taken) is why the client saw nothing: said, with how it ended.
fn say_if_the_server_ended(server: Option<&mut nw_lab::Child>) {
    if let Some(Ok(Some(status))) = server.map(nw_lab::Child::try_wait) {
        crate::output::error_line(&format!(
            "nw condition: the server command ended ({status}) before the client was done"
        ));
    }
}

/// Whether `path` is a regular file someone may execute (following links).
pub(crate) fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether the client's program can be run at all — a path to an executable file, or a name
/// found on PATH — so that one that cannot fails at once with the shell's 127 or 126 and says
/// why, before a link is built (and not as whatever `ip netns exec` exits with).
fn runnable(program: &str) -> Result<(), (u8, String)> {
    if program.contains('/') {
        let path = Path::new(program);
        return match std::fs::metadata(path) {
            Err(_) => {
                Err((127, format!("cannot run the client {program:?}: there is no such file")))
            }
            Ok(_) if !executable(path) => Err((
                126,
                format!("cannot run the client {program:?}: it is not an executable file"),
            )),
            Ok(_) => Ok(()),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| executable(&dir.join(program))) {
        return Ok(());
    }
    Err((127, format!("cannot run the client {program:?}: no such command on PATH")))
}

/// Runs the client to its end; Ctrl-C and SIGTERM go to it while nw stays to tear down.
async fn run_client(
    mut cmd: tokio::process::Command,
    program: &str,
) -> anyhow::Result<std::process::ExitStatus> {
    cmd.stdin(Stdio::inherit());
    let mut child = cmd.spawn().map_err(|e| anyhow::anyhow!("cannot start {program:?}: {e}"))?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            status = child.wait() => return Ok(status?),
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {
                if let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
                    // SAFETY: kill(2) on our own child's pid; no memory involved.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
        }
    }
}

/// Prints the counters on stderr and passes the client's status on.
fn finish(
    args: &Args,
    counters: &LinkCounters,
    status: &std::process::ExitStatus,
) -> anyhow::Result<Outcome> {
    if args.json {
        crate::output::error_line(&serde_json::to_string(counters)?);
    } else {
        for line in counter_lines(counters) {
            crate::output::error_line(&format!("nw condition: {line}"));
        }
    }
    let code = match (status.code(), std::os::unix::process::ExitStatusExt::signal(status)) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(1),
        (None, None) => 1,
    };
    Ok(Outcome::Exit(code))
}

/// Where the control socket lives, and the directory nw made for it (removed on drop).
struct ControlSocket {
    path: PathBuf,
    _dir: Option<nw_lab::Scratch>,
}

impl ControlSocket {
    fn new(given: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(path) = given {
            return Ok(Self { path: path.to_owned(), _dir: None });
        }
        let dir = nw_lab::Scratch::new("condition")?;
        let path = dir.path().join("control.sock");
        // A socket left by an earlier nw with this pid (after a kill -9) is stale.
        let _ = std::fs::remove_file(&path);
        Ok(Self { path, _dir: Some(dir) })
    }
}

fn split_unit(text: &str) -> (&str, &str) {
    let at = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    text.split_at(at)
}

/// The number `digits` at the front of `whole` (named whole in the error: `banana`, not the
/// empty digits in front of it).
fn number(digits: &str, whole: &str, what: &str) -> Result<f64, String> {
    digits
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("{whole:?} is not a {what}"))
}

/// `50ms`, `1.5s`, `200us`.
fn duration(text: &str) -> Result<Duration, String> {
    let (n, unit) = split_unit(text.trim());
    let n = number(n, text, "duration")
        .map_err(|e| format!("{e}: give a number and a unit: 50ms, 1.5s, 200us"))?;
    let secs = match unit {
        "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        _ => return Err(format!("{text:?}: give a duration with a unit: 50ms, 1.5s, 200us")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} is out of range"))
}

/// `10mbit`, `256kbit`, `1gbit`, `9600bit` (bits per second, 1 kbit = 1000 bit);
/// `unlimited` is 0.
fn rate(text: &str) -> Result<u64, String> {
    if text.trim().eq_ignore_ascii_case("unlimited") {
        return Ok(0);
    }
    let (n, unit) = split_unit(text.trim());
    let n = number(n, text, "rate")
        .map_err(|e| format!("{e}: give a number and a unit: 10mbit, 256kbit, 1gbit"))?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => return Err(format!("{text:?}: give a rate with a unit: 10mbit, 256kbit, 1gbit")),
    };
    let bps = n * scale;
    if !(1.0..=1e12).contains(&bps) {
        return Err(format!("{text:?} is out of range (1 bit/s to 1 Tbit/s)"));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "checked range")]
    Ok(bps as u64)
}

/// `1%`, `0.5%` (a percentage from 0 to 100).
fn percent(text: &str) -> Result<f64, String> {
    let n =
        text.trim().strip_suffix('%').ok_or_else(|| format!("{text:?}: give a percentage: 1%"))?;
    let n = number(n, text, "percentage")?;
    if n > 100.0 {
        return Err(format!("{text:?} is more than 100%"));
    }
    Ok(n / 100.0)
}

/// `100` packets, or bytes: `64kb`, `1mb`, `1500b`.
fn queue(text: &str) -> Result<QueueLimit, String> {
    if let Ok(count) = text.trim().parse::<usize>() {
        return Ok(QueueLimit::Packets(count));
    }
    let n =
        bytes(text).map_err(|_| format!("{text:?}: give packets (100) or bytes (64kb, 1mb)"))?;
    usize::try_from(n).map(QueueLimit::Bytes).map_err(|_| format!("{text:?} is too large"))
}

/// Bytes: `100000`, `1500b`, `64kb`, `5mb`, `1gb` (1 kb = 1024).
fn bytes(text: &str) -> Result<u64, String> {
    let (n, unit) = split_unit(text.trim());
    let count = n.parse::<u64>().map_err(|_| format!("{text:?}: give bytes: 100000, 64kb, 5mb"))?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        _ => return Err(format!("{text:?}: give bytes: 100000, 64kb, 5mb")),
    };
    count.checked_mul(scale).ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_or_say_what_to_write() {
        assert_eq!(duration("50ms"), Ok(Duration::from_millis(50)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("200us"), Ok(Duration::from_micros(200)));
        assert!(duration("50").unwrap_err().contains("unit"));
        assert!(duration("-5ms").is_err());
        assert_eq!(rate("10mbit"), Ok(10_000_000));
        assert_eq!(rate("256kbit"), Ok(256_000));
        assert!(rate("10mbps").unwrap_err().contains("10mbit"));
        assert!(rate("0bit").is_err());
        assert_eq!(rate("unlimited"), Ok(0));
        assert_eq!(percent("1%"), Ok(0.01));
        assert!(percent("150%").unwrap_err().contains("100%"));
        assert!(percent("1").unwrap_err().contains("percentage"));
        assert_eq!(queue("100"), Ok(QueueLimit::Packets(100)));
        assert_eq!(queue("64kb"), Ok(QueueLimit::Bytes(65_536)));
        assert!(queue("64 kb").is_err() && queue("many").is_err());
        assert_eq!(bytes("5mb"), Ok(5 << 20));
        assert_eq!(bytes("100000"), Ok(100_000));
        assert!(bytes("5 parsecs").unwrap_err().contains("give bytes"));
        // A word with no number in front is named as given, with what to write instead.
        assert_eq!(
            duration("banana").unwrap_err(),
            "\"banana\" is not a duration: give a number and a unit: 50ms, 1.5s, 200us"
        );
        assert!(rate("fast").unwrap_err().starts_with("\"fast\" is not a rate: give"));
        assert!(percent("lots%").unwrap_err().starts_with("\"lots%\" is not a percentage"));
    }
}
