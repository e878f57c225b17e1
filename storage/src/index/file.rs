//! The on-disk index format and its in-memory form.
//!
//! ```text
//! header, 4096 bytes: magic "HMIDX001", uidvalidity u32, uidnext u32, count u64,
//!   generation u64, mbox dev u64, ino u64, size u64, mtime_ns i64, keywords
//!   (NUL-separated, length-prefixed u32), ..., CRC-32 of bytes 0..4092 at 4092
//! records, 64 bytes each: uid u32, flags u32, keywords u64, offset u64, len u64,
//!   size u64, date i64, from_len u32, fp u32, bare_lf u32, reserved u32
//! ```
//!
//! All integers little-endian. Appends write new records after the old ones and then the
//! header, so a crash between the two leaves a valid header that does not count them (the
//! next open finds the mail again by scanning the mbox). Flag changes rewrite single
//! records in place. Expunge writes a whole new file beside the old one and renames it.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::sync::MboxStat;
use super::{Flags, MessageMeta};
use crate::error::{IoContext, Result, StorageError};

pub const INDEX_SUFFIX: &str = ".idx";
/// Version 2 added `bare_lf` (CRLF sizes without reading messages); a version-1 index
/// fails the magic check and is rebuilt from the mbox.
const MAGIC: &[u8; 8] = b"HMIDX002";
const HEADER: usize = 4096;
const RECORD: usize = 64;
/// At most this many keywords per mailbox (one bit each in a record).
pub const MAX_KEYWORDS: usize = 64;

/// A mailbox index in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub uidvalidity: u32,
    pub uidnext: u32,
    /// Bumped on every change, so sessions can tell that flags changed.
    pub generation: u64,
    /// The mbox as it was when the index last matched it.
    pub mbox: MboxStat,
    pub keywords: Vec<String>,
    pub messages: Vec<MessageMeta>,
    /// How many records the file on disk holds (the rest are to be appended).
    persisted: usize,
    /// Positions of persisted records whose flags changed.
    dirty: Vec<usize>,
}

impl Index {
    /// A new empty index for a mailbox.
    pub fn new(uidvalidity: u32, mbox: MboxStat) -> Index {
        Index {
            uidvalidity,
            uidnext: 1,
            generation: 1,
            mbox,
            keywords: Vec::new(),
            messages: Vec::new(),
            persisted: 0,
            dirty: Vec::new(),
        }
    }

    /// Bytes of the mbox this index describes.
    pub fn covered(&self) -> u64 {
        self.messages.last().map_or(0, MessageMeta::end)
    }

    /// Messages visible to clients (hides UW-IMAP pseudo messages).
    pub fn visible(&self) -> impl Iterator<Item = &MessageMeta> {
        self.messages
            .iter()
            .filter(|m| !m.flags.contains(Flags::HIDDEN))
    }

    pub fn by_uid(&self, uid: u32) -> Option<&MessageMeta> {
        self.messages
            .binary_search_by_key(&uid, |m| m.uid)
            .ok()
            .map(|i| &self.messages[i])
    }

    /// Add a newly found message; assigns the next UID.
    pub fn push(&mut self, mut meta: MessageMeta) -> u32 {
        meta.uid = self.uidnext;
        // Imported UIDNEXT values are capped far below this (see headers), so the
        // saturation is never reached in practice; it only keeps arithmetic sound.
        self.uidnext = self.uidnext.saturating_add(1);
        let uid = meta.uid;
        self.messages.push(meta);
        uid
    }

    /// The bit for `keyword`, adding it to the mailbox's keyword list if new. None if the
    /// list is full.
    pub fn keyword_bit(&mut self, keyword: &str) -> Option<u64> {
        if let Some(i) = self.keywords.iter().position(|k| k == keyword) {
            return Some(1 << i);
        }
        if self.keywords.len() >= MAX_KEYWORDS
            || keyword.contains('\0')
            || self.keywords.iter().map(|k| k.len() + 1).sum::<usize>() + keyword.len() > 3500
        {
            return None;
        }
        self.keywords.push(keyword.to_string());
        Some(1 << (self.keywords.len() - 1))
    }

    /// Names of the keywords set in `bits`.
    pub fn keyword_names(&self, bits: u64) -> Vec<&str> {
        self.keywords
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, k)| k.as_str())
            .collect()
    }

    /// Bytes were added to the end of the last message (a missing final newline that
    /// must precede the next `From ` line).
    pub fn grow_last(&mut self, extra: &[u8]) {
        let persisted = self.persisted;
        if let Some(m) = self.messages.last_mut() {
            let mut h = crc32fast::Hasher::new_with_initial(m.fp);
            h.update(extra);
            m.fp = h.finalize();
            m.len += extra.len() as u64;
            let pos = self.messages.len() - 1;
            if pos < persisted {
                self.dirty.push(pos);
            }
        }
    }

    /// Change the flags and keywords of the message at `pos`.
    pub fn set_flags(&mut self, pos: usize, flags: Flags, keywords: u64) {
        let m = &mut self.messages[pos];
        if m.flags != flags || m.keywords != keywords {
            m.flags = flags;
            m.keywords = keywords;
            if pos < self.persisted {
                self.dirty.push(pos);
            }
        }
    }

    /// Read an index file. `Ok(None)` if it does not exist; `Corrupt` if it is not a valid
    /// index (the caller rebuilds it).
    pub fn load(path: &Path) -> Result<Option<Index>> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(path, e)),
        };
        let mut data = Vec::new();
        file.read_to_end(&mut data).at(path)?;
        Index::decode(&data, path).map(Some)
    }

    /// The header block of the index file and the file's identity, without the records:
    /// enough to tell whether an index read earlier is still current (every change
    /// rewrites the header with a new generation; expunge replaces the file).
    pub fn load_header(path: &Path) -> Result<Option<(Vec<u8>, u64)>> {
        use std::os::unix::fs::MetadataExt;
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(path, e)),
        };
        let ino = file.metadata().at(path)?.ino();
        let mut header = vec![0u8; HEADER];
        match file.read_exact_at(&mut header, 0) {
            Ok(()) => Ok(Some((header, ino))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(StorageError::io(path, e)),
        }
    }

    /// Decode an index from bytes (for tools and fuzzing).
    pub fn decode_bytes(data: &[u8]) -> Result<Index> {
        Index::decode(data, Path::new("<bytes>"))
    }

    fn decode(data: &[u8], path: &Path) -> Result<Index> {
        let corrupt = |reason: &str| StorageError::Corrupt {
            what: "index",
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        if data.len() < HEADER || &data[..8] != MAGIC {
            return Err(corrupt("bad magic or short header"));
        }
        if crc32fast::hash(&data[..HEADER - 4]) != u32_at(data, HEADER - 4) {
            return Err(corrupt("header checksum mismatch"));
        }
        let count = u64_at(data, 16) as usize;
        let records_end = count
            .checked_mul(RECORD)
            .and_then(|n| n.checked_add(HEADER));
        if records_end.is_none_or(|end| data.len() < end) {
            return Err(corrupt("fewer records than the header counts"));
        }
        let kw_len = u32_at(data, 64) as usize;
        let kw_bytes = data
            .get(68..68 + kw_len)
            .ok_or_else(|| corrupt("keywords"))?;
        let keywords = kw_bytes
            .split(|&b| b == 0)
            .filter(|k| !k.is_empty())
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        let mut messages = Vec::with_capacity(count);
        let mut expect_offset = 0u64;
        let mut last_uid = 0u32;
        for rec in data[HEADER..HEADER + count * RECORD].chunks_exact(RECORD) {
            let m = MessageMeta {
                uid: u32_at(rec, 0),
                flags: Flags(u32_at(rec, 4)),
                keywords: u64_at(rec, 8),
                offset: u64_at(rec, 16),
                len: u64_at(rec, 24),
                size: u64_at(rec, 32),
                date: u64_at(rec, 40) as i64,
                from_len: u32_at(rec, 48),
                fp: u32_at(rec, 52),
                bare_lf: u32_at(rec, 56),
            };
            // UID 0 is allowed only for a hidden pseudo message at the very start.
            let pseudo_ok = m.uid == 0 && m.offset == 0 && m.flags.contains(Flags::HIDDEN);
            let shape_ok = m.len > 0 && (m.from_len as u64) <= m.len && m.size <= m.len;
            if (m.uid <= last_uid && !pseudo_ok) || m.offset != expect_offset || !shape_ok {
                return Err(corrupt("records out of order"));
            }
            last_uid = m.uid;
            expect_offset = m
                .offset
                .checked_add(m.len)
                .ok_or_else(|| corrupt("offset overflow"))?;
            messages.push(m);
        }
        let index = Index {
            uidvalidity: u32_at(data, 8),
            uidnext: u32_at(data, 12),
            generation: u64_at(data, 24),
            mbox: MboxStat {
                dev: u64_at(data, 32),
                ino: u64_at(data, 40),
                size: u64_at(data, 48),
                mtime_ns: u64_at(data, 56) as i64,
            },
            keywords,
            messages,
            persisted: count,
            dirty: Vec::new(),
        };
        if index.uidnext <= last_uid || index.uidvalidity == 0 {
            return Err(corrupt("uidnext or uidvalidity"));
        }
        Ok(index)
    }

    /// Whether something changed since the index was read or last saved (flags of a
    /// message, or messages added).
    pub(crate) fn has_unsaved_changes(&self) -> bool {
        self.persisted != self.messages.len() || !self.dirty.is_empty()
    }

    /// Whether [`Index::save`] writes into the existing file (else it writes a new file
    /// and renames it into place).
    pub(crate) fn saves_in_place(&self) -> bool {
        self.persisted > 0
    }

    /// The header block [`Index::save`] last wrote for this index, if everything in memory
    /// is saved and reading the file back gives exactly this index (every keyword fits
    /// the header's list as a non-empty name): what a cache may key it by.
    pub(crate) fn saved_header(&self) -> Option<Vec<u8>> {
        let saved = !self.has_unsaved_changes();
        let representable = self
            .keywords
            .iter()
            .all(|k| !k.is_empty() && !k.contains('\0'))
            && self.keywords.iter().map(|k| k.len() + 1).sum::<usize>() <= HEADER - 4 - 68;
        (saved && representable).then(|| self.header())
    }

    fn header(&self) -> Vec<u8> {
        let mut h = vec![0u8; HEADER];
        h[..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&self.uidvalidity.to_le_bytes());
        h[12..16].copy_from_slice(&self.uidnext.to_le_bytes());
        h[16..24].copy_from_slice(&(self.messages.len() as u64).to_le_bytes());
        h[24..32].copy_from_slice(&self.generation.to_le_bytes());
        h[32..40].copy_from_slice(&self.mbox.dev.to_le_bytes());
        h[40..48].copy_from_slice(&self.mbox.ino.to_le_bytes());
        h[48..56].copy_from_slice(&self.mbox.size.to_le_bytes());
        h[56..64].copy_from_slice(&self.mbox.mtime_ns.to_le_bytes());
        let kw = self.keywords.join("\0");
        let kw = &kw.as_bytes()[..kw.len().min(HEADER - 4 - 68)];
        h[64..68].copy_from_slice(&(kw.len() as u32).to_le_bytes());
        h[68..68 + kw.len()].copy_from_slice(kw);
        let crc = crc32fast::hash(&h[..HEADER - 4]);
        h[HEADER - 4..].copy_from_slice(&crc.to_le_bytes());
        h
    }

    fn record(m: &MessageMeta) -> [u8; RECORD] {
        let mut r = [0u8; RECORD];
        r[0..4].copy_from_slice(&m.uid.to_le_bytes());
        r[4..8].copy_from_slice(&m.flags.0.to_le_bytes());
        r[8..16].copy_from_slice(&m.keywords.to_le_bytes());
        r[16..24].copy_from_slice(&m.offset.to_le_bytes());
        r[24..32].copy_from_slice(&m.len.to_le_bytes());
        r[32..40].copy_from_slice(&m.size.to_le_bytes());
        r[40..48].copy_from_slice(&m.date.to_le_bytes());
        r[48..52].copy_from_slice(&m.from_len.to_le_bytes());
        r[52..56].copy_from_slice(&m.fp.to_le_bytes());
        r[56..60].copy_from_slice(&m.bare_lf.to_le_bytes());
        r
    }

    /// Write the changes since the last save into the index file at `path`: new records,
    /// changed records, header (bumping the generation). `durable` adds an fsync.
    pub fn save(&mut self, path: &Path, durable: bool) -> Result<()> {
        self.generation += 1;
        if self.persisted == 0 {
            return self.write_new(path, durable);
        }
        let file = OpenOptions::new().write(true).open(path).at(path)?;
        let mut tail = Vec::with_capacity((self.messages.len() - self.persisted) * RECORD);
        for m in &self.messages[self.persisted..] {
            tail.extend_from_slice(&Index::record(m));
        }
        file.write_all_at(&tail, (HEADER + self.persisted * RECORD) as u64)
            .at(path)?;
        for &pos in &self.dirty {
            let rec = Index::record(&self.messages[pos]);
            file.write_all_at(&rec, (HEADER + pos * RECORD) as u64)
                .at(path)?;
        }
        file.write_all_at(&self.header(), 0).at(path)?;
        if durable {
            file.sync_data().at(path)?;
        }
        self.persisted = self.messages.len();
        self.dirty.clear();
        Ok(())
    }

    /// Write the whole index to a temporary file beside `path` and rename it into place
    /// (fsynced when `durable`).
    pub fn write_new(&mut self, path: &Path, durable: bool) -> Result<()> {
        let tmp = self.write_beside(path)?;
        crate::fsutil::rename(&tmp, path).at(path)?;
        if durable {
            crate::fsutil::fsync_dir(path)?;
        }
        Ok(())
    }

    /// Write the whole index, fsynced, to `<path>.new` and return that path; the caller
    /// renames it into place.
    pub fn write_beside(&mut self, path: &Path) -> Result<PathBuf> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        let tmp = beside(path);
        let mut data = self.header();
        data.reserve(self.messages.len() * RECORD);
        for m in &self.messages {
            data.extend_from_slice(&Index::record(m));
        }
        crate::fsutil::write_synced(&tmp, &data)?;
        self.persisted = self.messages.len();
        self.dirty.clear();
        Ok(tmp)
    }
}

/// The name of a new index written beside `path` before it is renamed into place.
pub fn beside(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".new");
    PathBuf::from(s)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(offset: u64, len: u64) -> MessageMeta {
        MessageMeta {
            uid: 0,
            flags: Flags::empty(),
            keywords: 0,
            offset,
            from_len: 10,
            len,
            size: len - 11,
            date: 1_700_000_000,
            fp: 7,
            bare_lf: 3,
        }
    }

    #[test]
    fn save_incrementally_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("INBOX.idx");
        let stat = MboxStat {
            dev: 1,
            ino: 2,
            size: 0,
            mtime_ns: 3,
        };
        let mut idx = Index::new(42, stat);
        idx.push(meta(0, 100));
        idx.save(&path, true).unwrap();
        idx.push(meta(100, 50));
        let bit = idx.keyword_bit("$Junk").unwrap();
        idx.set_flags(0, Flags::SEEN, bit);
        idx.save(&path, false).unwrap();
        let loaded = Index::load(&path).unwrap().unwrap();
        assert_eq!(loaded.messages, idx.messages);
        assert_eq!((loaded.uidvalidity, loaded.uidnext), (42, 3));
        assert_eq!(
            loaded.keyword_names(loaded.messages[0].keywords),
            vec!["$Junk"]
        );
        assert_eq!(loaded.generation, idx.generation);
    }

    #[test]
    fn saved_header_is_the_files_header_and_reads_back_as_the_same_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("INBOX.idx");
        let mut idx = Index::new(9, MboxStat::default());
        idx.push(meta(0, 100));
        idx.push(meta(100, 50));
        assert!(idx.saved_header().is_none(), "not saved yet");
        idx.save(&path, false).unwrap();
        let bit = idx.keyword_bit("$Work").unwrap();
        idx.set_flags(1, Flags::SEEN, bit);
        assert!(idx.saved_header().is_none(), "a change not saved yet");
        idx.save(&path, false).unwrap();
        let file = std::fs::read(&path).unwrap();
        assert_eq!(idx.saved_header().unwrap(), file[..HEADER]);
        assert_eq!(Index::load(&path).unwrap().unwrap(), idx);
        // A name the header's list cannot carry: no header to key a cache by.
        idx.keywords.push(String::new());
        assert!(idx.saved_header().is_none());
    }

    #[test]
    fn torn_or_foreign_files_are_corrupt_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.idx");
        let mut idx = Index::new(1, MboxStat::default());
        idx.push(meta(0, 100));
        idx.push(meta(100, 100));
        idx.save(&path, false).unwrap();
        let good = std::fs::read(&path).unwrap();
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(matches!(
            Index::load(&path),
            Err(StorageError::Corrupt { .. })
        ));
        let mut bad = good.clone();
        bad[20] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(Index::load(&path).is_err());
        std::fs::write(&path, b"From nobody\n").unwrap();
        assert!(Index::load(&path).is_err());
        assert!(Index::load(&dir.path().join("missing")).unwrap().is_none());
    }
}
