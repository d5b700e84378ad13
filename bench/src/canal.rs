//! `canal-bench PORT DESTINATION ROWS`: a Canal TCP client as services run it —
//! `subscribe`, then `getWithoutAck(1000)` and an immediate `ack` of each batch — until
//! ROWS rows arrived. Prints `rows seconds` (from the first batch to the last row).
//!
//! It decodes every entry and counts rows the way a consumer must, so the figure
//! includes the client's share of the protocol's cost.

use std::time::{Duration, Instant};

use prost::Message;
use sluice::format::canal_entry::{Entry, RowChange, entry_type};
use sluice::sink::canal_server::packet::{self, kind};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn send<M: Message>(s: &mut TcpStream, k: i32, body: &M) -> anyhow::Result<()> {
    s.write_all(&packet::frame(k, body.encode_to_vec())).await?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(port), Some(dest), Some(rows)) = (args.first(), args.get(1), args.get(2)) else {
        anyhow::bail!("usage: canal-bench PORT DESTINATION ROWS");
    };
    let port: u16 = port.parse()?;
    let want: u64 = rows.parse()?;
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    s.set_nodelay(true)?;
    let hello = packet::read(&mut s).await?;
    anyhow::ensure!(hello.r#type == kind::HANDSHAKE, "no handshake");
    let auth = packet::ClientAuth {
        destination: dest.clone(),
        client_id: "1001".into(),
        ..Default::default()
    };
    send(&mut s, kind::CLIENT_AUTHENTICATION, &auth).await?;
    let ack = packet::read(&mut s).await?;
    anyhow::ensure!(ack.r#type == kind::ACK, "authentication refused");
    let get = packet::Get {
        destination: dest.clone(),
        client_id: "1001".into(),
        fetch_size: 1000,
        timeout: Some(100),
        unit: Some(2),
        auto_ack: Some(false),
    };
    let mut got = 0u64;
    let mut first: Option<Instant> = None;
    while got < want {
        send(&mut s, kind::GET, &get).await?;
        let p = packet::read_at_most(&mut s, 1 << 30).await?;
        anyhow::ensure!(p.r#type == kind::MESSAGES, "unexpected packet {}", p.r#type);
        let m = packet::Messages::decode(&p.body[..])?;
        if m.batch_id <= 0 {
            continue;
        }
        first.get_or_insert_with(Instant::now);
        for e in &m.messages {
            let e = Entry::decode(&e[..])?;
            if e.entry_type == Some(entry_type::ROW_DATA) {
                got += RowChange::decode(&e.store_value[..])?.row_datas.len() as u64;
            }
        }
        let a = packet::ClientAck {
            destination: dest.clone(),
            client_id: "1001".into(),
            batch_id: m.batch_id,
        };
        send(&mut s, kind::CLIENT_ACK, &a).await?;
    }
    let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    println!("{got} {secs:.3}");
    Ok(())
}
