//! Sans-IO XDR (RFC 4506) and ONC RPC v2 (RFC 5531) for the few calls the NIS backend
//! makes: building CALL datagrams and decoding REPLY datagrams of the portmapper
//! (`PMAPPROC_GETPORT`) and of ypserv (`YPPROC_DOMAIN`, `YPPROC_MATCH`).
//!
//! Replies come from the network, so decoding never panics: every length is checked
//! against the datagram and against the protocol's bounds (`YPMAXRECORD`, 64-byte names)
//! before anything is copied, a reply must answer the xid we sent, and bytes left over
//! after the expected result are an error rather than silently ignored (they would mean
//! we misread the reply).

/// Portmapper program, version 2.
pub const PMAP_PROG: u32 = 100_000;
pub const PMAP_VERS: u32 = 2;
pub const PMAPPROC_GETPORT: u32 = 3;
/// `IPPROTO_UDP`, the transport we ask the portmapper about.
pub const IPPROTO_UDP: u32 = 17;
/// The portmapper's well-known port.
pub const PMAP_PORT: u16 = 111;

/// ypserv program, version 2.
pub const YP_PROG: u32 = 100_004;
pub const YP_VERS: u32 = 2;
pub const YPPROC_DOMAIN: u32 = 1;
pub const YPPROC_MATCH: u32 = 3;

/// Longest key or value a YP map holds.
pub const YPMAXRECORD: usize = 1024;
/// Longest domain or map name.
pub const YPMAXNAME: usize = 64;

/// Upper bound on an RPC auth body (RFC 5531 `opaque body<400>`).
const MAX_AUTH_BODY: usize = 400;

const MSG_CALL: u32 = 0;
const MSG_REPLY: u32 = 1;
const RPC_VERSION: u32 = 2;
const AUTH_NONE: u32 = 0;

/// Why a reply could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    #[error("reply truncated")]
    Truncated,
    #[error("{0} unexpected bytes after the reply")]
    TrailingBytes(usize),
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("reply to xid {got:#x}, expected {expected:#x}")]
    WrongXid { expected: u32, got: u32 },
    #[error("bad {what}: {value}")]
    BadValue { what: &'static str, value: i64 },
    #[error("program unavailable")]
    ProgUnavail,
    #[error("program version mismatch (server has {low}..={high})")]
    ProgMismatch { low: u32, high: u32 },
    #[error("procedure unavailable")]
    ProcUnavail,
    #[error("server could not decode the arguments")]
    GarbageArgs,
    #[error("server system error")]
    SystemErr,
    #[error("RPC version mismatch (server has {low}..={high})")]
    RpcMismatch { low: u32, high: u32 },
    #[error("authentication refused (auth_stat {0})")]
    AuthError(u32),
}

/// Appends XDR items to a buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Variable-length opaque of at most `max` bytes: length, bytes, zero padding to 4.
    pub fn opaque(
        &mut self,
        what: &'static str,
        v: &[u8],
        max: usize,
    ) -> Result<&mut Self, RpcError> {
        let len = u32::try_from(v.len())
            .ok()
            .filter(|_| v.len() <= max)
            .ok_or(RpcError::TooLong {
                what,
                len: v.len(),
                max,
            })?;
        self.u32(len);
        self.buf.extend_from_slice(v);
        self.buf.resize(self.buf.len() + pad(v.len()), 0);
        Ok(self)
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Padding after `len` bytes of opaque data.
fn pad(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Reads XDR items from a datagram.
#[derive(Debug)]
pub struct Decoder<'a> {
    buf: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Decoder<'a> {
        Decoder { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RpcError> {
        if n > self.buf.len() {
            return Err(RpcError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u32(&mut self) -> Result<u32, RpcError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i32(&mut self) -> Result<i32, RpcError> {
        Ok(self.u32()? as i32)
    }

    /// An XDR bool: exactly 0 or 1.
    pub fn bool(&mut self) -> Result<bool, RpcError> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(RpcError::BadValue {
                what: "bool",
                value: v.into(),
            }),
        }
    }

    /// Variable-length opaque of at most `max` bytes. Padding must be present (a
    /// truncated pad is a truncated reply) but its contents are not checked.
    pub fn opaque(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], RpcError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(RpcError::TooLong { what, len, max });
        }
        let v = self.take(len)?;
        self.take(pad(len))?;
        Ok(v)
    }

    /// Error unless every byte was consumed.
    pub fn finish(self) -> Result<(), RpcError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(RpcError::TrailingBytes(n)),
        }
    }
}

/// A CALL message with AUTH_NONE credentials and verifier; `args` is the already
/// encoded argument structure.
pub fn encode_call(xid: u32, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new();
    e.u32(xid)
        .u32(MSG_CALL)
        .u32(RPC_VERSION)
        .u32(prog)
        .u32(vers)
        .u32(proc_)
        // cred, verf: flavor AUTH_NONE, empty body
        .u32(AUTH_NONE)
        .u32(0)
        .u32(AUTH_NONE)
        .u32(0);
    let mut buf = e.finish();
    buf.extend_from_slice(args);
    buf
}

/// The xid of a datagram, if it has one (to drop stray replies before decoding).
pub fn reply_xid(datagram: &[u8]) -> Option<u32> {
    Decoder::new(datagram).u32().ok()
}

/// Check the RPC header of a REPLY to `xid`; on `SUCCESS` the decoder is left at the
/// procedure's results, any other outcome is the matching error.
pub fn decode_reply(xid: u32, datagram: &[u8]) -> Result<Decoder<'_>, RpcError> {
    let mut d = Decoder::new(datagram);
    let got = d.u32()?;
    if got != xid {
        return Err(RpcError::WrongXid { expected: xid, got });
    }
    let mtype = d.u32()?;
    if mtype != MSG_REPLY {
        return Err(RpcError::BadValue {
            what: "message type",
            value: mtype.into(),
        });
    }
    match d.u32()? {
        // MSG_ACCEPTED
        0 => {
            let _flavor = d.u32()?;
            d.opaque("verifier", MAX_AUTH_BODY)?;
            let err = match d.u32()? {
                0 => return Ok(d),
                1 => RpcError::ProgUnavail,
                2 => RpcError::ProgMismatch {
                    low: d.u32()?,
                    high: d.u32()?,
                },
                3 => RpcError::ProcUnavail,
                4 => RpcError::GarbageArgs,
                5 => RpcError::SystemErr,
                v => {
                    return Err(RpcError::BadValue {
                        what: "accept_stat",
                        value: v.into(),
                    })
                }
            };
            d.finish()?;
            Err(err)
        }
        // MSG_DENIED
        1 => {
            let err = match d.u32()? {
                0 => RpcError::RpcMismatch {
                    low: d.u32()?,
                    high: d.u32()?,
                },
                1 => RpcError::AuthError(d.u32()?),
                v => {
                    return Err(RpcError::BadValue {
                        what: "reject_stat",
                        value: v.into(),
                    })
                }
            };
            d.finish()?;
            Err(err)
        }
        v => Err(RpcError::BadValue {
            what: "reply_stat",
            value: v.into(),
        }),
    }
}

/// `PMAPPROC_GETPORT` for the UDP port of `prog`/`vers`.
pub fn encode_getport(xid: u32, prog: u32, vers: u32) -> Vec<u8> {
    let mut args = Encoder::new();
    args.u32(prog).u32(vers).u32(IPPROTO_UDP).u32(0);
    encode_call(xid, PMAP_PROG, PMAP_VERS, PMAPPROC_GETPORT, &args.finish())
}

/// The port in a `PMAPPROC_GETPORT` reply; 0 means "not registered".
pub fn decode_getport_reply(xid: u32, datagram: &[u8]) -> Result<u16, RpcError> {
    let mut d = decode_reply(xid, datagram)?;
    let port = d.u32()?;
    d.finish()?;
    u16::try_from(port).map_err(|_| RpcError::BadValue {
        what: "port",
        value: port.into(),
    })
}

/// `YPPROC_DOMAIN`: does the server serve `domain`?
pub fn encode_domain(xid: u32, domain: &str) -> Result<Vec<u8>, RpcError> {
    let mut args = Encoder::new();
    args.opaque("domain", domain.as_bytes(), YPMAXNAME)?;
    Ok(encode_call(
        xid,
        YP_PROG,
        YP_VERS,
        YPPROC_DOMAIN,
        &args.finish(),
    ))
}

pub fn decode_domain_reply(xid: u32, datagram: &[u8]) -> Result<bool, RpcError> {
    let mut d = decode_reply(xid, datagram)?;
    let served = d.bool()?;
    d.finish()?;
    Ok(served)
}

/// `YPPROC_MATCH` of `key` in `map` of `domain`.
pub fn encode_match(xid: u32, domain: &str, map: &str, key: &[u8]) -> Result<Vec<u8>, RpcError> {
    let mut args = Encoder::new();
    args.opaque("domain", domain.as_bytes(), YPMAXNAME)?
        .opaque("map", map.as_bytes(), YPMAXNAME)?
        .opaque("key", key, YPMAXRECORD)?;
    Ok(encode_call(
        xid,
        YP_PROG,
        YP_VERS,
        YPPROC_MATCH,
        &args.finish(),
    ))
}

/// `ypstat`: the status of a YP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YpStat {
    True,
    NoMore,
    False,
    NoMap,
    NoDom,
    NoKey,
    BadOp,
    BadDb,
    YpErr,
    BadArgs,
    Vers,
}

impl YpStat {
    pub fn from_i32(v: i32) -> Option<YpStat> {
        Some(match v {
            1 => YpStat::True,
            2 => YpStat::NoMore,
            0 => YpStat::False,
            -1 => YpStat::NoMap,
            -2 => YpStat::NoDom,
            -3 => YpStat::NoKey,
            -4 => YpStat::BadOp,
            -5 => YpStat::BadDb,
            -6 => YpStat::YpErr,
            -7 => YpStat::BadArgs,
            -8 => YpStat::Vers,
            _ => return None,
        })
    }

    pub fn to_i32(self) -> i32 {
        match self {
            YpStat::True => 1,
            YpStat::NoMore => 2,
            YpStat::False => 0,
            YpStat::NoMap => -1,
            YpStat::NoDom => -2,
            YpStat::NoKey => -3,
            YpStat::BadOp => -4,
            YpStat::BadDb => -5,
            YpStat::YpErr => -6,
            YpStat::BadArgs => -7,
            YpStat::Vers => -8,
        }
    }
}

/// `ypresp_val`: a status and, with [`YpStat::True`], the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YpRespVal {
    pub stat: YpStat,
    pub val: Vec<u8>,
}

pub fn decode_match_reply(xid: u32, datagram: &[u8]) -> Result<YpRespVal, RpcError> {
    let mut d = decode_reply(xid, datagram)?;
    let raw = d.i32()?;
    let stat = YpStat::from_i32(raw).ok_or(RpcError::BadValue {
        what: "ypstat",
        value: raw.into(),
    })?;
    let val = d.opaque("value", YPMAXRECORD)?.to_vec();
    d.finish()?;
    Ok(YpRespVal { stat, val })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply header: xid, REPLY, MSG_ACCEPTED, AUTH_NONE verifier, `accept_stat`.
    fn accepted(xid: u32, stat: u32) -> Encoder {
        let mut e = Encoder::new();
        e.u32(xid)
            .u32(MSG_REPLY)
            .u32(0)
            .u32(AUTH_NONE)
            .u32(0)
            .u32(stat);
        e
    }

    fn match_reply(xid: u32, stat: i32, val: &[u8]) -> Vec<u8> {
        let mut e = accepted(xid, 0);
        e.u32(stat as u32);
        e.opaque("value", val, YPMAXRECORD).unwrap();
        e.finish()
    }

    /// Every proper prefix of a valid reply is an error, never a panic.
    fn truncations_fail<T: std::fmt::Debug>(full: &[u8], f: impl Fn(&[u8]) -> Result<T, RpcError>) {
        assert!(f(full).is_ok());
        for n in 0..full.len() {
            assert!(f(&full[..n]).is_err(), "prefix of {n} bytes accepted");
        }
    }

    #[test]
    fn call_layout() {
        let call = encode_getport(0x01020304, YP_PROG, YP_VERS);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            0x01020304u32, 0, 2, 100_000, 2, 3, // header
            0, 0, 0, 0,                          // AUTH_NONE cred, verf
            100_004, 2, 17, 0,                   // prog, vers, prot, port
        ]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
        assert_eq!(call, want);
    }

    #[test]
    fn match_call_layout_and_padding() {
        let call = encode_match(7, "dom", "passwd.byname", b"alice").unwrap();
        let mut d = Decoder::new(&call);
        for want in [7, 0, 2, YP_PROG, YP_VERS, YPPROC_MATCH, 0, 0, 0, 0] {
            assert_eq!(d.u32().unwrap(), want);
        }
        assert_eq!(d.opaque("d", 64).unwrap(), b"dom");
        assert_eq!(d.opaque("m", 64).unwrap(), b"passwd.byname");
        assert_eq!(d.opaque("k", 1024).unwrap(), b"alice");
        d.finish().unwrap();
        // "dom": 4-byte length, 3 bytes, 1 pad byte.
        assert_eq!(&call[40..48], &[0, 0, 0, 3, b'd', b'o', b'm', 0]);
        assert_eq!(call.len() % 4, 0);
    }

    #[test]
    fn call_bounds() {
        assert!(encode_domain(1, &"d".repeat(64)).is_ok());
        assert!(matches!(
            encode_domain(1, &"d".repeat(65)),
            Err(RpcError::TooLong { .. })
        ));
        assert!(encode_match(1, "d", &"m".repeat(65), b"k").is_err());
        assert!(encode_match(1, "d", "m", &[b'k'; 1025]).is_err());
        assert!(encode_match(1, "d", "m", &[b'k'; 1024]).is_ok());
    }

    #[test]
    fn getport_reply() {
        // Hand-written: xid 0x2a, REPLY, MSG_ACCEPTED, AUTH_NONE/0, SUCCESS, port 834.
        let bytes = [
            0, 0, 0, 0x2a, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3,
            0x42,
        ];
        assert_eq!(decode_getport_reply(0x2a, &bytes), Ok(834));
        truncations_fail(&bytes, |b| decode_getport_reply(0x2a, b));
        assert_eq!(
            decode_getport_reply(0x2b, &bytes),
            Err(RpcError::WrongXid {
                expected: 0x2b,
                got: 0x2a
            })
        );
        let mut long = bytes.to_vec();
        long.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            decode_getport_reply(0x2a, &long),
            Err(RpcError::TrailingBytes(4))
        );
        let mut e = accepted(1, 0);
        e.u32(70_000);
        assert!(matches!(
            decode_getport_reply(1, &e.finish()),
            Err(RpcError::BadValue { what: "port", .. })
        ));
    }

    #[test]
    fn domain_reply() {
        let mut e = accepted(9, 0);
        e.u32(1);
        let yes = e.finish();
        assert_eq!(decode_domain_reply(9, &yes), Ok(true));
        truncations_fail(&yes, |b| decode_domain_reply(9, b));
        let mut e = accepted(9, 0);
        e.u32(0);
        assert_eq!(decode_domain_reply(9, &e.finish()), Ok(false));
        let mut e = accepted(9, 0);
        e.u32(2);
        assert!(decode_domain_reply(9, &e.finish()).is_err());
    }

    #[test]
    fn match_reply_round_trip() {
        for val in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"abcd",
            b"alice:x:1:1::/:/bin/sh",
        ] {
            let r = match_reply(5, 1, val);
            assert_eq!(
                decode_match_reply(5, &r),
                Ok(YpRespVal {
                    stat: YpStat::True,
                    val: val.to_vec()
                })
            );
            truncations_fail(&r, |b| decode_match_reply(5, b));
        }
        for v in -8..=2 {
            let stat = YpStat::from_i32(v).unwrap();
            assert_eq!(stat.to_i32(), v);
            assert_eq!(
                decode_match_reply(5, &match_reply(5, v, b"")).unwrap().stat,
                stat
            );
        }
        assert!(decode_match_reply(5, &match_reply(5, -9, b"")).is_err());
        assert!(decode_match_reply(5, &match_reply(5, 3, b"")).is_err());
    }

    #[test]
    fn match_reply_hand_written() {
        // YP_NOKEY (-3), empty value.
        let bytes = [
            0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
            0xff, 0xfd, 0, 0, 0, 0,
        ];
        assert_eq!(decode_match_reply(5, &bytes).unwrap().stat, YpStat::NoKey);
        // Value "hi" with its two pad bytes.
        let bytes = [
            0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
            0, 0, 2, b'h', b'i', 0, 0,
        ];
        assert_eq!(decode_match_reply(5, &bytes).unwrap().val, b"hi");
    }

    #[test]
    fn oversized_lengths_are_refused_before_reading() {
        let mut e = accepted(5, 0);
        e.u32(1).u32(1025);
        let mut r = e.finish();
        r.extend(std::iter::repeat_n(b'a', 1028));
        assert!(matches!(
            decode_match_reply(5, &r),
            Err(RpcError::TooLong { len: 1025, .. })
        ));
        let mut e = accepted(5, 0);
        e.u32(1).u32(u32::MAX);
        assert!(decode_match_reply(5, &e.finish()).is_err());
        // A huge verifier.
        let mut e = Encoder::new();
        e.u32(5).u32(MSG_REPLY).u32(0).u32(0).u32(401);
        assert!(matches!(
            decode_reply(5, &e.finish()),
            Err(RpcError::TooLong { .. })
        ));
    }

    #[test]
    fn rpc_errors() {
        let check = |e: Encoder, want: RpcError| {
            let bytes = e.finish();
            assert_eq!(decode_domain_reply(3, &bytes), Err(want.clone()));
            truncations_fail(&bytes, |b| match decode_reply(3, b) {
                Err(e) if e == want => Ok(()),
                Err(e) => Err(e),
                Ok(_) => Err(RpcError::Truncated),
            });
        };
        check(accepted(3, 1), RpcError::ProgUnavail);
        let mut e = accepted(3, 2);
        e.u32(1).u32(1);
        check(e, RpcError::ProgMismatch { low: 1, high: 1 });
        check(accepted(3, 3), RpcError::ProcUnavail);
        check(accepted(3, 4), RpcError::GarbageArgs);
        check(accepted(3, 5), RpcError::SystemErr);
        let mut e = Encoder::new();
        e.u32(3).u32(MSG_REPLY).u32(1).u32(0).u32(2).u32(2);
        check(e, RpcError::RpcMismatch { low: 2, high: 2 });
        let mut e = Encoder::new();
        e.u32(3).u32(MSG_REPLY).u32(1).u32(1).u32(5);
        check(e, RpcError::AuthError(5));
        // Trailing bytes after an error are garbage too.
        let mut e = accepted(3, 3);
        e.u32(0);
        assert_eq!(
            decode_reply(3, &e.finish()).err(),
            Some(RpcError::TrailingBytes(4))
        );
        // Unknown discriminants.
        assert!(decode_reply(3, &accepted(3, 6).finish()).is_err());
        let mut e = Encoder::new();
        e.u32(3).u32(MSG_REPLY).u32(2);
        assert!(decode_reply(3, &e.finish()).is_err());
        let mut e = Encoder::new();
        e.u32(3).u32(MSG_REPLY).u32(1).u32(2);
        assert!(decode_reply(3, &e.finish()).is_err());
        // A CALL is not a reply.
        assert!(matches!(
            decode_reply(3, &encode_domain(3, "d").unwrap()),
            Err(RpcError::BadValue { .. })
        ));
    }

    #[test]
    fn xid_peek() {
        assert_eq!(reply_xid(&[0, 0, 1, 0, 9]), Some(256));
        assert_eq!(reply_xid(&[0, 0, 1]), None);
    }
}
