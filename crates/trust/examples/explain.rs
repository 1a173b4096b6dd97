//! Why a chain is trusted or not, certificate by certificate: each failed check with its
//! stable code, the sentence the field reads, and what to try.
//!
//! ```sh
//! # A chain (leaf first, PEM) for a host, against the system's anchors, or against ANCHOR.pem:
//! cargo run -p nw-trust --example explain -- CHAIN.pem HOST [ANCHOR.pem]
//! # Without arguments, offline: a test CA's certificate for api.example, asked for
//! # www.example, which it does not name.
//! cargo run -p nw-trust --example explain
//! ```
//!
//! Public chains against the system's anchors need Certificate Transparency, and so a CT log
//! list (`nw trust update-log-list`, see `nw_trust::ct`); this example has none, so it says so
//! for them rather than guessing.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints its report")]

use std::io::Write as _;
use std::path::Path;

use nw_trust::{Anchor, AnchorClass, Options, ca::TestCa, evaluate, load_pem};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`… | head`): quietly, as a pipeline expects.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("explain: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Written, not printed: a reader that goes away (`… | head`) is an error, not a panic.
    let mut out = std::io::stdout().lock();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (chain, host, anchors, at) = match args.as_slice() {
        [] => {
            let ca = TestCa::new("Example Root")?;
            let leaf = ca.server(&["api.example"])?;
            let anchor = Anchor { der: ca.root_der(), class: AnchorClass::Custom };
            (leaf.chain, "www.example".to_owned(), vec![anchor], leaf.not_before + 60)
        }
        [chain, host, rest @ ..] if rest.len() <= 1 => {
            let anchors = match rest.first() {
                Some(file) => load_pem(Path::new(file))?
                    .into_iter()
                    .map(|der| Anchor { der, class: AnchorClass::Custom })
                    .collect(),
                None => nw_trust::system_anchors()?,
            };
            #[allow(clippy::disallowed_methods, reason = "the chain is judged as of now")]
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
            (load_pem(Path::new(chain))?, host.clone(), anchors, i64::try_from(now.as_secs())?)
        }
        _ => return Err("usage: explain [CHAIN.pem HOST [ANCHOR.pem]]".into()),
    };
    let options = Options { anchors, ..Options::default() };
    let evaluation = evaluate(&chain, Some(&host), at, &options)?;
    writeln!(out, "{host}: {:?}", evaluation.verdict)?;
    for cert in &evaluation.certificates {
        let role = if cert.anchor {
            "anchor"
        } else if cert.index == 0 {
            "leaf"
        } else {
            "issuer"
        };
        writeln!(out, "  {} “{}” ({role})", cert.index, cert.facts.name)?;
        for problem in &cert.problems {
            writeln!(out, "    {}: {} — {}", problem.code(), problem.sentence(), problem.detail())?;
        }
    }
    Ok(())
}
