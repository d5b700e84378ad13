//! Module failure policies and hot swap through `RouterSet`: a swap during a stream of
//! 100k events in mixed transactions loses nothing, duplicates nothing and never splits
//! a transaction between versions; a broken candidate never replaces a good module;
//! rollback returns to the previous version.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::event::ChangeEvent;
use sluice::router::{
    AllowedTopics, CandidateState, ModuleSpec, Policy, RouteInput, RouterEngine, RouterError,
    RouterSet,
};
use sluice_tests::events::{insert, new_version, table};

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).expect("guest component built by build.rs")
}

fn hostile_spec(name: &str, mode: &str, policy: Policy) -> ModuleSpec {
    let mut s = ModuleSpec::new(name);
    s.config = vec![
        ("mode".into(), mode.into()),
        ("trigger".into(), "bad".into()),
    ];
    s.topics = AllowedTopics::Only(vec!["ok".into()]);
    s.on_error = policy;
    s
}

fn inputs(evs: &[ChangeEvent]) -> Vec<RouteInput<'_>> {
    evs.iter()
        .flat_map(|ev| (0..ev.rows.len()).map(move |row| RouteInput { event: ev, row }))
        .collect()
}

#[test]
fn policies_isolate_failing_events() {
    let engine = Arc::new(RouterEngine::new(16, None).expect("engine"));
    let t = table("db", "t", &["id"], &["id"]);
    let evs = vec![insert(&t, &[&[Some("1")], &[Some("bad")], &[Some("3")]], 1)];
    for (policy, expect_dlq) in [
        (Policy::Skip, false),
        (Policy::DeadLetter("dlq".into()), true),
    ] {
        let mut set = RouterSet::new(
            engine.clone(),
            vec![(
                hostile_spec("h", "panic", policy.clone()),
                read(env!("GUEST_HOSTILE")),
            )],
        )
        .expect("loads");
        let out = set
            .route(&inputs(&evs))
            .expect("policy absorbs the failure");
        let ok: Vec<usize> = out
            .iter()
            .filter(|d| d.dead_letter.is_none())
            .map(|d| d.input)
            .collect();
        assert_eq!(ok, vec![0, 2], "{policy:?}: the good events still route");
        let dlq: Vec<&sluice::router::Delivery> =
            out.iter().filter(|d| d.dead_letter.is_some()).collect();
        if expect_dlq {
            assert_eq!(dlq.len(), 1);
            assert_eq!(dlq[0].input, 1);
            assert_eq!(&*dlq[0].route.topic, "dlq");
            assert_eq!(dlq[0].dead_letter.as_ref().map(|d| d.0), Some("trap"));
        } else {
            assert!(dlq.is_empty());
        }
        set.at_transaction_boundary(&evs);
        let st = set.status().lock().expect("status").clone();
        let c = &st[0].counters;
        assert_eq!(
            c.failures,
            vec![("trap", 2)],
            "batch failure + the isolated event"
        );
        assert_eq!(c.skipped + c.dead_lettered, 1);
    }
    // Halt: the error reaches the caller and nothing is decided.
    let mut set = RouterSet::new(
        engine,
        vec![(
            hostile_spec("h", "panic", Policy::Halt),
            read(env!("GUEST_HOSTILE")),
        )],
    )
    .expect("loads");
    assert!(matches!(
        set.route(&inputs(&evs)),
        Err(RouterError::Trap { .. })
    ));
}

fn wait_for(
    set: &mut RouterSet,
    name: &str,
    want: impl Fn(&CandidateState) -> bool,
) -> CandidateState {
    let t = Instant::now();
    loop {
        set.at_transaction_boundary(&[]);
        let st = set.status().lock().expect("status").clone();
        let c = st
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.candidate.clone())
            .unwrap_or(CandidateState::None);
        if want(&c) {
            return c;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "candidate did not settle: {c:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn swap_mid_stream_keeps_transactions_whole() {
    let engine = Arc::new(RouterEngine::new(16, None).expect("engine"));
    let v1 = read(env!("GUEST_HOSTILE"));
    let v2 = new_version(&v1, "v2");
    let spec = hostile_spec("h", "none", Policy::Halt);
    let mut set = RouterSet::new(engine, vec![(spec, v1.clone())]).expect("loads");
    let v1_hash = set.version_of("h").expect("serving").to_string();

    let t = table("db", "t", &["id", "v"], &["id"]);
    let mut seen = BTreeSet::new();
    let mut versions_seen = Vec::new();
    let mut next_id = 0u64;
    let mut txn = 0u64;
    let mut proposed_bad = false;
    let mut proposed_good = false;
    while next_id < 100_000 {
        // Mixed transaction sizes: 1..=97 rows across 1..=3 rows events.
        let size = 1 + (txn * 37 % 97);
        let mut evs = Vec::new();
        let mut left = size;
        while left > 0 && next_id < 100_000 {
            let n = left.min(1 + txn % 40);
            let ids: Vec<String> = (next_id..next_id + n).map(|i| i.to_string()).collect();
            let rows: Vec<[Option<&str>; 2]> =
                ids.iter().map(|i| [Some(i.as_str()), Some("x")]).collect();
            let refs: Vec<&[Option<&str>]> = rows.iter().map(|r| &r[..]).collect();
            evs.push(insert(&t, &refs, next_id));
            next_id += n;
            left -= n;
        }
        let out = set.route(&inputs(&evs)).expect("routes");
        let mut txn_versions = BTreeSet::new();
        let ins = inputs(&evs);
        for d in &out {
            let inp = ins[d.input];
            let id: u64 = std::str::from_utf8(
                inp.event
                    .rows
                    .image(inp.row, 0)
                    .cell(0)
                    .bytes()
                    .expect("id"),
            )
            .expect("utf8")
            .parse()
            .expect("number");
            assert!(seen.insert(id), "event {id} routed twice");
            txn_versions.insert(d.version.to_string());
        }
        assert_eq!(out.len(), ins.len(), "every event routed exactly once");
        assert_eq!(
            txn_versions.len(),
            1,
            "transaction {txn} was split between versions"
        );
        let v = txn_versions.into_iter().next().expect("one version");
        if versions_seen.last() != Some(&v) {
            versions_seen.push(v);
        }
        set.at_transaction_boundary(&evs);
        txn += 1;
        if next_id > 20_000 && !proposed_bad {
            proposed_bad = true;
            // A broken candidate: the WASI importer (refused at load).
            set.propose("h", read(env!("GUEST_WASI_IMPORTER")))
                .expect("proposed");
            let c = wait_for(&mut set, "h", |c| {
                matches!(c, CandidateState::Rejected { .. })
            });
            assert!(
                matches!(&c, CandidateState::Rejected { reason, .. } if reason.contains("wasi:clocks")),
                "{c:?}"
            );
            assert_eq!(
                set.version_of("h"),
                Some(v1_hash.as_str()),
                "a broken candidate never replaces"
            );
        }
        if next_id > 30_000 && !proposed_good {
            proposed_good = true;
            set.propose("h", v2.clone()).expect("proposed");
        }
        // Compiling takes a while in debug builds; make sure the swap lands mid-stream.
        if next_id > 90_000 && versions_seen.len() < 2 {
            wait_for(&mut set, "h", |c| {
                matches!(c, CandidateState::Promoted { .. })
            });
        }
    }
    assert_eq!(seen.len(), 100_000);
    assert_eq!(
        versions_seen.len(),
        2,
        "exactly one swap: {versions_seen:?}"
    );
    assert_eq!(versions_seen[0], v1_hash);
    let st = set.status().lock().expect("status").clone();
    assert!(matches!(st[0].candidate, CandidateState::Promoted { .. }));
    assert_eq!(st[0].previous.as_deref(), Some(v1_hash.as_str()));

    // Rollback returns to v1 at the next boundary.
    let back = set.rollback("h").expect("rollback");
    assert_eq!(back, v1_hash);
    set.at_transaction_boundary(&[]);
    assert_eq!(set.version_of("h"), Some(v1_hash.as_str()));
}

/// A candidate that traps on real traffic fails its canary.
#[test]
fn canary_catches_a_trapping_candidate() {
    let engine = Arc::new(RouterEngine::new(16, None).expect("engine"));
    let good = read(env!("GUEST_TAGS"));
    let mut spec = ModuleSpec::new("tags");
    spec.config = vec![
        ("topic".into(), "bus".into()),
        ("tag.all".into(), ".*\\..*".into()),
        // Read by the hostile candidate (and, as a tag pattern, harmless to `tags`).
        ("tag.mode".into(), "panic".into()),
    ];
    let mut set = RouterSet::new(engine, vec![(spec, good)]).expect("loads");
    let serving = set.version_of("tags").expect("serving").to_string();
    let t = table("db", "t", &["id"], &["id"]);
    let evs = vec![insert(&t, &[&[Some("1")], &[Some("2")]], 1)];
    set.route(&inputs(&evs)).expect("routes");
    set.at_transaction_boundary(&evs);
    // The candidate (the hostile module, reading `tag.mode` from the same config) panics
    // on every event of the sample.
    let mut hostile = read(env!("GUEST_HOSTILE"));
    hostile = new_version(&hostile, "x");
    set.propose("tags", hostile).expect("proposed");
    let c = wait_for(&mut set, "tags", |c| {
        matches!(c, CandidateState::Rejected { .. })
    });
    assert!(
        matches!(&c, CandidateState::Rejected { reason, .. } if reason.contains("trapped")),
        "{c:?}"
    );
    assert_eq!(set.version_of("tags"), Some(serving.as_str()));
}
