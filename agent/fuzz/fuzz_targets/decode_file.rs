//! Fuzz target: arbitrary bytes as one binlog file, checksums recomputed so mutations
//! reach the event parsers instead of stopping at the CRC. The decoder must end with
//! items or an error (never a panic, a hang or a memory blow-up; libFuzzer's
//! `-timeout` and `-rss_limit_mb` enforce the last two).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::binlog::file::{read_stream, reseal};
use sluice::binlog::{Decoder, DecoderOptions};

fuzz_target!(|data: &[u8]| {
    let mut file = Vec::with_capacity(data.len() + 4);
    // Most inputs start with the magic (the seeds do); the rest get it, so a mutation
    // spends its bytes on events.
    if !data.starts_with(b"\xfebin") {
        file.extend_from_slice(b"\xfebin");
    }
    file.extend_from_slice(data);
    reseal(&mut file);
    let mut dec = Decoder::new("fuzz.000001", DecoderOptions::default());
    let _ = read_stream(
        &mut &file[..],
        "fuzz.000001",
        &mut dec,
        |item| -> Result<(), std::convert::Infallible> {
            // Touch what later stages read, so lazily decoded parts are exercised too.
            std::hint::black_box(&item);
            Ok(())
        },
    );
});
