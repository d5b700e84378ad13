//! The router host against real components: the example modules route as their native
//! builds do; hostile modules are contained (timeout, memory cap, trap, foreign topic,
//! malformed output, forbidden imports) and the instance recovers afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::event::{ChangeEvent, ChangeKind};
use sluice::router::{
    AllowedTopics, Limits, ModuleInstance, ModuleSpec, Route, RouteInput, RouterEngine,
    RouterError, Routes,
};
use sluice_sdk::testing::{Harness, Outcome};
use sluice_tests::events::{ddl, insert, rows, table};

fn engine() -> RouterEngine {
    RouterEngine::new(16, None).expect("engine")
}

fn load(
    engine: &RouterEngine,
    path: &str,
    spec: ModuleSpec,
) -> Result<ModuleInstance, RouterError> {
    let bytes = std::fs::read(path).expect("guest component built by build.rs");
    let (code, _) = engine.compile(&spec.name, &bytes)?;
    ModuleInstance::new(engine, code, Arc::new(spec))
}

fn spec(name: &str, config: &[(&str, &str)]) -> ModuleSpec {
    let mut s = ModuleSpec::new(name);
    s.config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s
}

fn route_all(m: &mut ModuleInstance, evs: &[ChangeEvent]) -> Result<Vec<Vec<Route>>, RouterError> {
    let mut inputs = Vec::new();
    for ev in evs {
        if !m.wants(&ev.table, ev.kind) {
            continue;
        }
        for row in 0..ev.rows.len().max(1) {
            inputs.push(RouteInput { event: ev, row });
        }
    }
    let mut out = Routes::default();
    m.route(&inputs, &mut out)?;
    Ok(out.to_vecs())
}

const CANAL: &[(&str, &str)] = &[
    ("canal.mq.topic", "fallback"),
    ("canal.mq.dynamicTopic", "mytest.user,topicA:db_a\\\\..*"),
    ("canal.mq.partitionsNum", "4"),
    ("canal.mq.partitionHash", ".*\\\\..*:$pk$"),
];

/// Asserts that every event has one destination, the same topic and partition in the
/// component's and the native run; returns the partitions used.
fn same_single_destinations(
    wasm: &[Vec<Route>],
    native: &[Outcome],
) -> std::collections::BTreeSet<Option<i32>> {
    assert_eq!(wasm.len(), native.len());
    let mut partitions = std::collections::BTreeSet::new();
    for (w, n) in wasm.iter().zip(native) {
        let Outcome::Sent(n) = n else {
            panic!("native dropped")
        };
        assert_eq!(w.len(), 1);
        assert_eq!(&*w[0].topic, n[0].topic.as_str());
        assert_eq!(w[0].partition, n[0].partition);
        partitions.insert(w[0].partition);
    }
    partitions
}

/// The component gives the same decisions as the same code run natively.
#[test]
fn canal_compat_component_matches_native() {
    let e = engine();
    let mut m = load(&e, env!("GUEST_CANAL_COMPAT"), spec("canal", CANAL)).expect("loads");
    let user = table("mytest", "user", &["id", "name"], &["id"]);
    let other = table("db_a", "t", &["k", "v"], &["k"]);
    let ids: Vec<String> = (0..200).map(|i| (i * 7919).to_string()).collect();
    let user_rows: Vec<[Option<&str>; 2]> =
        ids.iter().map(|i| [Some(i.as_str()), Some("n")]).collect();
    let refs: Vec<&[Option<&str>]> = user_rows.iter().map(|r| &r[..]).collect();
    let evs = vec![
        insert(&user, &refs, 100),
        insert(&other, &[&[Some("k1"), Some("1")]], 200),
        rows(
            &user,
            ChangeKind::Delete,
            &[&[&[Some("5"), Some("x")]]],
            300,
        ),
        ddl("mytest", "user", "ALTER TABLE user ADD c INT", 400),
    ];
    let wasm = route_all(&mut m, &evs).expect("routes");

    let mut h = Harness::<canal_compat::CanalCompat>::new(CANAL).expect("native");
    h.table(
        0,
        "mytest",
        "user",
        &[("id", "int(11)"), ("name", "varchar(64)")],
        &["id"],
    );
    h.table(
        1,
        "db_a",
        "t",
        &[("k", "int(11)"), ("v", "varchar(64)")],
        &["k"],
    );
    for r in &user_rows {
        h.insert(0, r);
    }
    h.insert(1, &[Some("k1"), Some("1")]);
    h.delete(0, &[Some("5"), Some("x")]);
    h.ddl("mytest", "user", "ALTER TABLE user ADD c INT");
    let native = h.run().expect("native routes");

    let partitions = same_single_destinations(&wasm, &native);
    assert!(
        partitions.len() >= 4,
        "rows spread over the partitions: {partitions:?}"
    );
    assert_eq!(&*wasm[200][0].topic, "topicA");
}

/// canal-compat subscribes to the key plus the columns its hash rules name, so the
/// rest of a row never crosses into the module, and it still decides as it does
/// natively with whole rows.
#[test]
fn canal_compat_receives_only_the_columns_it_hashes() {
    const BY_NAME: &[(&str, &str)] = &[
        ("canal.mq.dynamicTopic", "mytest\\..*"),
        ("canal.mq.partitionsNum", "8"),
        ("canal.mq.partitionHash", "mytest.user:name,.*\\..*:$pk$"),
    ];
    let e = engine();
    let mut m = load(&e, env!("GUEST_CANAL_COMPAT"), spec("canal", BY_NAME)).expect("loads");
    let user = table("mytest", "user", &["id", "pad", "name", "more"], &["id"]);
    let order = table("mytest", "orders", &["oid", "total"], &["oid"]);
    let names: Vec<String> = (0..50).map(|i| format!("name-{i}")).collect();
    let user_rows: Vec<[Option<&str>; 4]> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            [
                Some(if i % 2 == 0 { "1" } else { "2" }),
                Some("p"),
                Some(n.as_str()),
                None,
            ]
        })
        .collect();
    let refs: Vec<&[Option<&str>]> = user_rows.iter().map(|r| &r[..]).collect();
    let evs = vec![
        insert(&user, &refs, 100),
        insert(&order, &[&[Some("7"), Some("9.50")]], 200),
    ];
    let wasm = route_all(&mut m, &evs).expect("routes");
    assert_eq!(
        m.shipped_columns("mytest", "user").expect("announced"),
        ["id", "name"]
    );
    assert_eq!(
        m.shipped_columns("mytest", "orders").expect("announced"),
        ["oid"]
    );

    let mut h = Harness::<canal_compat::CanalCompat>::new(BY_NAME).expect("native");
    h.table(
        0,
        "mytest",
        "user",
        &[
            ("id", "int"),
            ("pad", "text"),
            ("name", "varchar(64)"),
            ("more", "int"),
        ],
        &["id"],
    );
    h.table(
        1,
        "mytest",
        "orders",
        &[("oid", "int"), ("total", "decimal(8,2)")],
        &["oid"],
    );
    for r in &user_rows {
        h.insert(0, r);
    }
    h.insert(1, &[Some("7"), Some("9.50")]);
    let native = h.run().expect("native routes");
    let partitions = same_single_destinations(&wasm, &native);
    // Hashed on `name` (50 values), not on `id` (two values).
    assert!(partitions.len() > 2, "{partitions:?}");
}

#[test]
fn wasi_importer_is_refused_with_its_imports() {
    let e = engine();
    let err = load(&e, env!("GUEST_WASI_IMPORTER"), spec("sneaky", &[])).expect_err("refused");
    match &err {
        RouterError::ForbiddenImports { imports, .. } => {
            assert_eq!(imports, &["wasi:clocks/wall-clock@0.2.0".to_string()]);
        }
        other => panic!("expected forbidden imports, got {other}"),
    }
    assert!(err.to_string().contains("wasi:clocks/wall-clock"), "{err}");
}

fn hostile(e: &RouterEngine, mode: &str, limits: Limits) -> ModuleInstance {
    let mut s = spec("hostile", &[("mode", mode), ("trigger", "bad")]);
    s.limits = limits;
    s.topics = AllowedTopics::Only(vec!["ok".into()]);
    load(e, env!("GUEST_HOSTILE"), s).expect("loads")
}

fn good_and_bad() -> (Vec<ChangeEvent>, Vec<ChangeEvent>) {
    let t = table("db", "t", &["id", "v"], &["id"]);
    (
        vec![insert(
            &t,
            &[&[Some("1"), Some("a")], &[Some("2"), Some("b")]],
            10,
        )],
        vec![insert(
            &t,
            &[&[Some("3"), Some("c")], &[Some("bad"), Some("d")]],
            20,
        )],
    )
}

/// After a failure the module serves the next batch from a fresh instance.
fn recovers(m: &mut ModuleInstance, good: &[ChangeEvent]) {
    let out = route_all(m, good).expect("recovers with a fresh instance");
    assert_eq!(out.len(), 2);
    assert_eq!(&*out[0][0].topic, "ok");
}

#[test]
fn infinite_loop_times_out() {
    let e = engine();
    let (good, bad) = good_and_bad();
    let mut m = hostile(
        &e,
        "loop",
        Limits {
            memory_bytes: 64 << 20,
            deadline: Duration::from_millis(50),
        },
    );
    recovers(&mut m, &good);
    let t = Instant::now();
    let err = route_all(&mut m, &bad).expect_err("must time out");
    let took = t.elapsed();
    assert!(
        matches!(
            err,
            RouterError::Timeout {
                deadline_ms: 50,
                ..
            }
        ),
        "{err}"
    );
    assert!(took < Duration::from_millis(1000), "stopped after {took:?}");
    recovers(&mut m, &good);
}

#[test]
fn memory_bomb_hits_the_cap() {
    let e = engine();
    let (good, bad) = good_and_bad();
    let mut m = hostile(
        &e,
        "bomb",
        Limits {
            memory_bytes: 16 << 20,
            deadline: Duration::from_secs(5),
        },
    );
    let err = route_all(&mut m, &bad).expect_err("must hit the cap");
    assert!(
        matches!(err, RouterError::MemoryLimit { limit_bytes, .. } if limit_bytes == 16 << 20),
        "{err}"
    );
    recovers(&mut m, &good);
}

#[test]
fn panic_is_a_trap() {
    let e = engine();
    let (good, bad) = good_and_bad();
    let mut m = hostile(&e, "panic", Limits::default());
    let err = route_all(&mut m, &bad).expect_err("must trap");
    match &err {
        // A Rust panic ends in `unreachable`; the reason names it, not wasmtime's
        // "error while executing at wasm backtrace:" header.
        RouterError::Trap { code, detail, .. } => {
            assert_eq!(*code, "unreachable", "{err}");
            assert!(detail.contains("unreachable"), "{detail}");
            assert!(!detail.contains("error while executing"), "{detail}");
            assert!(err.to_string().contains("(unreachable)"), "{err}");
        }
        other => panic!("expected a trap, got {other}"),
    }
    recovers(&mut m, &good);
}

#[test]
fn foreign_topic_is_refused() {
    let e = engine();
    let (good, bad) = good_and_bad();
    let mut m = hostile(&e, "foreign", Limits::default());
    let err = route_all(&mut m, &bad).expect_err("must be refused");
    match &err {
        RouterError::ForeignTopic { topic, .. } => assert_eq!(topic, "not-mine"),
        other => panic!("expected a foreign topic, got {other}"),
    }
    recovers(&mut m, &good);
}

#[test]
fn malformed_output_and_errors_are_bad_output() {
    let e = engine();
    let (good, bad) = good_and_bad();
    for mode in ["short", "error"] {
        let mut m = hostile(&e, mode, Limits::default());
        let err = route_all(&mut m, &bad).expect_err("must be refused");
        assert!(
            matches!(err, RouterError::BadOutput { .. }),
            "{mode}: {err}"
        );
        recovers(&mut m, &good);
    }
}

#[test]
fn configuration_errors_refuse_the_module() {
    let e = engine();
    let err =
        load(&e, env!("GUEST_HOSTILE"), spec("h", &[("mode", "bogus")])).expect_err("refused");
    assert!(
        matches!(&err, RouterError::Config { detail, .. } if detail.contains("bogus")),
        "{err}"
    );
    // Declaring a topic outside the allowed set is refused at load.
    let mut s = spec("h", &[]);
    s.topics = AllowedTopics::Only(vec!["mine.*".into()]);
    let err = load(&e, env!("GUEST_HOSTILE"), s).expect_err("refused");
    assert!(
        matches!(&err, RouterError::ForeignTopic { topic, .. } if topic == "ok"),
        "{err}"
    );
    // Garbage is not a component.
    let err = e
        .compile("junk", b"\0asm\x01\0\0\0garbage")
        .expect_err("refused");
    assert!(matches!(err, RouterError::Invalid { .. }), "{err}");
}

#[test]
fn subscription_filters_tables_kinds_and_columns() {
    let e = engine();
    let mut m = load(
        &e,
        env!("GUEST_TABLE_FILTER"),
        spec(
            "f",
            &[
                ("filter.regex", "shop\\..*"),
                ("black.regex", "shop\\.tmp"),
                ("filter.query.ddl", "true"),
                ("topic", "shop"),
            ],
        ),
    )
    .expect("loads");
    let orders = table("shop", "orders", &["id"], &["id"]);
    let tmp = table("shop", "tmp", &["id"], &["id"]);
    let crm = table("crm", "user", &["id"], &["id"]);
    assert!(m.wants(&orders, ChangeKind::Insert));
    assert!(!m.wants(&tmp, ChangeKind::Insert));
    assert!(!m.wants(&crm, ChangeKind::Insert));
    assert!(!m.wants(&orders, ChangeKind::Ddl));
    let out = route_all(&mut m, &[insert(&orders, &[&[Some("7")]], 1)]).expect("routes");
    assert_eq!(out[0][0].key.as_deref(), Some(&b"orders|7"[..]));
}

#[test]
fn precompiled_code_is_reused() {
    let dir = std::env::temp_dir().join(format!("sluice-cache-{}", std::process::id()));
    let bytes = std::fs::read(env!("GUEST_TAGS")).expect("component");
    let e = RouterEngine::new(4, Some(&dir)).expect("engine");
    let (a, cached) = e.compile("tags", &bytes).expect("compiles");
    assert!(!cached);
    let (b, cached) = e.compile("tags", &bytes).expect("loads");
    assert!(cached, "second load comes from the cache");
    assert_eq!(a.hash, b.hash);
    assert_eq!(a.hash.len(), 64);
    std::fs::remove_dir_all(&dir).ok();
}
