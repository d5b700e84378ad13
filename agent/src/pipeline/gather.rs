//! `message = "transaction"`: everything one transaction sends to one destination
//! joined into a JSON array, split into numbered parts (`sluice.part`) above
//! `sink.max_message_bytes`.
//!
//! Invariants: parts are sent in the order they were started, all before the
//! transaction's commit reaches the publisher; a part never exceeds the limit unless a
//! single message does (which the oversize policy has already dealt with).

use crate::sink::OutMessage;

use super::Run;

/// Messages of one transaction for one destination, joined as a JSON array.
pub(super) struct Gathered {
    /// The first message, its payload the array so far (without the closing `]`).
    msg: OutMessage,
    events: usize,
    part: u32,
    mixed: bool,
}

impl Gathered {
    pub(super) fn new(mut msg: OutMessage, part: u32) -> Self {
        msg.payload.insert(0, b'[');
        Gathered {
            msg,
            events: 1,
            part,
            mixed: false,
        }
    }

    pub(super) fn push(&mut self, m: OutMessage) {
        self.msg.payload.push(b',');
        self.msg.payload.extend_from_slice(&m.payload);
        self.events += 1;
        if self.msg.header("sluice.table") != m.header("sluice.table")
            || self.msg.header("sluice.type") != m.header("sluice.type")
        {
            self.mixed = true;
        }
    }
}

impl Run<'_> {
    /// `message = "transaction"`: appends a message to the transaction's message for the
    /// same destination (topic, and explicit partition or else key), sending that one
    /// first as a numbered part if the result would exceed `max_message_bytes`.
    pub(super) fn gather(&mut self, msg: OutMessage) -> anyhow::Result<()> {
        let limit = self.cfg.sink.max_message_bytes;
        let same = |a: &Gathered| {
            a.msg.topic == msg.topic
                && a.msg.partition == msg.partition
                && (msg.partition.is_some() || a.msg.key == msg.key)
                && a.msg.header("sluice.module") == msg.header("sluice.module")
        };
        let at = self.open.gathered.iter().position(same);
        if let Some(i) = at
            && self.open.gathered[i].msg.wire_bytes() + msg.payload.len() + 2 > limit
        {
            let full = self.open.gathered.remove(i);
            let part = full.part + 1;
            self.send_gathered(full)?;
            self.open.gathered.push(Gathered::new(msg, part));
            return Ok(());
        }
        match at {
            Some(i) => self.open.gathered[i].push(msg),
            None => self.open.gathered.push(Gathered::new(msg, 0)),
        }
        Ok(())
    }

    pub(super) fn send_gathered(&mut self, g: Gathered) -> anyhow::Result<()> {
        let mut msg = g.msg;
        msg.payload.push(b']');
        let set = |msg: &mut OutMessage, k: &str, v: String| match msg
            .headers
            .iter_mut()
            .find(|(n, _)| n == k)
        {
            Some(h) => h.1 = v.into_bytes().into(),
            None => msg
                .headers
                .push((k.to_string().into(), v.into_bytes().into())),
        };
        set(&mut msg, "sluice.events", g.events.to_string());
        set(&mut msg, "sluice.part", g.part.to_string());
        if g.mixed {
            set(&mut msg, "sluice.table", "*".into());
            set(&mut msg, "sluice.type", "*".into());
        }
        self.sink.send(msg)?;
        self.progress.summary.messages += 1;
        Ok(())
    }

    /// Sends the transaction's gathered messages, in the order they were started.
    pub(super) fn flush_gathered(&mut self) -> anyhow::Result<()> {
        for g in std::mem::take(&mut self.open.gathered) {
            self.send_gathered(g)?;
        }
        Ok(())
    }
}
