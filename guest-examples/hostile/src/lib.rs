//! A module that misbehaves on purpose, so tests can check the agent contains it. The
//! `mode` config key picks the misbehaviour; it strikes on events whose first cell is
//! the `trigger` value (default: every event), and routes everything else normally to
//! topic `ok`:
//! - `loop`: never returns;
//! - `bomb`: allocates until memory runs out;
//! - `panic`: panics;
//! - `foreign`: routes to topic `not-mine`;
//! - `short`: returns one decision too few;
//! - `error`: returns an error;
//! - `log`: writes 100 log lines per struck event, then routes it;
//! - `bigkey`: routes with a key of `size` bytes (default 2 MiB);
//! - `table-bomb`: allocates until memory runs out when a table is announced;
//! - `config-loop`, `config-panic`: `configure` never returns, or panics;
//! - `panic-batch-loop-one`: panics on a batch of several events, never returns on one;
//! - `none`: behaves.

use sluice_sdk::prelude::*;

/// The hostile router.
pub struct Hostile {
    mode: String,
    trigger: Option<String>,
    hoard: Vec<Vec<u8>>,
    key: Vec<u8>,
}

const MODES: &[&str] = &[
    "loop",
    "bomb",
    "panic",
    "foreign",
    "short",
    "error",
    "log",
    "bigkey",
    "table-bomb",
    "config-loop",
    "config-panic",
    "panic-batch-loop-one",
    "none",
];

impl Router for Hostile {
    fn configure(config: &Config) -> Result<(Self, Subscription), String> {
        // `tag.mode` too: a test swaps this module for the `tags` module under one
        // config, and `tags` reads `tag.*` keys as its own (so neither refuses it).
        let mode = config
            .get("mode")
            .or(config.get("tag.mode"))
            .unwrap_or("none")
            .to_string();
        // The `tags` module's keys, which swap tests share with this one.
        config.accept(&["topic"]);
        let _ = config.with_prefix("tag.");
        if !MODES.contains(&mode.as_str()) {
            return Err(format!("unknown mode `{mode}`"));
        }
        match mode.as_str() {
            "config-loop" => {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(3));
                }
            }
            "config-panic" => panic!("hostile module panics in configure on purpose"),
            _ => {}
        }
        let size: usize = config.parse_or("size", 2 << 20)?;
        Ok((
            Hostile {
                mode,
                trigger: config.get("trigger").map(str::to_string),
                hoard: Vec::new(),
                key: vec![b'k'; size],
            },
            Subscription::all().topics(["ok"]),
        ))
    }

    fn on_table(&mut self, _table: &Table) {
        if self.mode == "table-bomb" {
            loop {
                self.hoard.push(vec![7u8; 1 << 20]);
            }
        }
    }

    fn route(
        &mut self,
        _tables: &Tables,
        batch: &Batch<'_>,
        out: &mut Decisions,
    ) -> Result<(), String> {
        let n = batch.len();
        for (i, ev) in batch.iter().enumerate() {
            let hit = match &self.trigger {
                None => true,
                Some(t) => ev.current(0).text() == Some(t.as_str()),
            };
            if !hit {
                out.send(Destination::to_index(0));
                continue;
            }
            match self.mode.as_str() {
                "loop" => {
                    let mut x: u64 = 1;
                    loop {
                        x = std::hint::black_box(x.wrapping_mul(3));
                    }
                }
                "bomb" => loop {
                    self.hoard.push(vec![7u8; 1 << 20]);
                },
                "panic" => panic!("hostile module panics on purpose"),
                "panic-batch-loop-one" if n > 1 => panic!("hostile module panics on a batch"),
                "panic-batch-loop-one" => {
                    let mut x: u64 = 1;
                    loop {
                        x = std::hint::black_box(x.wrapping_mul(3));
                    }
                }
                "foreign" => out.send(Destination::to_name("not-mine")),
                "short" if i + 1 == n => {}
                "error" => return Err("hostile module fails on purpose".into()),
                "log" => {
                    for n in 0..100 {
                        log(Level::Info, &format!("hostile log line {n}"));
                    }
                    out.send(Destination::to_index(0));
                }
                "bigkey" => out.send(Destination::to_index(0).key(&self.key)),
                _ => out.send(Destination::to_index(0)),
            }
        }
        Ok(())
    }
}

sluice_sdk::export_router!(Hostile);
