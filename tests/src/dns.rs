//! A minimal blocking DNS client for the lab (UDP, one query, one answer), so `up` can
//! wait for dnsctl and the tests can read MX, A and SOA without parsing `dig` output.

use std::net::{SocketAddr, UdpSocket};
use std::str::FromStr as _;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};

pub const MX: RecordType = RecordType::MX;
pub const A: RecordType = RecordType::A;
pub const SOA: RecordType = RecordType::SOA;

/// The answers to `name rtype` as text: MX `"10 host1.example.test"`, A `"127.0.0.11"`,
/// SOA the serial. MX answers are sorted by preference. `None`: no answer in time.
pub fn query(server: SocketAddr, name: &str, rtype: RecordType) -> Option<Vec<String>> {
    let sock = UdpSocket::bind(if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    let id = fastrand::u16(..);
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(Name::from_str(name).ok()?, rtype));
    sock.send_to(&msg.to_vec().ok()?, server).ok()?;
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    let reply = Message::from_vec(&buf[..n]).ok()?;
    if reply.metadata.id != id {
        return None;
    }
    let mut mx: Vec<(u16, String)> = Vec::new();
    let mut out = Vec::new();
    for r in &reply.answers {
        match &r.data {
            RData::MX(m) => mx.push((
                m.preference,
                m.exchange.to_ascii().trim_end_matches('.').to_string(),
            )),
            RData::A(a) => out.push(a.0.to_string()),
            RData::AAAA(a) => out.push(a.0.to_string()),
            RData::SOA(s) => out.push(s.serial.to_string()),
            _ => {}
        }
    }
    mx.sort();
    out.extend(mx.into_iter().map(|(p, h)| format!("{p} {h}")));
    Some(out)
}
