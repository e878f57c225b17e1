//! A tiny authoritative DNS responder for tests: answers MX and A queries from a fixed
//! table over UDP on 127.0.0.1, NOERROR/empty for other types of known names, NXDOMAIN
//! for everything else.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, MX};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// The zone data: MX and A records by owner name (no trailing dot).
#[derive(Debug, Default, Clone)]
pub struct Zone {
    pub mx: HashMap<String, Vec<(u16, String)>>,
    pub a: HashMap<String, Ipv4Addr>,
}

impl Zone {
    /// `remote.test` MX 10 `mx.remote.test`, which is 127.0.0.1.
    pub fn remote_test() -> Zone {
        let mut z = Zone::default();
        z.mx.insert("remote.test".into(), vec![(10, "mx.remote.test".into())]);
        z.a.insert("mx.remote.test".into(), Ipv4Addr::LOCALHOST);
        z
    }

    fn answer(&self, name: &Name, rtype: RecordType) -> Option<Vec<Record>> {
        let key = name.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        let known = self.mx.contains_key(&key) || self.a.contains_key(&key);
        if !known {
            return None;
        }
        let mut out = Vec::new();
        if rtype == RecordType::MX {
            for (pref, host) in self.mx.get(&key).into_iter().flatten() {
                let exchange = Name::from_ascii(format!("{host}.")).unwrap();
                out.push(Record::from_rdata(
                    name.clone(),
                    60,
                    RData::MX(MX::new(*pref, exchange)),
                ));
            }
        }
        if rtype == RecordType::A {
            if let Some(ip) = self.a.get(&key) {
                out.push(Record::from_rdata(name.clone(), 60, RData::A(A(*ip))));
            }
        }
        Some(out)
    }
}

/// Serve `zone` until the runtime ends; returns the server's address.
pub async fn start(zone: Zone) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
            resp.metadata.authoritative = true;
            resp.metadata.recursion_desired = req.metadata.recursion_desired;
            resp.add_queries(req.queries.clone());
            match req
                .queries
                .first()
                .and_then(|q| zone.answer(&q.name, q.query_type))
            {
                Some(records) => {
                    resp.add_answers(records);
                }
                None => resp.metadata.response_code = ResponseCode::NXDomain,
            }
            if let Ok(bytes) = resp.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
        }
    });
    addr
}
