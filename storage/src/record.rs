//! A small checksummed framing for the files hamail writes on the spool besides mboxes
//! (queue entries, pending appends, append intents, the small marks and lists beside the
//! indexes): a magic, then typed fields
//! `tag:u8 len:u32le bytes`, then an end tag with the total length and a CRC-32 of all
//! that precedes it. A truncated or torn file fails to decode, it never half-reads.

use crate::error::{IoContext, Result, StorageError};
use std::path::Path;

/// Replace the small file `path` with one record: written to `tmp` (a name only this
/// caller, under its lock, writes), fsynced, renamed into place. A crash leaves the old
/// file or the new one, never a torn one.
pub fn replace_file(path: &Path, tmp: &Path, record: Writer) -> Result<()> {
    crate::fsutil::write_synced(tmp, &record.finish())?;
    crate::fsutil::rename(tmp, path).at(path)
}

/// The bytes of the small file `path`, if it can be read (missing: `None`).
pub fn read_file(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

const END: u8 = 0xff;

/// Builder for one record.
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new(magic: &[u8; 8]) -> Self {
        Writer {
            buf: magic.to_vec(),
        }
    }

    pub fn field(&mut self, tag: u8, value: &[u8]) -> &mut Self {
        debug_assert_ne!(tag, END);
        self.buf.push(tag);
        self.buf
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(value);
        self
    }

    pub fn u64(&mut self, tag: u8, v: u64) -> &mut Self {
        self.field(tag, &v.to_le_bytes())
    }

    pub fn finish(mut self) -> Vec<u8> {
        let total = self.buf.len() as u64 + 1 + 8 + 4;
        self.buf.push(END);
        self.buf.extend_from_slice(&total.to_le_bytes());
        let crc = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// A decoded record: fields in file order.
#[derive(Debug)]
pub struct Record<'a> {
    fields: Vec<(u8, &'a [u8])>,
}

impl<'a> Record<'a> {
    /// Decode and verify `data`; `what` and `path` only label the error.
    pub fn decode(
        data: &'a [u8],
        magic: &[u8; 8],
        what: &'static str,
        path: &Path,
    ) -> Result<Self> {
        let corrupt = |reason: &str| StorageError::Corrupt {
            what,
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if data.len() < 8 + 13 || &data[..8] != magic {
            return Err(corrupt("bad magic or too short"));
        }
        let (body, crc) = data.split_at(data.len() - 4);
        let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != crc {
            return Err(corrupt("checksum mismatch (truncated or torn)"));
        }
        let mut fields = Vec::new();
        let mut pos = 8;
        loop {
            let tag = *body.get(pos).ok_or_else(|| corrupt("missing end"))?;
            if tag == END {
                let total = body
                    .get(pos + 1..pos + 9)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes)
                    .ok_or_else(|| corrupt("short end"))?;
                if total != data.len() as u64 || pos + 9 != body.len() {
                    return Err(corrupt("length mismatch"));
                }
                return Ok(Record { fields });
            }
            let len = body
                .get(pos + 1..pos + 5)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or_else(|| corrupt("short field header"))? as usize;
            let value = body
                .get(pos + 5..pos + 5 + len)
                .ok_or_else(|| corrupt("field runs past the end"))?;
            fields.push((tag, value));
            pos += 5 + len;
        }
    }

    /// All fields in order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &'a [u8])> + '_ {
        self.fields.iter().copied()
    }

    /// The first field with `tag`.
    pub fn get(&self, tag: u8) -> Option<&'a [u8]> {
        self.fields.iter().find(|(t, _)| *t == tag).map(|(_, v)| *v)
    }

    /// Every field with `tag`, in order.
    pub fn all(&self, tag: u8) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.fields
            .iter()
            .filter(move |(t, _)| *t == tag)
            .map(|(_, v)| *v)
    }

    pub fn u64(&self, tag: u8) -> Option<u64> {
        self.get(tag)
            .and_then(|v| v.try_into().ok())
            .map(u64::from_le_bytes)
    }

    pub fn str(&self, tag: u8) -> Option<&'a str> {
        self.get(tag).and_then(|v| std::str::from_utf8(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[u8; 8] = b"HMTEST01";

    #[test]
    fn round_trip_and_every_truncation_is_detected() {
        let mut w = Writer::new(M);
        w.field(1, b"hello").u64(2, 42).field(3, b"").field(3, b"x");
        let data = w.finish();
        let p = Path::new("t");
        let r = Record::decode(&data, M, "test", p).unwrap();
        assert_eq!(r.get(1), Some(&b"hello"[..]));
        assert_eq!(r.u64(2), Some(42));
        assert_eq!(r.all(3).collect::<Vec<_>>(), vec![&b""[..], &b"x"[..]]);
        for cut in 0..data.len() {
            assert!(
                Record::decode(&data[..cut], M, "test", p).is_err(),
                "cut at {cut}"
            );
        }
        let mut flipped = data.clone();
        flipped[10] ^= 1;
        assert!(Record::decode(&flipped, M, "test", p).is_err());
    }
}
