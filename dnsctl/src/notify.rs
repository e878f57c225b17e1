//! RFC 1996 NOTIFY to the secondaries after a zone change, so they transfer the new
//! serial now instead of at the next SOA refresh.
//!
//! One UDP socket per (target, zone), all concurrently; each NOTIFY is sent up to
//! [`RETRIES`] + 1 times, [`WAIT`] apart, until a reply with our id comes back from the
//! target. Failures are reported, never raised: a secondary that misses a NOTIFY still
//! catches up at the SOA refresh.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use serde::Serialize;
use tokio::net::UdpSocket;

/// Resends after the first try (RFC 1996 §3.6: retransmit until acknowledged, bounded).
pub const RETRIES: u32 = 3;
/// How long each try waits for the reply.
pub const WAIT: Duration = Duration::from_secs(1);

/// The outcome of notifying one target about one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifyResult {
    pub target: SocketAddr,
    pub zone: String,
    /// The target answered with NOERROR.
    pub ok: bool,
    /// What happened, for the event log (`"acknowledged after 1 try"`, `"no reply..."`).
    pub detail: String,
}

/// Send a NOTIFY for each of `zones` to each of `targets`, concurrently; one result per
/// (target, zone), in `targets` × `zones` order.
pub async fn notify(targets: &[SocketAddr], zones: &[String], serial: u32) -> Vec<NotifyResult> {
    let mut set = tokio::task::JoinSet::new();
    let mut pairs = Vec::new();
    for &target in targets {
        for zone in zones {
            let index = pairs.len();
            pairs.push((target, zone.clone()));
            let zone = zone.clone();
            set.spawn(async move { (index, notify_one(target, &zone, serial).await) });
        }
    }
    let mut outcomes: Vec<Option<Result<String, String>>> = vec![None; pairs.len()];
    while let Some(joined) = set.join_next().await {
        // A task that panicked leaves its slot empty and is reported below.
        if let Ok((index, outcome)) = joined {
            if let Some(slot) = outcomes.get_mut(index) {
                *slot = Some(outcome);
            }
        }
    }
    pairs
        .into_iter()
        .zip(outcomes)
        .map(|((target, zone), outcome)| {
            let (ok, detail) = match outcome {
                Some(Ok(d)) => (true, d),
                Some(Err(d)) => (false, d),
                None => (false, "internal error: notify task failed".to_string()),
            };
            NotifyResult {
                target,
                zone,
                ok,
                detail,
            }
        })
        .collect()
}

/// One NOTIFY exchange: Ok(detail) when acknowledged with NOERROR.
async fn notify_one(target: SocketAddr, zone: &str, serial: u32) -> Result<String, String> {
    let name = Name::from_ascii(format!("{}.", zone.trim_end_matches('.')))
        .map_err(|e| format!("zone {zone:?} is not a domain name: {e}"))?;
    let id = fastrand::u16(..);
    let mut msg = Message::new(id, MessageType::Query, OpCode::Notify);
    msg.metadata.authoritative = true;
    msg.add_query(Query::query(name, RecordType::SOA));
    let packet = msg
        .to_vec()
        .map_err(|e| format!("cannot encode NOTIFY: {e}"))?;
    let local: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("cannot bind a UDP socket: {e}"))?;
    let mut last = String::from("no reply");
    for attempt in 1..=RETRIES + 1 {
        if let Err(e) = socket.send_to(&packet, target).await {
            last = format!("send failed: {e}");
            tokio::time::sleep(WAIT).await;
            continue;
        }
        match tokio::time::timeout(WAIT, reply(&socket, target, id)).await {
            Ok(Ok(ResponseCode::NoError)) => {
                return Ok(format!(
                    "serial {serial} acknowledged after {attempt} {}",
                    if attempt == 1 { "try" } else { "tries" }
                ))
            }
            Ok(Ok(rcode)) => return Err(format!("serial {serial} answered {rcode}")),
            Ok(Err(e)) => last = e,
            Err(_) => last = "no reply".to_string(),
        }
    }
    Err(format!(
        "serial {serial}: {last} after {} tries, {} s apart",
        RETRIES + 1,
        WAIT.as_secs()
    ))
}

/// Wait for the reply to NOTIFY `id` from `target`, skipping anything else that arrives
/// (strays, late replies to an earlier id never match: one socket per exchange).
async fn reply(socket: &UdpSocket, target: SocketAddr, id: u16) -> Result<ResponseCode, String> {
    let mut buf = [0u8; 4096];
    loop {
        let (len, from) = socket
            .recv_from(&mut buf)
            .await
            .map_err(|e| format!("receive failed: {e}"))?;
        if from != target {
            continue;
        }
        let Some(bytes) = buf.get(..len) else {
            continue;
        };
        let Ok(msg) = Message::from_vec(bytes) else {
            continue;
        };
        if msg.metadata.id == id
            && msg.metadata.message_type == MessageType::Response
            && msg.metadata.op_code == OpCode::Notify
        {
            return Ok(msg.metadata.response_code);
        }
    }
}
