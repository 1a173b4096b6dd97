//! The connection object on loopback: the states it goes through to ready, to failed, while
//! waiting for a path it cannot have, and when cancelled.

use std::sync::Arc;
use std::time::Duration;

use nw_connection::Endpoint;
use nw_connection::SystemConfig;
use nw_connection::{ConnectError, Parameters, Resolve, SystemResolver};
use nw_connection::{Connection, State, Update};

fn resolver() -> Arc<dyn Resolve> {
    Arc::new(SystemResolver::new(SystemConfig::parse("", "")))
}

/// Every state update until ready, failed or cancelled (or 5 s).
async fn states(conn: &mut Connection) -> Vec<State> {
    let mut seen = Vec::new();
    let collect = async {
        while let Some(update) = conn.next_update().await {
            if let Update::State(state) = update {
                let last =
                    matches!(state, State::Ready | State::Failed { .. } | State::Waiting { .. });
                seen.push(state);
                if last {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), collect).await;
    seen
}

#[tokio::test]
async fn setup_preparing_ready_then_the_stream_is_handed_over_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = Endpoint::Addr(listener.local_addr().unwrap());
    let mut conn = Connection::new(endpoint, Parameters::default(), resolver());
    assert_eq!(conn.state(), State::Setup);
    conn.start();
    assert_eq!(states(&mut conn).await, [State::Preparing, State::Ready]);
    assert_eq!(conn.state(), State::Ready);
    let connected = conn.ready().await.unwrap();
    assert_eq!(connected.report.connection, conn.id());
    assert!(matches!(conn.ready().await, Err(ConnectError::Taken)));
    // Loopback stays viable: no viability update arrives.
    let quiet = tokio::time::timeout(Duration::from_millis(300), conn.next_update()).await;
    assert!(quiet.is_err(), "{quiet:?}");
    drop(connected);
}

#[tokio::test]
async fn a_refused_connection_fails_with_the_error_and_report() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut conn = Connection::new(
        Endpoint::new("127.0.0.1", port).unwrap(),
        Parameters::default(),
        resolver(),
    );
    let seen = states(&mut conn).await;
    assert_eq!(seen[0], State::Preparing, "{seen:?}");
    let State::Failed { error } = &seen[1] else { panic!("{seen:?}") };
    assert!(error.contains("refused"), "{error}");
    let Err(ConnectError::Race { report, .. }) = conn.ready().await else {
        panic!("not a race error")
    };
    assert_eq!(report.attempts(), 1);
    assert_eq!(conn.next_update().await, None, "updates end after failure");
}

#[tokio::test]
async fn waiting_for_a_path_it_cannot_have_then_cancelled() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // No cellular interface here (nor in CI): the path is unsatisfied for these conditions.
    let conditions = nw_path::Conditions {
        required_type: Some(nw_path::InterfaceType::Cellular),
        ..Default::default()
    };
    let params = Parameters { path: Some(conditions), ..Parameters::default() };
    let mut conn =
        Connection::new(Endpoint::Addr(listener.local_addr().unwrap()), params, resolver());
    let seen = states(&mut conn).await;
    assert_eq!(seen[0], State::Preparing, "{seen:?}");
    assert!(matches!(seen[1], State::Waiting { reason: Some(_) }), "{seen:?}");
    conn.cancel();
    assert_eq!(conn.state(), State::Cancelled);
    assert_eq!(conn.next_update().await, Some(Update::State(State::Cancelled)));
    assert_eq!(conn.next_update().await, None);
    assert!(matches!(conn.ready().await, Err(ConnectError::Cancelled)));
}

/// Nothing blocks the caller's runtime: on a current-thread runtime, the path service's first
/// reading (with an `nmcli` stand-in on PATH that sleeps 5 s, which the cost reading waits a
/// second for), a connection that consults the path, a path monitor and a second service all
/// run while a 10 ms timer ticks, and no tick is late by more than 50 ms. Reading the path on
/// the runtime would hold every tick for the whole second.
#[test]
fn the_path_service_and_a_connection_never_stall_a_current_thread_runtime() {
    let dir = std::env::temp_dir().join(format!("nw-nmcli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let nmcli = dir.join("nmcli");
    std::fs::write(&nmcli, "#!/bin/sh\nsleep 5\n").unwrap();
    std::fs::set_permissions(&nmcli, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
    // SAFETY: nextest runs this test alone in its process, and no thread of ours that reads
    // the environment has started yet.
    unsafe { std::env::set_var("PATH", path) };

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (worst, ticks, read_in) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        let ticker = tokio::spawn(async {
            let (mut worst, mut ticks) = (Duration::ZERO, 0);
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_millis(2_500) {
                let before = std::time::Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                worst = worst.max(before.elapsed().saturating_sub(Duration::from_millis(10)));
                ticks += 1;
            }
            (worst, ticks)
        });
        let started = std::time::Instant::now();
        let service = nw_path::PathService::shared().unwrap();
        let params =
            Parameters { path: Some(nw_path::Conditions::default()), ..Parameters::default() };
        let mut conn = Connection::new(Endpoint::Addr(to), params, resolver());
        let (accepted, connected) = tokio::join!(listener.accept(), conn.ready());
        accepted.unwrap();
        connected.unwrap();
        service.reading().await.unwrap();
        let read_in = started.elapsed();
        let mut monitor = nw_path::PathMonitor::start(nw_path::MonitorOptions::default()).unwrap();
        monitor.next().await.unwrap().unwrap();
        let own = nw_path::PathService::start(nw_path::ServiceOptions::default()).unwrap();
        own.reading().await.unwrap();
        let (worst, ticks) = ticker.await.unwrap();
        (worst, ticks, read_in)
    });
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "first reading and connection in {read_in:?}; {ticks} ticks, the latest {worst:?} late"
    );
    assert!(read_in >= Duration::from_millis(900), "the nmcli stand-in was not waited for");
    assert!(worst < Duration::from_millis(50), "a 10 ms tick was held {worst:?}");
}

/// The resolver is a seam: an in-memory one answers the race's queries, and a name it does not
/// hold fails as a name that does not exist.
#[tokio::test]
async fn an_in_memory_resolver_answers_the_race() {
    use nw_connection::{MemoryResolver, connect};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let resolver =
        Arc::new(MemoryResolver::new().with("peer.test", &["127.0.0.1".parse().unwrap()]));
    let connected =
        connect("Peer.Test.", port, &Parameters::default(), resolver.clone()).await.unwrap();
    assert_eq!(connected.report.connected, Some(listener.local_addr().unwrap()));
    let Err(ConnectError::Race { error, .. }) =
        connect("other.test", port, &Parameters::default(), resolver).await
    else {
        panic!("an unknown name connected")
    };
    assert!(
        error.to_string().contains("does not exist") || format!("{error:?}").contains("NoSuchName"),
        "{error}"
    );
}

/// A prompt hook that never answers does not hold a connection past its time limit: it fails
/// with "local network prohibited" at the limit, saying nobody answered. (A multicast group is
/// local whatever the routes say, so no namespace is needed; nothing is sent.)
#[tokio::test]
async fn a_prompt_that_never_answers_ends_at_the_connections_time_limit() {
    let dir = std::env::temp_dir().join(format!("nw-conn-lnp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let hook = dir.join("hook");
    // It answers nothing in the end either (exit 2): an answer would be stored after the
    // test, in a directory it has removed.
    std::fs::write(&hook, "#!/bin/sh\nsleep 4\nexit 2\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.join("lnp.toml"),
        format!("check = \"on\"\nprompt = [{:?}]\n", hook.display().to_string()),
    )
    .unwrap();
    let mut params = Parameters::default();
    params.race.timeout = Duration::from_millis(800);
    params.local_network.paths = nw_connection::LocalNetworkPaths {
        store: dir.join("lnp.toml"),
        policy: dir.join("policy.toml"),
    };
    params.local_network.identity = Some("exe:/opt/test-app".into());
    let started = std::time::Instant::now();
    let result = nw_connection::connect_udp("224.0.0.251", 5353, &params, resolver()).await;
    let took = started.elapsed();
    let Err(e) = result else { panic!("a multicast send was let through with nobody answering") };
    let shown = e.to_string();
    assert!(matches!(e, ConnectError::LocalNetworkProhibited { .. }), "{shown}");
    assert!(shown.contains("exe:/opt/test-app") && shown.contains("nobody answered"), "{shown}");
    assert!(
        took < Duration::from_secs(3),
        "held for {took:?}, past the 0.8 s limit (the hook answers only after 4 s)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
