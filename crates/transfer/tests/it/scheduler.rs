//! The background scheduler in virtual time: FIELD-NOTES A01–A06, retries, reasons.

use std::time::Duration;

use nw_transfer::scheduler::{Action, Conditions, Config, Outcome, Scheduler, TaskId, Wait};

const D: Duration = Duration::from_secs(10);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn config() -> Config {
    Config { resume_base: D, resume_max: secs(1 << 20), max_running: 4, ..Config::default() }
}

fn started(actions: &[Action]) -> Vec<TaskId> {
    actions
        .iter()
        .filter_map(|a| if let Action::Start(id) = a { Some(*id) } else { None })
        .collect()
}

#[test]
fn a01_each_resume_doubles_the_delay() {
    let mut s = Scheduler::new(config());
    s.background(secs(0));
    let mut delays = Vec::new();
    for i in 0..5 {
        // Resumed again within the delay each time, so no period elapses unused.
        s.resumed(secs(i));
        delays.push(s.resume_delay(secs(i)));
    }
    assert_eq!(delays, [D, 2 * D, 4 * D, 8 * D, 16 * D]);
}

#[test]
fn a02_the_foreground_resets_the_delay_and_releases_held_tasks() {
    let mut s = Scheduler::new(config());
    s.background(secs(0));
    s.resumed(secs(0));
    s.resumed(secs(1));
    let task = s.add(secs(2), false);
    assert_eq!(s.wait(task, secs(2)), Some(Wait::ResumeDelay { until: secs(2) + 2 * D }));
    assert!(started(&s.poll(secs(3))).is_empty());
    s.foreground(secs(4));
    assert_eq!(s.resume_delay(secs(4)), Duration::ZERO);
    assert_eq!(started(&s.poll(secs(4))), [task]);
}

#[test]
fn a03_a_delay_that_elapses_unused_resets_to_zero() {
    let mut s = Scheduler::new(config());
    s.background(secs(0));
    s.resumed(secs(0));
    assert_eq!(s.resume_delay(secs(9)), D);
    assert_eq!(s.resume_delay(secs(10)), Duration::ZERO);
    // So the next resume starts again from the base.
    s.resumed(secs(11));
    assert_eq!(s.resume_delay(secs(11)), D);
}

#[test]
fn a04_a_background_task_waits_for_the_delay_a_foreground_one_does_not() {
    let mut s = Scheduler::new(config());
    let fg = s.add(secs(0), false);
    assert_eq!(started(&s.poll(secs(0))), [fg]);
    s.background(secs(1));
    s.resumed(secs(1));
    let bg = s.add(secs(3), false);
    for t in [3, 7, 12] {
        assert!(started(&s.poll(secs(t))).is_empty(), "started at {t} s");
    }
    assert_eq!(s.next_wake(secs(12)), Some(secs(13)));
    assert_eq!(started(&s.poll(secs(13))), [bg]);
    let why = Wait::ResumeDelay { until: secs(13) }.explain(secs(10));
    assert!(why.contains("3.0 s more") && why.contains("foreground"), "{why}");
}

/// Runs tasks created one at a time in the background, each by the wake that delivered the
/// last (a chain), or all at once as one batch; each task takes a second. Returns when the
/// last one finished.
fn simulate(chain: bool, count: usize) -> Duration {
    let mut s = Scheduler::new(config());
    let mut now = Duration::ZERO;
    s.background(now);
    s.resumed(now);
    let mut running: Vec<(Duration, TaskId)> = Vec::new();
    let mut created = if chain {
        s.add(now, false);
        1
    } else {
        s.add_batch(now, count, false);
        count
    };
    let mut finished = 0;
    while finished < count {
        for action in s.poll(now) {
            match action {
                Action::Start(id) => running.push((now + secs(1), id)),
                Action::Wake(ids) => {
                    finished += ids.len();
                    if chain && created < count {
                        s.add(now, false);
                        created += 1;
                    }
                }
            }
        }
        let next_done = running.iter().map(|(t, _)| *t).min();
        let next = [next_done, s.next_wake(now)].into_iter().flatten().min();
        let Some(next) = next else { break };
        now = next;
        running.retain(|(t, id)| {
            if *t <= now {
                s.finished(now, *id, Outcome::Done);
                false
            } else {
                true
            }
        });
    }
    assert_eq!(finished, count, "every task finished");
    now
}

#[test]
fn a05_a_chain_of_single_tasks_grows_exponentially_and_one_batch_does_not() {
    let chain = simulate(true, 10);
    let batch = simulate(false, 100);
    // The chain's waits are D, 2D, 4D, …: at least D·(2^10 − 1) in all.
    assert!(chain >= D * 1023, "chain of 10 took {chain:?}");
    // The batch waits once: D, then 100 one-second tasks four at a time.
    assert!(batch <= D + secs(26), "batch of 100 took {batch:?}");
    eprintln!(
        "chain of 10: {:.0} s; batch of 100: {:.0} s",
        chain.as_secs_f64(),
        batch.as_secs_f64()
    );
}

#[test]
fn a06_a_discretionary_task_waits_for_an_unmetered_path_and_power() {
    let mut s = Scheduler::new(config());
    let task = s.add(secs(0), true);
    let plain = s.add(secs(0), false);
    assert_eq!(started(&s.poll(secs(0))), [plain]);
    assert_eq!(s.wait(task, secs(0)), Some(Wait::Unmetered));
    s.set_conditions(Conditions { unmetered: true, on_power: false });
    assert!(started(&s.poll(secs(1))).is_empty());
    assert_eq!(s.wait(task, secs(1)), Some(Wait::Power));
    s.set_conditions(Conditions { unmetered: true, on_power: true });
    assert_eq!(started(&s.poll(secs(2))), [task]);
}

#[test]
fn transient_failures_back_off_exponentially_and_then_give_up() {
    let mut s = Scheduler::new(Config { max_attempts: 4, retry_base: secs(1), ..config() });
    let task = s.add(secs(0), false);
    let mut now = secs(0);
    let mut waits = Vec::new();
    loop {
        assert_eq!(started(&s.poll(now)), [task]);
        s.finished(now, task, Outcome::Transient("connection lost".into()));
        match s.wait(task, now) {
            Some(Wait::Backoff { until, attempt }) => {
                waits.push((until - now, attempt));
                now = until;
            }
            None => break,
            other => panic!("unexpected wait {other:?}"),
        }
    }
    assert_eq!(waits, [(secs(1), 1), (secs(2), 2), (secs(4), 3)]);
    assert_eq!(s.pending(), 0, "given up after the fourth attempt");
}

#[test]
fn no_more_than_max_running_run_at_once_and_the_rest_say_why() {
    let mut s = Scheduler::new(Config { max_running: 2, ..config() });
    let ids = s.add_batch(secs(0), 3, false);
    assert_eq!(started(&s.poll(secs(0))), ids[..2]);
    assert_eq!(s.wait(ids[2], secs(0)), Some(Wait::Concurrency));
    s.finished(secs(1), ids[0], Outcome::Done);
    assert_eq!(started(&s.poll(secs(1))), [ids[2]]);
}
