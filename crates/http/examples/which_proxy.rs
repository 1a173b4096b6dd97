//! Which proxy a load of each URL goes through — the question a session asks before it
//! connects — from this process's environment (`https_proxy`, `no_proxy`, … as curl reads
//! them) or from a PAC file, whose `FindProxyForURL` runs sandboxed with a time limit.
//!
//! ```sh
//! https_proxy=http://proxy.corp:3128 no_proxy=.internal \
//!     cargo run -p nw-http --example which_proxy -- https://example.com/ https://wiki.internal/
//! cargo run -p nw-http --example which_proxy -- --pac proxy.pac https://example.com/
//! ```
//!
//! Each URL gets one line: its routes in the order a session tries them (`DIRECT` or the
//! proxy), or why none can be used. The exit status is 1 when any URL got no route.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints its answers")]

use std::io::Write as _;
use std::sync::Arc;

use nw_connection::{Endpoint, Resolve, SystemResolver};
use nw_http::{Pac, Proxies};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        // The reader went away (`… | head`): quietly, as a pipeline expects.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("which_proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    // Written, not printed: a reader that goes away (`… | head`) is an error, not a panic.
    let mut out = std::io::stdout().lock();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let proxies = match args.iter().position(|a| a == "--pac") {
        Some(at) => {
            let path = args.get(at + 1).ok_or("--pac needs the path of a PAC file")?.clone();
            args.drain(at..at + 2);
            // Loading runs the script once: one that does not parse or defines no
            // FindProxyForURL is refused here, before any URL is asked about.
            Proxies::pac(Pac::read(path.as_ref())?)
        }
        None => Proxies::from_env(),
    };
    if args.is_empty() {
        return Err("give one or more URLs (http:// or https://), after --pac FILE if any".into());
    }
    // A PAC script's dnsResolve() and isInNet() look names up through the resolver a session
    // would use; a script that waits on them past the time limit is an error, not a hang.
    let resolver: Arc<dyn Resolve> = Arc::new(SystemResolver::from_system());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut every_one_routed = true;
    for text in &args {
        let url = match Endpoint::parse(text) {
            Ok(Endpoint::Url(url)) if matches!(url.scheme.as_str(), "http" | "https") => url,
            Ok(_) => {
                writeln!(out, "{text}: not an http:// or https:// URL")?;
                every_one_routed = false;
                continue;
            }
            Err(e) => {
                writeln!(out, "{text}: {e}")?;
                every_one_routed = false;
                continue;
            }
        };
        // No PAC URL is given here, so nothing is fetched: the fetch is never called.
        let fetch = |_: String| async { Err(nw_http::Error::Setting("no PAC URL".into())) };
        match runtime.block_on(proxies.choices(&url, &resolver, fetch)) {
            Ok(routes) => {
                let routes: Vec<String> = routes
                    .iter()
                    .map(|route| match route {
                        None => "DIRECT".to_owned(),
                        Some(proxy) => format!("PROXY {proxy}"),
                    })
                    .collect();
                writeln!(out, "{url}: {}", routes.join(", then "))?;
            }
            Err(e) => {
                writeln!(out, "{url}: no route: {e}")?;
                every_one_routed = false;
            }
        }
    }
    Ok(every_one_routed)
}
