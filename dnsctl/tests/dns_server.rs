//! The DNS server and NOTIFY against real clients: `dig` over UDP and TCP for answers,
//! flags, TTLs, NXDOMAIN/NODATA, REFUSED and AXFR (from an allowed and a foreign source
//! address); a Rust AXFR client racing hundreds of publishes to prove each answer comes
//! from one snapshot; and a fake secondary for NOTIFY.
//!
//! Each test serves on its own 127.x.y.z address (x, y from the process id, so parallel
//! test processes do not collide) and its own port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dnsctl::server::DnsServer;
use dnsctl::zone::Snapshot;
use hamail_storage::cluster::ClusterConfig;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Three hosts, two domains, two static records.
const CONFIG: &str = include_str!("../../examples/config/dns.toml");

/// The zones for the given healthy hosts at `serial`.
fn snapshot(up: &[&str], serial: u32) -> Snapshot {
    let config = ClusterConfig::parse(CONFIG, Path::new("examples/config/dns.toml")).unwrap();
    let dns = config.dns.clone().unwrap();
    let plan = dnsctl::policy::plan(&config.hosts, |h| up.contains(&h), &BTreeSet::new(), None);
    dnsctl::zone::build(&config, &dns, &plan, serial)
}

const ALL: &[&str] = &["host1", "host2", "host3"];
const HOST1_DOWN: &[&str] = &["host2", "host3"];

/// 127.x.y.(8 * test + k): unique per process and test.
fn ip(test: u8, k: u8) -> IpAddr {
    let pid = std::process::id();
    IpAddr::V4(Ipv4Addr::new(
        127,
        100 + (pid % 100) as u8,
        ((pid / 100) % 250) as u8,
        8 * test + k,
    ))
}

fn port(test: u8) -> u16 {
    25353 + u16::from(test)
}

/// A server running on its own runtime until dropped.
struct Running {
    server: DnsServer,
    addr: SocketAddr,
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    fn start(test: u8, snapshot: &Snapshot, secondaries: Vec<IpAddr>) -> Running {
        let server = DnsServer::new(snapshot, secondaries).unwrap();
        let addr = SocketAddr::new(ip(test, 1), port(test));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let s = server.clone();
        rt.spawn(async move {
            s.serve(addr, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        // TCP is bound after UDP: once it accepts, both are up.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "server on {addr} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Running {
            server,
            addr,
            rt,
            stop: Some(stop),
        }
    }

    /// `dig +norec @addr -p port ARGS`, output as text.
    fn dig(&self, args: &[&str]) -> Dig {
        let out = Command::new("dig")
            .args(["+norec", "+time=2", "+tries=1"])
            .arg(format!("@{}", self.addr.ip()))
            .args(["-p", &self.addr.port().to_string()])
            .args(args)
            .output()
            .expect("dig (apt-get install bind9-dnsutils)");
        Dig(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// dig's output.
struct Dig(String);

impl Dig {
    /// The records of one section (`ANSWER`, `AUTHORITY`), as whitespace-split fields
    /// (name, ttl, class, type, rdata...).
    fn section(&self, name: &str) -> Vec<Vec<String>> {
        let header = format!(";; {name} SECTION:");
        self.0
            .lines()
            .skip_while(|l| !l.starts_with(&header))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    }

    fn answer(&self) -> Vec<Vec<String>> {
        self.section("ANSWER")
    }

    /// The header's flags (`qr aa`).
    fn flags(&self) -> Vec<String> {
        let line = self
            .0
            .lines()
            .find(|l| l.starts_with(";; flags:"))
            .unwrap_or_else(|| panic!("no flags line in:\n{}", self.0));
        let flags = line.trim_start_matches(";; flags:");
        let flags = flags.split(';').next().unwrap_or("");
        flags.split_whitespace().map(str::to_string).collect()
    }

    fn status(&self) -> String {
        let line = self
            .0
            .lines()
            .find(|l| l.contains("status:"))
            .unwrap_or_else(|| panic!("no status in:\n{}", self.0));
        let rest = line.split("status: ").nth(1).unwrap_or("");
        rest.split(',').next().unwrap_or("").to_string()
    }
}

/// `[(pref, target)]` of an MX answer, best first.
fn mx(d: &Dig) -> Vec<(u16, String)> {
    let mut v: Vec<(u16, String)> = d
        .answer()
        .iter()
        .filter(|r| r[3] == "MX")
        .map(|r| (r[4].parse().unwrap(), r[5].clone()))
        .collect();
    v.sort();
    v
}

fn soa_serial(d: &Dig) -> u32 {
    let soa = d.answer().into_iter().find(|r| r[3] == "SOA").unwrap();
    soa[6].parse().unwrap()
}

/// SOA serial, MX order and `mail.` as dig sees them over `transport` ("" or "+tcp").
fn observed(s: &Running, transport: &str) -> (u32, Vec<(u16, String)>, String) {
    let extra: Vec<&str> = [transport].into_iter().filter(|t| !t.is_empty()).collect();
    let q = |name: &str, t: &str| {
        let mut args = extra.clone();
        args.extend([name, t]);
        s.dig(&args)
    };
    let soa = q("example.test", "SOA");
    let mail = q("mail.example.test", "A");
    (
        soa_serial(&soa),
        mx(&q("example.test", "MX")),
        mail.answer()[0][4].clone(),
    )
}

#[test]
fn answers_authoritatively_over_udp_and_tcp() {
    let s = Running::start(1, &snapshot(ALL, 41), vec![]);
    for transport in ["", "+tcp"] {
        let t: Vec<&str> = [transport].into_iter().filter(|t| !t.is_empty()).collect();
        let q = |name: &str, rtype: &str| {
            let mut args = t.clone();
            args.extend([name, rtype]);
            s.dig(&args)
        };
        let (serial, mxs, mail) = observed(&s, transport);
        assert_eq!(serial, 41, "{transport}");
        assert_eq!(
            mxs,
            [
                (10, "host1.example.test.".to_string()),
                (20, "host2.example.test.".to_string()),
                (30, "host3.example.test.".to_string())
            ],
            "{transport}"
        );
        assert_eq!(mail, "10.0.0.11");

        let soa = q("example.test", "SOA");
        let flags = soa.flags();
        assert!(flags.contains(&"aa".to_string()), "{flags:?}");
        assert!(!flags.contains(&"ra".to_string()), "{flags:?}");
        assert_eq!(soa.status(), "NOERROR");

        for (host, addr) in [
            ("host1", "10.0.0.11"),
            ("host2", "10.0.0.12"),
            ("host3", "10.0.0.13"),
        ] {
            let a = q(&format!("{host}.example.test"), "A");
            let rr = &a.answer()[0];
            assert_eq!((rr[1].as_str(), rr[4].as_str()), ("30", addr), "{}", a.0);
        }
        // Every record has the configured 30 s TTL.
        for d in [&soa, &q("example.test", "MX"), &q("example.test", "TXT")] {
            assert!(!d.answer().is_empty(), "{}", d.0);
            assert!(d.answer().iter().all(|r| r[1] == "30"), "{}", d.0);
        }
        let www = q("www.example.test", "A");
        assert_eq!(www.answer()[0][3], "CNAME", "{}", www.0);

        // Unknown name in the zone: NXDOMAIN with the SOA in authority (RFC 2308).
        let nx = q("nosuch.example.test", "A");
        assert_eq!(nx.status(), "NXDOMAIN", "{}", nx.0);
        assert!(nx.flags().contains(&"aa".to_string()));
        assert_eq!(nx.section("AUTHORITY")[0][3], "SOA", "{}", nx.0);
        // Name exists, type does not: NODATA, also with the SOA.
        let nodata = q("host1.example.test", "MX");
        assert_eq!(nodata.status(), "NOERROR");
        assert!(nodata.answer().is_empty(), "{}", nodata.0);
        assert_eq!(nodata.section("AUTHORITY")[0][3], "SOA", "{}", nodata.0);
        // The second domain is a zone of its own.
        assert_eq!(q("example.org", "MX").answer().len(), 3);
        // Not ours: REFUSED, and no recursion.
        let other = q("example.com", "A");
        assert_eq!(other.status(), "REFUSED", "{}", other.0);
        assert!(!other.flags().contains(&"ra".to_string()));
    }
}

#[test]
fn publish_changes_mx_mail_and_serial_together() {
    let s = Running::start(2, &snapshot(ALL, 100), vec![]);
    assert_eq!(s.server.serial(), 100);
    let before = observed(&s, "");
    assert_eq!(before.1[0].1, "host1.example.test.");
    s.server.publish(&snapshot(HOST1_DOWN, 101)).unwrap();
    assert_eq!(s.server.serial(), 101);
    for transport in ["", "+tcp"] {
        let (serial, mxs, mail) = observed(&s, transport);
        assert_eq!(serial, 101);
        assert_eq!(
            mxs,
            [
                (10, "host2.example.test.".to_string()),
                (20, "host3.example.test.".to_string()),
                (30, "host1.example.test.".to_string())
            ]
        );
        assert_eq!(mail, "10.0.0.12");
    }
}

#[test]
fn axfr_only_for_secondaries() {
    let snap = snapshot(ALL, 7);
    let secondary = ip(3, 2);
    let stranger = ip(3, 3);
    let s = Running::start(3, &snap, vec![secondary]);

    let axfr = s.dig(&["-b", &secondary.to_string(), "AXFR", "example.test"]);
    // AXFR output has no section headers: every non-comment line is a record.
    let records: Vec<Vec<&str>> = axfr
        .0
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    let zone = snap.zone("example.test").unwrap();
    assert_eq!(records.len(), zone.records.len() + 1, "{}", axfr.0);
    assert_eq!(records[0][3], "SOA");
    assert_eq!(records[records.len() - 1][3], "SOA");
    for r in &zone.records {
        assert!(
            records
                .iter()
                .any(|got| got[0] == format!("{}.", r.name) && got[3] == r.rtype),
            "{r:?} missing from\n{}",
            axfr.0
        );
    }

    for query in [["AXFR", "example.test"], ["IXFR=1", "example.test"]] {
        let mut args = vec!["-b".to_string(), stranger.to_string()];
        args.extend(query.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let refused = s.dig(&args);
        assert!(
            refused.0.contains("Transfer failed") || refused.0.contains("REFUSED"),
            "{query:?}: {}",
            refused.0
        );
        assert!(!refused.0.contains("IN\tMX"), "{}", refused.0);
    }
    // Over UDP even a secondary is refused (RFC 5936: no AXFR over UDP). dig always
    // uses TCP for AXFR, so this one is sent by hand.
    let addr = s.addr;
    let reply = s.rt.block_on(async move {
        let sock = tokio::net::UdpSocket::bind(SocketAddr::new(secondary, 0))
            .await
            .unwrap();
        let mut msg = Message::new(query_id(), MessageType::Query, OpCode::Query);
        msg.add_query(Query::query(
            Name::from_ascii("example.test.").unwrap(),
            RecordType::AXFR,
        ));
        sock.send_to(&msg.to_vec().unwrap(), addr).await.unwrap();
        let mut buf = [0u8; 4096];
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        Message::from_vec(&buf[..len]).unwrap()
    });
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.answers.is_empty());
}

/// One AXFR over TCP from `src`: the answer records (single message: our zones are small).
async fn axfr(server: SocketAddr, src: IpAddr, zone: &str) -> Vec<hickory_proto::rr::Record> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(src, 0)).unwrap();
    let mut stream = sock.connect(server).await.unwrap();
    let mut msg = Message::new(query_id(), MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(
        Name::from_ascii(format!("{zone}.")).unwrap(),
        RecordType::AXFR,
    ));
    let bytes = msg.to_vec().unwrap();
    let mut framed = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    framed.extend(bytes);
    stream.write_all(&framed).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut body = vec![0; usize::from(len)];
    stream.read_exact(&mut body).await.unwrap();
    let reply = Message::from_vec(&body).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    reply.answers
}

fn query_id() -> u16 {
    (std::process::id() as u16).wrapping_mul(31)
}

#[test]
fn concurrent_publishes_never_mix_snapshots() {
    // Odd serials: everything up, host1 first. Even: host1 down, host2 first.
    let odd = snapshot(ALL, 1);
    let secondary = ip(4, 2);
    let s = Running::start(4, &odd, vec![secondary]);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let server = s.server.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut serial = 1;
            let mut published = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || published < 300 {
                serial += 1;
                let up = if serial % 2 == 1 { ALL } else { HOST1_DOWN };
                server.publish(&snapshot(up, serial)).unwrap();
                published += 1;
                if published >= 5000 {
                    break;
                }
            }
            published
        })
    };
    let addr = s.addr;
    let (checked, parities) = s.rt.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            tasks.spawn(async move {
                let mut seen = BTreeSet::new();
                for _ in 0..100 {
                    let records = axfr(addr, secondary, "example.test").await;
                    let serial = records
                        .iter()
                        .find_map(|r| match &r.data {
                            RData::SOA(soa) => Some(soa.serial),
                            _ => None,
                        })
                        .unwrap();
                    let best_mx = records
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                            _ => None,
                        })
                        .min()
                        .unwrap();
                    let mail = records
                        .iter()
                        .find(|r| r.name.to_ascii() == "mail.example.test.")
                        .map(|r| r.data.to_string())
                        .unwrap();
                    let want = if serial % 2 == 1 {
                        ("host1.example.test.", "10.0.0.11")
                    } else {
                        ("host2.example.test.", "10.0.0.12")
                    };
                    assert_eq!(
                        (best_mx.1.as_str(), mail.as_str()),
                        want,
                        "serial {serial} mixed with another snapshot"
                    );
                    seen.insert(serial % 2);
                }
                seen
            });
        }
        let mut parities = BTreeSet::new();
        let mut checked = 0;
        while let Some(seen) = tasks.join_next().await {
            parities.extend(seen.unwrap());
            checked += 100;
        }
        (checked, parities)
    });
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let published = publisher.join().unwrap();
    assert_eq!(checked, 400);
    assert!(published >= 300, "{published}");
    // Both snapshots were actually observed, so the race was real.
    assert_eq!(
        parities.len(),
        2,
        "{parities:?} after {published} publishes"
    );
}

#[test]
fn notify_reaches_the_secondary_and_reports_silence() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let good = SocketAddr::new(ip(5, 2), port(5));
        let silent = SocketAddr::new(ip(5, 3), port(5));
        let secondary = tokio::net::UdpSocket::bind(good).await.unwrap();
        // Bound so the kernel sends no port-unreachable; it simply never answers.
        let _silent = tokio::net::UdpSocket::bind(silent).await.unwrap();
        let zones = vec!["example.test".to_string(), "example.org".to_string()];
        let fake = tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            let mut buf = [0u8; 512];
            while seen.len() < 2 {
                let (len, from) = secondary.recv_from(&mut buf).await.unwrap();
                let msg = Message::from_vec(&buf[..len]).unwrap();
                assert_eq!(msg.metadata.op_code, OpCode::Notify);
                assert_eq!(msg.metadata.message_type, MessageType::Query);
                assert!(msg.metadata.authoritative);
                assert_eq!(msg.queries.len(), 1);
                assert_eq!(msg.queries[0].query_type(), RecordType::SOA);
                seen.insert(msg.queries[0].name().to_ascii());
                let mut reply =
                    Message::new(msg.metadata.id, MessageType::Response, OpCode::Notify);
                reply.metadata.authoritative = true;
                reply.add_query(msg.queries[0].clone());
                secondary
                    .send_to(&reply.to_vec().unwrap(), from)
                    .await
                    .unwrap();
            }
            seen
        });
        let started = Instant::now();
        let results = dnsctl::notify::notify(&[good, silent], &zones, 9).await;
        let took = started.elapsed();
        let seen = fake.await.unwrap();
        assert_eq!(
            seen,
            BTreeSet::from(["example.org.".to_string(), "example.test.".to_string()])
        );
        assert_eq!(results.len(), 4);
        for r in &results {
            assert_eq!(r.ok, r.target == good, "{r:?}");
            assert!(zones.contains(&r.zone), "{r:?}");
        }
        assert!(results[0].detail.contains("acknowledged"), "{results:?}");
        assert!(results[3].detail.contains("no reply"), "{results:?}");
        // The silent target is given all its tries, concurrently with the others.
        let tries = dnsctl::notify::RETRIES + 1;
        assert!(took >= dnsctl::notify::WAIT * tries, "{took:?}");
        assert!(took < dnsctl::notify::WAIT * (tries + 2), "{took:?}");
    });
}
