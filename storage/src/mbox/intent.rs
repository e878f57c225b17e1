//! The append-intent record of a mailbox (`<index>.intent`): what an append in progress
//! is about to add, made durable before the first byte of it is written, so that the next
//! locker can tell a crashed append from mail that another program appended.
//!
//! The file is kept and overwritten in place rather than created and removed for each
//! append: rewriting allocated blocks of a file whose size does not change makes
//! `fdatasync` a data flush without a filesystem journal commit, which halves the cost of
//! an uncontended append on ext4. Layout: `len:u32le`, then a [`record`] of `len` bytes,
//! zero padding to a multiple of 4096. `len == 0` means idle.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{IoContext, Result, StorageError};
use crate::record;

const MAGIC: &[u8; 8] = b"HMINTNT2";
const T_ORIG: u8 = 1;
const T_NEW: u8 = 2;
const T_CRC: u8 = 3;
const T_DEV: u8 = 4;
const T_INO: u8 = 5;
/// A ticket id ("" for the holder's own messages), followed by its T_COUNT.
const T_TICKET: u8 = 6;
const T_COUNT: u8 = 7;
const T_QUEUE_ID: u8 = 8;
const T_HEAD: u8 = 9;
const T_BLOCK_CRCS: u8 = 10;

/// How many leading bytes of the append the intent keeps verbatim.
pub const HEAD_LEN: usize = 256;
/// The append's bytes are also recorded as one CRC per block of this size, so recovery
/// can prove a partial tail is ours before truncating it.
pub const BLOCK_CRC_SIZE: usize = 4096;
const BLOCK: usize = 4096;

/// An append in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// Size of the mbox before the append.
    pub orig: u64,
    /// Size after it.
    pub new: u64,
    /// CRC-32 of the bytes between the two.
    pub crc: u32,
    /// The mbox file it applies to (an expunge replaces the file).
    pub dev: u64,
    pub ino: u64,
    /// Whose messages, in order: (ticket id or "" for the holder's own, message count).
    pub tickets: Vec<(String, u32)>,
    /// The queue id of each message, in order (for the logs of a repair).
    pub queue_ids: Vec<String>,
    /// The first [`HEAD_LEN`] bytes to be appended.
    pub head: Vec<u8>,
    /// CRC-32 of each whole [`BLOCK_CRC_SIZE`] block of the bytes to be appended.
    pub block_crcs: Vec<u32>,
}

impl Intent {
    fn encode(&self) -> Vec<u8> {
        let mut w = record::Writer::new(MAGIC);
        w.u64(T_ORIG, self.orig)
            .u64(T_NEW, self.new)
            .u64(T_CRC, self.crc as u64)
            .u64(T_DEV, self.dev)
            .u64(T_INO, self.ino);
        for (id, n) in &self.tickets {
            w.field(T_TICKET, id.as_bytes()).u64(T_COUNT, *n as u64);
        }
        for q in &self.queue_ids {
            w.field(T_QUEUE_ID, q.as_bytes());
        }
        w.field(T_HEAD, &self.head);
        let crcs: Vec<u8> = self
            .block_crcs
            .iter()
            .flat_map(|c| c.to_le_bytes())
            .collect();
        w.field(T_BLOCK_CRCS, &crcs);
        let rec = w.finish();
        let mut out = Vec::with_capacity((rec.len() + 4).div_ceil(BLOCK) * BLOCK);
        out.extend_from_slice(&(rec.len() as u32).to_le_bytes());
        out.extend_from_slice(&rec);
        out.resize((rec.len() + 4).div_ceil(BLOCK) * BLOCK, 0);
        out
    }

    fn decode(data: &[u8], path: &Path) -> Option<Intent> {
        let len = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
        if len == 0 {
            return None;
        }
        // A torn record was never fsynced, so no byte of its append was written either.
        let rec =
            record::Record::decode(data.get(4..4 + len)?, MAGIC, "append intent", path).ok()?;
        let get = |t| rec.u64(t).unwrap_or(0);
        Some(Intent {
            orig: get(T_ORIG),
            new: get(T_NEW),
            crc: get(T_CRC) as u32,
            dev: get(T_DEV),
            ino: get(T_INO),
            tickets: rec
                .all(T_TICKET)
                .zip(rec.all(T_COUNT))
                .map(|(id, n)| {
                    let n = n.try_into().map(u64::from_le_bytes).unwrap_or(0) as u32;
                    (String::from_utf8_lossy(id).into_owned(), n)
                })
                .collect(),
            queue_ids: rec
                .all(T_QUEUE_ID)
                .map(|q| String::from_utf8_lossy(q).into_owned())
                .collect(),
            head: rec.get(T_HEAD).unwrap_or_default().to_vec(),
            block_crcs: rec
                .get(T_BLOCK_CRCS)
                .unwrap_or_default()
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        })
    }
}

/// Record `intent` durably (in place, fdatasync).
pub fn write(path: &Path, intent: &Intent) -> Result<()> {
    let f = crate::fsutil::open_or_create(path)?;
    f.write_all_at(&intent.encode(), 0).at(path)?;
    f.sync_data().at(path)
}

/// Mark the intent done (not synced: after a crash an old intent whose append is complete
/// is recognised as such and kept).
pub fn clear(path: &Path) -> Result<()> {
    match OpenOptions::new().write(true).open(path) {
        Ok(f) => f.write_all_at(&[0u8; 4], 0).at(path),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

/// The intent in force, if any.
pub fn read(path: &Path) -> Result<Option<Intent>> {
    let mut data = vec![0u8; BLOCK];
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(path, e)),
    };
    let n = f.read_at(&mut data, 0).at(path)?;
    if n >= 4 {
        let len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if len + 4 > n {
            data.resize(len + 4, 0);
            let m = f.read_at(&mut data[n..], n as u64).at(path)?;
            data.truncate(n + m);
        } else {
            data.truncate(n);
        }
    }
    Ok(Intent::decode(&data, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_clear_and_torn() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("INBOX.intent");
        assert_eq!(read(&p).unwrap(), None);
        let mut i = Intent {
            orig: 10,
            new: 99,
            crc: 7,
            dev: 1,
            ino: 2,
            tickets: vec![(String::new(), 1), ("h.1.2.3".into(), 2)],
            queue_ids: vec!["Q1".into(), "Q2".into(), "Q2".into()],
            head: b"From x".to_vec(),
            block_crcs: vec![1, 2, 3],
        };
        write(&p, &i).unwrap();
        assert_eq!(read(&p).unwrap(), Some(i.clone()));
        assert_eq!(std::fs::metadata(&p).unwrap().len() % 4096, 0);
        clear(&p).unwrap();
        assert_eq!(read(&p).unwrap(), None);
        // Many tickets: more than one block.
        i.tickets = (0..400)
            .map(|n| (format!("host.{n}.0.deadbeef"), 1))
            .collect();
        write(&p, &i).unwrap();
        assert_eq!(read(&p).unwrap(), Some(i.clone()));
        // A torn write reads as no intent.
        let mut data = std::fs::read(&p).unwrap();
        data[100] ^= 0xff;
        std::fs::write(&p, &data).unwrap();
        assert_eq!(read(&p).unwrap(), None);
    }
}
