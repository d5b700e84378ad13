//! Key builders: message keys from row values, with separators that cannot collide.

use crate::abi::{Cell, EventRef};
use crate::router::Table;

/// Builds a key from values joined by `|` (escaped inside values), with
/// NULL written as `\N` (MySQL's own NULL marker), so `("a", NULL)` and `("a", "")`
/// differ. Reuse one builder per batch: `clear` keeps capacity.
#[derive(Debug, Clone, Default)]
pub struct KeyBuilder {
    buf: Vec<u8>,
    first: bool,
}

impl KeyBuilder {
    /// An empty key.
    pub fn new() -> Self {
        KeyBuilder {
            buf: Vec::with_capacity(64),
            first: true,
        }
    }

    /// Empties the key.
    pub fn clear(&mut self) -> &mut Self {
        self.buf.clear();
        self.first = true;
        self
    }

    /// Appends a part, after `|` unless it is the first.
    pub fn part(&mut self, cell: Cell<'_>) -> &mut Self {
        if !self.first {
            self.buf.push(b'|');
        }
        self.first = false;
        match cell {
            Cell::Value(v) => {
                for &b in v {
                    // Escape the separator and the escape so parts stay unambiguous.
                    if b == b'|' || b == b'\\' {
                        self.buf.push(b'\\');
                    }
                    self.buf.push(b);
                }
            }
            Cell::Null | Cell::Absent => self.buf.extend_from_slice(b"\\N"),
        }
        self
    }

    /// Appends a literal string part (e.g. the table name).
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.part(Cell::Value(s.as_bytes()))
    }

    /// Appends the primary-key values of `ev`'s current row image.
    pub fn primary_key(&mut self, table: &Table, ev: &EventRef<'_>) -> &mut Self {
        for &i in &table.primary_key {
            self.part(ev.current(i as usize));
        }
        self
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_do_not_collide() {
        let mut a = KeyBuilder::new();
        a.part(Cell::Value(b"a|b")).part(Cell::Value(b"c"));
        let mut b = KeyBuilder::new();
        b.part(Cell::Value(b"a")).part(Cell::Value(b"b|c"));
        assert_ne!(a.as_bytes(), b.as_bytes());
        let mut n = KeyBuilder::new();
        n.part(Cell::Null);
        let mut e = KeyBuilder::new();
        e.part(Cell::Value(b""));
        assert_ne!(n.as_bytes(), e.as_bytes());
    }
}
