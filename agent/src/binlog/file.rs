//! Offline binlog files: framing from a byte stream into events for the [`Decoder`].
//!
//! Reads event by event with one reusable buffer (memory stays at the largest event),
//! accepts gzip-compressed files (`.gz`), and reports a truncated tail or a corrupt event
//! with the file name and the event's offset. Nothing is emitted for an event that fails.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use super::decoder::Decoder;
use super::error::{BinlogError, DecodeError, Location};
use super::{
    BINLOG_MAGIC, CHECKSUM_LEN, ChecksumAlg, EventHeader, FormatDescription, HEADER_LEN, event_type,
};
use crate::event::SourceItem;

/// Largest event accepted from a file (MySQL's own ceiling is 1 GiB).
const MAX_EVENT: u32 = 1 << 30;

/// Counters of one file replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Events read.
    pub events: u64,
    /// Bytes read, magic included.
    pub bytes: u64,
}

/// Opens `path` (gzip-compressed if it ends in `.gz`).
fn open(path: &Path) -> Result<Box<dyn Read>, BinlogError> {
    let name = path.display().to_string();
    let f = File::open(path).map_err(|source| BinlogError::Io {
        file: name.clone(),
        source,
    })?;
    let r = BufReader::with_capacity(1 << 20, f);
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(BufReader::new(flate2::read::GzDecoder::new(r))))
    } else {
        Ok(Box::new(r))
    }
}

/// The binlog file name positions use: the path's last component without `.gz`.
pub fn binlog_name(path: &Path) -> String {
    let base = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    base.strip_suffix(".gz").map(str::to_string).unwrap_or(base)
}

/// Reads every event of `path` through `decoder`, handing each decoded item to `emit`.
/// Stops at the first error; items of earlier events have been emitted by then.
pub fn read_file<E>(
    path: &Path,
    decoder: &mut Decoder,
    emit: impl FnMut(SourceItem) -> Result<(), E>,
) -> Result<FileStats, ReadError<E>> {
    let mut r = open(path)?;
    decoder.start_file(&binlog_name(path));
    read_stream(&mut r, &path.display().to_string(), decoder, emit)
}

/// Reads every event of one binlog file's bytes from `r` (magic first) through
/// `decoder`, as [`read_file`] does; `display` names the input in errors. The decoder's
/// file name must already be set ([`Decoder::start_file`]).
///
/// Every input ends: each event advances by its declared size (at least a header), and
/// the buffer holds at most the bytes the input really has, so time and memory follow
/// the input's length, not what its headers claim.
pub fn read_stream<E>(
    r: &mut dyn Read,
    display: &str,
    decoder: &mut Decoder,
    mut emit: impl FnMut(SourceItem) -> Result<(), E>,
) -> Result<FileStats, ReadError<E>> {
    let display = display.to_string();
    let mut magic = [0u8; 4];
    let got = read_full(r, &mut magic).map_err(|source| BinlogError::Io {
        file: display.clone(),
        source,
    })?;
    if got < 4 || magic != BINLOG_MAGIC {
        return Err(BinlogError::NotBinlog {
            file: display,
            magic: magic[..got].to_vec(),
        }
        .into());
    }
    let mut stats = FileStats {
        events: 0,
        bytes: 4,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut items = Vec::new();
    let mut offset: u64 = 4;
    loop {
        buf.resize(HEADER_LEN, 0);
        let got = read_full(r, &mut buf[..HEADER_LEN]).map_err(|source| BinlogError::Io {
            file: display.clone(),
            source,
        })?;
        if got == 0 {
            break;
        }
        let location = |event_type: Option<&'static str>| Location {
            file: display.clone(),
            offset,
            event_type,
        };
        if got < HEADER_LEN {
            return Err(BinlogError::Event {
                location: location(None),
                error: DecodeError::Truncated {
                    what: "event header (file ends inside it)",
                    at: got,
                    needed: HEADER_LEN,
                    available: got,
                },
            }
            .into());
        }
        let header = EventHeader::parse(&buf).map_err(|error| BinlogError::Event {
            location: location(None),
            error,
        })?;
        let tname = Some(event_type::name(header.event_type));
        if header.event_size > MAX_EVENT {
            return Err(BinlogError::Event {
                location: location(tname),
                error: DecodeError::Malformed {
                    what: "event header",
                    at: 9,
                    detail: format!("event size {} exceeds 1 GiB", header.event_size),
                },
            }
            .into());
        }
        let size = header.event_size as usize;
        let got = read_growing(r, &mut buf, size).map_err(|source| BinlogError::Io {
            file: display.clone(),
            source,
        })?;
        if got < size {
            return Err(BinlogError::Event {
                location: location(tname),
                error: DecodeError::Truncated {
                    what: "event (file ends inside it)",
                    at: got,
                    needed: size,
                    available: got,
                },
            }
            .into());
        }
        items.clear();
        decoder
            .decode(&buf, offset, &mut items)
            .map_err(|error| BinlogError::Event {
                location: location(tname),
                error,
            })?;
        for item in items.drain(..) {
            emit(item).map_err(ReadError::Emit)?;
        }
        stats.events += 1;
        offset += size as u64;
        stats.bytes = offset;
    }
    Ok(stats)
}

/// Failure of [`read_file`]: the binlog, or the consumer of its items.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E> {
    /// The file could not be read or decoded.
    #[error(transparent)]
    Binlog(#[from] BinlogError),
    /// The consumer refused an item.
    #[error("{0}")]
    Emit(E),
}

/// Reads the rest of an event whose header is in `buf` until `buf` holds `size` bytes or
/// the input ends; returns the bytes held. The buffer grows by doubling as bytes arrive,
/// never to the size the header declares up front: a short file claiming a 1 GiB event
/// costs what it holds, not 1 GiB.
fn read_growing(r: &mut dyn Read, buf: &mut Vec<u8>, size: usize) -> std::io::Result<usize> {
    let mut have = buf.len().min(size);
    buf.truncate(have);
    while have < size {
        let step = (size - have).min(have.max(GROW_STEP));
        buf.resize(have + step, 0);
        let got = read_full(r, &mut buf[have..])?;
        have += got;
        if got < step {
            buf.truncate(have);
            break;
        }
    }
    Ok(have)
}

/// Smallest growth step of the event buffer.
const GROW_STEP: usize = 64 * 1024;

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Recomputes the CRC32 of every event of a binlog file image (magic first) that its
/// format description says carries one, and returns how many were resealed. For tests
/// and fuzzing: a changed byte then reaches the decoder, as a server bug or a corrupt
/// disk would deliver it, instead of stopping at the checksum. Stops at the first event
/// whose declared size does not fit.
pub fn reseal(file: &mut [u8]) -> usize {
    let mut offset = BINLOG_MAGIC.len();
    let mut crc = false;
    let mut sealed = 0;
    while let Ok(header) = EventHeader::parse(&file[offset.min(file.len())..]) {
        let size = header.event_size as usize;
        if size < HEADER_LEN + CHECKSUM_LEN || offset + size > file.len() {
            break;
        }
        let ev = &mut file[offset..offset + size];
        let body = size - CHECKSUM_LEN;
        let sum = if header.event_type == event_type::FORMAT_DESCRIPTION {
            crc = matches!(
                FormatDescription::split_checksum(ev),
                Ok((ChecksumAlg::Crc32, _))
            );
            // MySQL sums a live file's FDE before it sets LOG_EVENT_BINLOG_IN_USE_F
            // (0x01 of the flags at byte 17): sum it with the flag clear, the form
            // `frame` accepts whichever way the flag stands.
            let mut h = crc32fast::Hasher::new();
            h.update(&ev[..17]);
            h.update(&[ev[17] & !0x01]);
            h.update(&ev[18..body]);
            h.finalize()
        } else {
            crc32fast::hash(&ev[..body])
        };
        if crc {
            ev[body..].copy_from_slice(&sum.to_le_bytes());
            sealed += 1;
        }
        offset += size;
    }
    sealed
}
