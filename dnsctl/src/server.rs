//! The authoritative DNS server: turns a [`Snapshot`] into wire records and answers
//! queries for it over UDP and TCP, swapping whole snapshots atomically.
//!
//! Queries go to a hickory [`Catalog`] of in-memory zones (AA set, NXDOMAIN/NODATA with
//! the SOA in authority, REFUSED outside our zones, RA never set). Zone transfers (AXFR,
//! and IXFR answered with the full zone as RFC 1995 §4 allows) are answered here, not by
//! the catalog, so the source-address ACL is ours and the zone is sent in snapshot order,
//! SOA first and last.
//!
//! Atomicity: everything one snapshot serves (catalog and transfer lists) lives in one
//! [`Served`] behind one `Arc`. `publish` builds the next one off to the side and swaps
//! the `Arc`; each request clones the current `Arc` once and answers from it alone, so an
//! answer never mixes two serials.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{
    AxfrPolicy, Catalog, MessageResponseBuilder, ZoneHandler, ZoneType,
};
use hickory_server::Server;
use tracing::{debug, warn};

use crate::zone::{Rec, Snapshot, Zone};

/// Idle TCP connections are closed after this; secondaries reconnect per transfer.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection before the writer applies back-pressure.
const TCP_RESPONSE_BUFFER: usize = 32;

/// The record types a snapshot may hold. Others are refused at build time rather than
/// served half-understood.
const SUPPORTED: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::NS,
    RecordType::MX,
    RecordType::SOA,
    RecordType::CNAME,
    RecordType::TXT,
    RecordType::SRV,
    RecordType::PTR,
    RecordType::CAA,
];

/// Why a snapshot cannot be served. Each names the zone or record at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneError {
    #[error("zone {origin:?}: not a valid domain name: {reason}")]
    BadOrigin { origin: String, reason: String },
    #[error("record {name} {rtype} {value:?}: not a valid owner name: {reason}")]
    BadName {
        name: String,
        rtype: String,
        value: String,
        reason: String,
    },
    #[error("record {name} {rtype} {value:?}: type {rtype} is not served (A, AAAA, NS, MX, SOA, CNAME, TXT, SRV, PTR, CAA are)")]
    UnsupportedType {
        name: String,
        rtype: String,
        value: String,
    },
    #[error("record {name} {rtype} {value:?}: value does not parse: {reason}")]
    BadValue {
        name: String,
        rtype: String,
        value: String,
        reason: String,
    },
    #[error("record {name} {rtype} {value:?}: outside zone {origin}")]
    OutOfZone {
        name: String,
        rtype: String,
        value: String,
        origin: String,
    },
    #[error("zone {origin}: needs exactly one SOA record at the apex, has {count}")]
    Soa { origin: String, count: usize },
    #[error("zone {origin}: {reason}")]
    Zone { origin: String, reason: String },
}

/// Everything served at one serial: swapped as a unit.
struct Served {
    serial: u32,
    catalog: Catalog,
    /// Per zone apex: the AXFR answer, SOA first and last.
    transfers: HashMap<LowerName, Vec<Record>>,
}

struct Inner {
    current: RwLock<Arc<Served>>,
    secondaries: Vec<IpAddr>,
}

impl Inner {
    fn current(&self) -> Arc<Served> {
        // A poisoned lock still holds a complete Arc (the swap is one assignment), so
        // serving it is safe.
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn may_transfer(&self, src: IpAddr) -> bool {
        // A v4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let src = src.to_canonical();
        self.secondaries.iter().any(|s| s.to_canonical() == src)
    }
}

/// The authoritative server. Cheap to clone; clones share the served snapshot.
#[derive(Clone)]
pub struct DnsServer {
    inner: Arc<Inner>,
}

impl fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsServer")
            .field("serial", &self.serial())
            .field("secondaries", &self.inner.secondaries)
            .finish()
    }
}

impl DnsServer {
    /// Build the served zones from `snapshot`; AXFR only from `secondaries`.
    pub fn new(snapshot: &Snapshot, secondaries: Vec<IpAddr>) -> Result<DnsServer, ZoneError> {
        let served = build(snapshot)?;
        Ok(DnsServer {
            inner: Arc::new(Inner {
                current: RwLock::new(Arc::new(served)),
                secondaries,
            }),
        })
    }

    /// Replace everything served, atomically: a query sees the old snapshot or the new
    /// one, never a mix. On error the old snapshot stays served.
    pub fn publish(&self, snapshot: &Snapshot) -> Result<(), ZoneError> {
        let next = Arc::new(build(snapshot)?);
        let old = {
            let mut cur = self
                .inner
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *cur, next)
        };
        // The old catalog is freed outside the lock (or by the last in-flight query).
        drop(old);
        Ok(())
    }

    /// The serial currently served.
    pub fn serial(&self) -> u32 {
        self.inner.current().serial
    }

    /// Bind UDP and TCP on `listen` (errors returned before serving starts), then serve
    /// until `shutdown` completes.
    pub async fn serve(
        &self,
        listen: SocketAddr,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        // hickory reads each UDP socket on one task, so one socket is one core's worth of
        // queries. Several sockets on the same port (SO_REUSEPORT) let the kernel spread
        // datagrams over them, one receive loop per core.
        let first = reuseport_udp(listen)?;
        // With port 0 the kernel picks one; the others and TCP must use the same.
        let bound = first.local_addr()?;
        let tcp = tokio::net::TcpListener::bind(bound).await?;
        let mut server = Server::new(Handler(Arc::clone(&self.inner)));
        server.register_socket(first);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for _ in 1..cores {
            server.register_socket(reuseport_udp(bound)?);
        }
        server.register_listener(tcp, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
        tokio::pin!(shutdown);
        tokio::select! {
            res = server.block_until_done() => {
                return res.map_err(|e| std::io::Error::other(format!("dns server stopped: {e}")));
            }
            () = &mut shutdown => {}
        }
        server
            .shutdown_gracefully()
            .await
            .map_err(|e| std::io::Error::other(format!("dns server shutdown: {e}")))
    }
}

/// A non-blocking UDP socket on `addr` with SO_REUSEPORT set.
fn reuseport_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// The request handler the hickory [`Server`] drives.
struct Handler(Arc<Inner>);

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let served = self.0.current();
        let is_transfer = request.metadata.message_type == MessageType::Query
            && request.metadata.op_code == OpCode::Query
            && request
                .queries
                .queries()
                .first()
                .is_some_and(|q| matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR));
        if is_transfer {
            transfer(&self.0, &served, request, response_handle).await
        } else {
            RequestHandler::handle_request::<R, T>(&served.catalog, request, response_handle).await
        }
    }
}

/// AXFR, or IXFR answered with the full zone. Only for the secondaries, only over TCP
/// (RFC 5936 §4.2: no AXFR over UDP; an IXFR over UDP is refused so the client retries
/// over TCP).
async fn transfer<R: ResponseHandler>(
    inner: &Inner,
    served: &Served,
    request: &Request,
    mut response_handle: R,
) -> ResponseInfo {
    let edns = request.edns.as_ref().map(|req| {
        let mut e = Edns::new();
        e.set_max_payload(req.max_payload().max(512));
        e
    });
    let src = request.src();
    let records = if !inner.may_transfer(src.ip()) {
        warn!(%src, "zone transfer refused: not a configured secondary");
        Err(ResponseCode::Refused)
    } else if request.protocol() != Protocol::Tcp {
        debug!(%src, "zone transfer refused over UDP");
        Err(ResponseCode::Refused)
    } else {
        match request
            .queries
            .queries()
            .first()
            .and_then(|q| served.transfers.get(q.name()))
        {
            Some(records) => Ok(records),
            None => Err(ResponseCode::NotAuth),
        }
    };
    let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
    let sent = match records {
        Ok(records) => {
            let mut meta = hickory_proto::op::Metadata::response_from_request(&request.metadata);
            meta.authoritative = true;
            let none: [&Record; 0] = [];
            let response = builder.build(meta, records.iter(), none, none, none);
            response_handle.send_response(response).await
        }
        Err(rcode) => {
            let response = builder.error_msg(&request.metadata, rcode);
            response_handle.send_response(response).await
        }
    };
    match sent {
        Ok(info) => info,
        Err(error) => {
            warn!(%src, %error, "could not send zone transfer response");
            let mut meta = hickory_proto::op::Metadata::response_from_request(&request.metadata);
            meta.response_code = ResponseCode::ServFail;
            hickory_proto::op::Header {
                metadata: meta,
                counts: hickory_proto::op::HeaderCounts::default(),
            }
            .into()
        }
    }
}

/// Build everything one snapshot serves.
fn build(snapshot: &Snapshot) -> Result<Served, ZoneError> {
    let mut catalog = Catalog::new();
    let mut transfers = HashMap::new();
    for zone in &snapshot.zones {
        let (origin, records) = zone_records(zone)?;
        let mut sets: BTreeMap<RrKey, RecordSet> = BTreeMap::new();
        for r in &records {
            sets.entry(RrKey::new(LowerName::new(&r.name), r.record_type()))
                .or_insert_with(|| RecordSet::new(r.name.clone(), r.record_type(), zone.serial))
                .insert(r.clone(), zone.serial);
        }
        let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::new(
            origin.clone(),
            sets,
            ZoneType::Primary,
            // Transfers never reach the catalog (see `transfer`); deny as a backstop.
            AxfrPolicy::Deny,
        )
        .map_err(|reason| ZoneError::Zone {
            origin: zone.origin.clone(),
            reason,
        })?;
        let apex = LowerName::new(&origin);
        let handler: Arc<dyn ZoneHandler> = Arc::new(handler);
        catalog.upsert(apex.clone(), vec![handler]);
        transfers.insert(apex, axfr_order(records));
    }
    Ok(Served {
        serial: snapshot.serial,
        catalog,
        transfers,
    })
}

/// The SOA first, every other record in snapshot order, the SOA again (RFC 5936 §2.2).
fn axfr_order(records: Vec<Record>) -> Vec<Record> {
    let (soa, rest): (Vec<Record>, Vec<Record>) = records
        .into_iter()
        .partition(|r| r.record_type() == RecordType::SOA);
    let mut out = Vec::with_capacity(rest.len() + 2);
    out.extend(soa.iter().cloned());
    out.extend(rest);
    out.extend(soa);
    out
}

/// A zone's apex name and wire records, checked: every record parses, lies inside the
/// zone, and there is exactly one SOA, at the apex.
fn zone_records(zone: &Zone) -> Result<(Name, Vec<Record>), ZoneError> {
    let origin =
        Name::from_ascii(format!("{}.", zone.origin)).map_err(|e| ZoneError::BadOrigin {
            origin: zone.origin.clone(),
            reason: e.to_string(),
        })?;
    let records = zone
        .records
        .iter()
        .map(|r| wire_record(r, &origin, &zone.origin))
        .collect::<Result<Vec<Record>, ZoneError>>()?;
    let soas = records
        .iter()
        .filter(|r| r.record_type() == RecordType::SOA)
        .collect::<Vec<_>>();
    if soas.len() != 1 || soas.iter().any(|r| r.name != origin) {
        return Err(ZoneError::Soa {
            origin: zone.origin.clone(),
            count: soas.len(),
        });
    }
    Ok((origin, records))
}

fn wire_record(r: &Rec, origin: &Name, origin_text: &str) -> Result<Record, ZoneError> {
    let name = Name::from_ascii(format!("{}.", r.name)).map_err(|e| ZoneError::BadName {
        name: r.name.clone(),
        rtype: r.rtype.clone(),
        value: r.value.clone(),
        reason: e.to_string(),
    })?;
    let rtype = RecordType::from_str(&r.rtype.to_ascii_uppercase())
        .ok()
        .filter(|t| SUPPORTED.contains(t))
        .ok_or_else(|| ZoneError::UnsupportedType {
            name: r.name.clone(),
            rtype: r.rtype.clone(),
            value: r.value.clone(),
        })?;
    if !origin.zone_of(&name) {
        return Err(ZoneError::OutOfZone {
            name: r.name.clone(),
            rtype: r.rtype.clone(),
            value: r.value.clone(),
            origin: origin_text.to_string(),
        });
    }
    let rdata = RData::try_from_str(rtype, &r.value).map_err(|e| ZoneError::BadValue {
        name: r.name.clone(),
        rtype: r.rtype.clone(),
        value: r.value.clone(),
        reason: e.to_string(),
    })?;
    Ok(Record::from_rdata(name, r.ttl, rdata))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, rtype: &str, value: &str) -> Rec {
        Rec {
            name: name.into(),
            ttl: 30,
            rtype: rtype.into(),
            value: value.into(),
            dynamic: false,
        }
    }

    fn snapshot(extra: Vec<Rec>) -> Snapshot {
        let mut records = vec![
            rec(
                "example.test",
                "SOA",
                "ns.example.test. hostmaster.example.test. 7 300 60 1209600 30",
            ),
            rec("example.test", "NS", "ns.example.test."),
            rec("example.test", "MX", "10 host1.example.test."),
        ];
        records.extend(extra);
        Snapshot {
            serial: 7,
            zones: vec![Zone {
                origin: "example.test".into(),
                serial: 7,
                records,
            }],
        }
    }

    #[test]
    fn every_supported_type_parses() {
        let extra = vec![
            rec("host1.example.test", "A", "10.0.0.11"),
            rec("host2.example.test", "AAAA", "fd00::12"),
            rec("www.example.test", "CNAME", "host1.example.test."),
            rec("example.test", "TXT", "\"v=spf1 mx -all\""),
            rec(
                "_imaps._tcp.example.test",
                "SRV",
                "0 1 993 host1.example.test.",
            ),
            rec("11.example.test", "PTR", "host1.example.test."),
            rec("example.test", "CAA", "0 issue \"letsencrypt.org\""),
        ];
        let s = DnsServer::new(&snapshot(extra), vec![]).unwrap();
        assert_eq!(s.serial(), 7);
        let served = s.inner.current();
        let axfr = &served.transfers[&LowerName::from_str("example.test.").unwrap()];
        assert_eq!(axfr.len(), 3 + 7 + 1);
        assert_eq!(axfr[0].record_type(), RecordType::SOA);
        assert_eq!(axfr[axfr.len() - 1].record_type(), RecordType::SOA);
    }

    #[test]
    fn bad_records_are_named() {
        for (r, want) in [
            (
                rec("x.example.test", "HINFO", "a b"),
                "x.example.test HINFO",
            ),
            (rec("x.example.test", "A", "10.0.0"), "value does not parse"),
            (rec("x.example.org", "A", "10.0.0.1"), "outside zone"),
            (rec("x.example.test", "MX", "ten mx."), "x.example.test MX"),
        ] {
            let err = DnsServer::new(&snapshot(vec![r]), vec![])
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        let err = DnsServer::new(
            &snapshot(vec![rec(
                "example.test",
                "SOA",
                "ns.example.test. h.example.test. 8 1 1 1 1",
            )]),
            vec![],
        )
        .unwrap_err();
        assert!(err.to_string().contains("exactly one SOA"), "{err}");
    }

    #[test]
    fn a_failed_publish_keeps_the_old_snapshot() {
        let s = DnsServer::new(&snapshot(vec![]), vec![]).unwrap();
        let mut bad = snapshot(vec![rec("x.example.test", "A", "nope")]);
        bad.serial = 8;
        assert!(s.publish(&bad).is_err());
        assert_eq!(s.serial(), 7);
        let mut good = snapshot(vec![]);
        good.serial = 8;
        s.publish(&good).unwrap();
        assert_eq!(s.serial(), 8);
    }

    #[test]
    fn mapped_v4_sources_match_v4_secondaries() {
        let s = DnsServer::new(&snapshot(vec![]), vec!["10.0.0.15".parse().unwrap()]).unwrap();
        assert!(s.inner.may_transfer("::ffff:10.0.0.15".parse().unwrap()));
        assert!(s.inner.may_transfer("10.0.0.15".parse().unwrap()));
        assert!(!s.inner.may_transfer("10.0.0.16".parse().unwrap()));
    }
}
