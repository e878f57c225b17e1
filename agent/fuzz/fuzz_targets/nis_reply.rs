//! The NIS reply decoders never panic on arbitrary datagrams, and what they accept is
//! within the protocol's bounds. The first four bytes pick the expected xid, so both
//! the matching and the mismatching paths get exercised.
#![no_main]
use hamail_agent::auth::nis::xdr::{
    decode_domain_reply, decode_getport_reply, decode_match_reply, decode_reply, reply_xid,
    YPMAXRECORD,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, reply)) = data.split_first_chunk::<4>() else {
        return;
    };
    let xid = u32::from_be_bytes(*head);
    let matches = reply_xid(reply) == Some(xid);
    let header = decode_reply(xid, reply);
    let port = decode_getport_reply(xid, reply);
    let domain = decode_domain_reply(xid, reply);
    let val = decode_match_reply(xid, reply);
    if !matches {
        assert!(header.is_err() && port.is_err() && domain.is_err() && val.is_err());
    }
    if header.is_err() {
        assert!(port.is_err() && domain.is_err() && val.is_err());
    }
    if let Ok(v) = val {
        assert!(v.val.len() <= YPMAXRECORD);
        // The value and its padding end the datagram exactly.
        assert!(reply.len() >= 32 + v.val.len());
    }
});
