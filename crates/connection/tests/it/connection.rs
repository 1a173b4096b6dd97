//! The connection object on loopback: the states it goes through to ready, to failed, while
//! waiting for a path it cannot have, and when cancelled.

use std::sync::Arc;
use std::time::Duration;

use nw_connection::connection::{Connection, State, Update};
use nw_connection::driver::{ConnectError, Params, Resolver};
use nw_connection::endpoint::Endpoint;
use nw_connection::resolve::SystemConfig;

fn resolver() -> Arc<Resolver> {
    Arc::new(Resolver::new(SystemConfig::parse("", "")))
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
    let mut conn = Connection::new(endpoint, Params::default(), resolver());
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
    let mut conn =
        Connection::new(Endpoint::new("127.0.0.1", port).unwrap(), Params::default(), resolver());
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
    let params = Params { path: Some(conditions), ..Params::default() };
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
