//! Hostile binlog bytes: real corpus files with one field changed and their checksums
//! recomputed (as a server bug or a corrupt disk would hand them over), and files whose
//! headers lie about their size. Each must end promptly with an error naming the event's
//! offset, using memory that follows the input's real length.
//!
//! Every regression the fuzzer (`agent/fuzz`) finds is pinned here with its input.

use std::io::Read;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use sluice::binlog::file::{ReadError, read_stream, reseal};
use sluice::binlog::{BinlogError, DecodeError, Decoder, DecoderOptions, event_type};
use sluice_tests::corpora;

/// Decodes `bytes` as one file on another thread; a decode that does not end within
/// `limit` fails the test (the thread is left behind, which is what a hang looks like).
fn decode_bytes(bytes: Vec<u8>, limit: Duration) -> Result<u64, BinlogError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut dec = Decoder::new("hostile.000001", DecoderOptions::default());
        let mut items = 0u64;
        let res = read_stream(
            &mut &bytes[..],
            "hostile.000001",
            &mut dec,
            |_| -> Result<(), std::convert::Infallible> {
                items += 1;
                Ok(())
            },
        );
        let _ = tx.send(res.map(|_| items).map_err(|e| match e {
            ReadError::Binlog(b) => b,
            ReadError::Emit(never) => match never {},
        }));
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => panic!("decoding did not end within {limit:?}"),
    }
}

/// Offsets and types of the events of a binlog file image.
fn events(file: &[u8]) -> Vec<(usize, u8)> {
    let mut out = Vec::new();
    let mut at = 4;
    while at + 19 <= file.len() {
        let size = u32::from_le_bytes([file[at + 9], file[at + 10], file[at + 11], file[at + 12]]);
        out.push((at, file[at + 4]));
        at += size as usize;
    }
    out
}

fn corpus_file(rel: &str) -> Vec<u8> {
    let p = corpora().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", Path::new(&p).display()))
}

/// MySQL 5.6, CRC32, WRITE_ROWS v2 of a two-column table.
const ROWS_FILE: &str = "binlog-parser/data/fixtures/mysql-bin.01";

#[test]
fn an_unchanged_corpus_file_still_decodes_after_resealing() {
    let mut file = corpus_file(ROWS_FILE);
    let before = file.clone();
    assert!(reseal(&mut file) > 0, "the file carries CRC32 checksums");
    assert_eq!(file, before, "resealing a sound file changes nothing");
    let items = decode_bytes(file, Duration::from_secs(10)).expect("the file decodes");
    assert!(items > 0);
}

#[test]
fn an_empty_column_bitmap_is_an_error_not_an_endless_loop() {
    let mut file = corpus_file(ROWS_FILE);
    let (at, _) = *events(&file)
        .iter()
        .find(|(_, t)| *t == event_type::WRITE_ROWS_V2)
        .expect("a WRITE_ROWS v2 event");
    // Post-header: table id (6) + flags (2) + extra-data length (2, counting itself).
    let extra = u16::from_le_bytes([file[at + 19 + 8], file[at + 19 + 9]]) as usize;
    let width_at = at + 19 + 8 + extra;
    let width = usize::from(file[width_at]);
    assert!(width > 0 && width < 251, "a one-byte column count");
    for b in &mut file[width_at + 1..width_at + 1 + width.div_ceil(8)] {
        *b = 0;
    }
    reseal(&mut file);
    let err = decode_bytes(file, Duration::from_secs(10)).expect_err("an error, not rows");
    let BinlogError::Event { location, error } = &err else {
        panic!("an event error, got {err}");
    };
    assert_eq!(
        location.offset, at as u64,
        "the error names the event: {err}"
    );
    assert!(
        matches!(error, DecodeError::Malformed { what, .. } if what.contains("bitmap")),
        "{err}"
    );
    assert!(err.to_string().contains("no column"), "{err}");
}

/// A reader that remembers the largest buffer it was asked to fill: the decoder's
/// event buffer is at least that large.
struct Measured<'a> {
    inner: &'a [u8],
    largest: usize,
}

impl Read for Measured<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.largest = self.largest.max(buf.len());
        self.inner.read(buf)
    }
}

#[test]
fn a_short_file_claiming_a_huge_event_costs_what_it_holds() {
    let real = corpus_file(ROWS_FILE);
    let evs = events(&real);
    // Magic and the format description, then an event header that claims 1 GiB, padded
    // to 580 bytes in all.
    let (second, _) = evs[1];
    let mut file = real[..second].to_vec();
    let mut header = real[second..second + 19].to_vec();
    header[9..13].copy_from_slice(&(1u32 << 30).to_le_bytes());
    file.extend_from_slice(&header);
    file.resize(580, 0xab);

    let mut dec = Decoder::new("hostile.000001", DecoderOptions::default());
    let mut r = Measured {
        inner: &file,
        largest: 0,
    };
    let res = read_stream(
        &mut r,
        "hostile.000001",
        &mut dec,
        |_| -> Result<(), std::convert::Infallible> { Ok(()) },
    );
    let Err(ReadError::Binlog(BinlogError::Event { location, error })) = res else {
        panic!("a truncated event error");
    };
    assert_eq!(location.offset, second as u64);
    assert!(
        matches!(error, DecodeError::Truncated { needed, .. } if needed == 1 << 30),
        "{error}"
    );
    assert!(
        r.largest <= 1 << 20,
        "the buffer grew to {} bytes for a 580-byte file",
        r.largest
    );
}

#[test]
fn every_single_byte_change_of_a_rows_event_ends_promptly() {
    // Every byte of the first rows event set to 0x00, 0xff and flipped, one at a time,
    // checksums recomputed: each variant decodes or fails, none hangs.
    let file = corpus_file(ROWS_FILE);
    let evs = events(&file);
    let i = evs
        .iter()
        .position(|(_, t)| *t == event_type::WRITE_ROWS_V2)
        .expect("a WRITE_ROWS v2 event");
    let (start, end) = (evs[i].0, evs.get(i + 1).map_or(file.len(), |e| e.0));
    let mut variants = Vec::new();
    for at in start + 19..end - 4 {
        for v in [0u8, 0xff, !file[at]] {
            let mut f = file.clone();
            f[at] = v;
            reseal(&mut f);
            variants.push(f);
        }
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for f in variants {
            let _ = decode_bytes(f, Duration::from_secs(5));
        }
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("every variant ends");
}
