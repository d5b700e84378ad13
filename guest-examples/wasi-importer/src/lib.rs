//! Exports the router world's functions but also imports `wasi:clocks/wall-clock`, so
//! its decisions could depend on the time. The agent must refuse to load it and name
//! the import.

wit_bindgen::generate!({
    inline: r#"
        package sluice:hostile;

        world importer {
            import wasi:clocks/wall-clock@0.2.0;
            export configure: func(config: list<tuple<string, string>>) -> result<u64, string>;
        }

        package wasi:clocks@0.2.0 {
            interface wall-clock {
                record datetime { seconds: u64, nanoseconds: u32 }
                now: func() -> datetime;
            }
        }
    "#,
    world: "importer",
    generate_all,
});

struct Importer;

impl Guest for Importer {
    fn configure(_config: Vec<(String, String)>) -> Result<u64, String> {
        Ok(wasi::clocks::wall_clock::now().seconds)
    }
}

export!(Importer);
