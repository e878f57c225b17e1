//! Bringing an index in line with its mbox, under the mailbox lock.
//!
//! - **Valid**: same inode, size and mtime as recorded: nothing to do (the fast path; no
//!   read of the mbox at all).
//! - **Extend**: same inode, the file grew, the recorded tail is intact (the last message
//!   re-read has the same fingerprint and a `From ` line starts where it ended): only mail
//!   was appended, by us or by Postfix. Scan the new bytes; new messages get the next UIDs.
//!   The result is deterministic, so a reader may extend in memory without writing.
//! - **Rebuild**: anything else (rewritten, truncated, edited). Scan everything and keep
//!   the UIDs of messages recognisable by fingerprint as long as they stay in order;
//!   otherwise start a new UIDVALIDITY. Without an old index, honour `X-IMAPbase`/`X-UID`/
//!   `Status`/`X-Status`/`X-Keywords` headers.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use super::headers::{self, HEADER_LIMIT};
use super::{Flags, Index, MessageMeta};
use crate::error::{IoContext, Result};
use crate::mbox::format;

/// Identity and version of an mbox file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MboxStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
}

impl MboxStat {
    pub fn of(file: &File, path: &Path) -> Result<MboxStat> {
        let md = file.metadata().at(path)?;
        Ok(MboxStat {
            dev: md.dev(),
            ino: md.ino(),
            size: md.len(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        })
    }
}

/// How an index relates to the mbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    Valid,
    Extend,
    Rebuild,
}

/// Decide what `index` needs, reading at most the last message of the mbox.
pub fn check(index: &Index, file: &File, stat: &MboxStat, path: &Path) -> Result<Validity> {
    // The inode number alone names the file: st_dev is per client on NFS (each host
    // gives the mount its own device number), so comparing it would make every host
    // rebuild the index after every write by another host.
    if index.mbox.ino != stat.ino {
        return Ok(Validity::Rebuild);
    }
    let covered = index.covered();
    if index.mbox.size != covered {
        return Ok(Validity::Rebuild);
    }
    if stat.size == covered && stat.mtime_ns == index.mbox.mtime_ns {
        return Ok(Validity::Valid);
    }
    if stat.size <= covered {
        return Ok(Validity::Rebuild);
    }
    // Grown: is what we knew still there?
    if let Some(last) = index.messages.last() {
        let mut span = vec![0u8; last.len as usize];
        file.read_exact_at(&mut span, last.offset).at(path)?;
        if crc32fast::hash(&span) != last.fp || !span.starts_with(b"From ") {
            return Ok(Validity::Rebuild);
        }
    }
    let mut head = [0u8; 5];
    file.read_exact_at(&mut head, covered).at(path)?;
    Ok(if &head == b"From " {
        Validity::Extend
    } else {
        Validity::Rebuild
    })
}

/// One message found by [`scan`].
#[derive(Debug)]
pub struct Scanned<'a> {
    pub meta: MessageMeta,
    /// The first bytes of the message after the `From ` line (for header import).
    pub head: &'a [u8],
}

/// Scan `[start, end)` of the mbox, which must begin at a message boundary, calling `f`
/// for every message. Reads in large chunks; each message is seen whole once.
pub fn scan(
    file: &File,
    path: &Path,
    start: u64,
    end: u64,
    f: impl FnMut(Scanned<'_>),
) -> Result<()> {
    scan_chunked(file, path, start, end, 8 << 20, f)
}

fn scan_chunked(
    file: &File,
    path: &Path,
    start: u64,
    end: u64,
    chunk: usize,
    mut f: impl FnMut(Scanned<'_>),
) -> Result<()> {
    // buf[..filled] holds file bytes from buf_offset on. Allocated (and zeroed) once;
    // each round moves the unfinished message to the front and reads the next chunk
    // behind it, growing only for a message larger than a chunk.
    let mut buf: Vec<u8> = vec![0; chunk * 2];
    let mut filled = 0usize;
    let mut buf_offset = start;
    let mut read_pos = start;
    // Where the unfinished message starts in buf, and how far it has been searched.
    let mut msg_start = 0usize;
    let mut searched = 1usize;
    // `>From ` lines seen so far in the unfinished message (each decodes one byte shorter).
    let mut quoted = 0u64;
    loop {
        let eof = read_pos >= end;
        if !eof {
            let want = chunk.min((end - read_pos) as usize);
            if buf.len() < filled + want {
                buf.resize(filled + want, 0);
            }
            file.read_exact_at(&mut buf[filled..filled + want], read_pos)
                .at(path)?;
            filled += want;
            read_pos += want as u64;
        }
        let data = &buf[..filled];
        // One pass over every "From " finds both message boundaries and quoted lines.
        let unsearched = data.get(searched..).unwrap_or_default();
        for i in format::find_from(unsearched).map(|i| i + searched) {
            match format::classify_from(data, i) {
                format::FromAt::LineStart => {
                    emit(
                        &data[msg_start..i],
                        buf_offset + msg_start as u64,
                        quoted,
                        &mut f,
                    );
                    msg_start = i;
                    quoted = 0;
                }
                format::FromAt::Quoted => quoted += 1,
                format::FromAt::InLine => {}
            }
        }
        if eof {
            if msg_start < filled {
                emit(
                    &data[msg_start..],
                    buf_offset + msg_start as u64,
                    quoted,
                    &mut f,
                );
            }
            return Ok(());
        }
        // Keep the unfinished message. Resume 4 bytes before the end: a "From " split
        // across chunks starts there, and none found already starts that late.
        let resume = filled.saturating_sub(4).max(msg_start + 1);
        buf.copy_within(msg_start..filled, 0);
        filled -= msg_start;
        buf_offset += msg_start as u64;
        searched = resume - msg_start;
        msg_start = 0;
    }
}

fn emit(span: &[u8], offset: u64, quoted: u64, f: &mut impl FnMut(Scanned<'_>)) {
    let from_len = memchr::memchr(b'\n', span).map_or(span.len(), |i| i + 1);
    let body = &span[from_len..];
    let stripped = format::stripped_len(body);
    let meta = MessageMeta {
        uid: 0,
        flags: Flags::empty(),
        keywords: 0,
        offset,
        from_len: from_len as u32,
        len: span.len() as u64,
        size: stripped.saturating_sub(quoted),
        date: format::from_line_date(&span[..from_len]).unwrap_or(0),
        fp: crc32fast::hash(span),
        // mboxrd unquoting removes '>' only, never line ends.
        bare_lf: crate::index::count_bare_lf(&body[..stripped as usize]),
    };
    f(Scanned {
        meta,
        head: &body[..body.len().min(HEADER_LIMIT)],
    });
}

/// Extend `index` with the messages appended after what it covers.
pub fn extend(index: &mut Index, file: &File, stat: &MboxStat, path: &Path) -> Result<()> {
    let start = index.covered();
    scan(file, path, start, stat.size, |s| {
        index.push(s.meta);
    })?;
    index.mbox = *stat;
    Ok(())
}

/// A fresh UIDVALIDITY: the time, and always above the previous one.
pub fn new_uidvalidity(previous: Option<u32>) -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() as u32);
    now.max(previous.map_or(1, |p| p.wrapping_add(1)).max(1))
}

/// Below this size a full scan runs on one thread.
const PARALLEL_MIN: u64 = 64 << 20;

/// Scan the whole mbox (parsing headers for import if asked). Large files are cut at
/// message boundaries into one part per core and scanned in parallel: the scan is
/// CPU-bound (search + CRC) once the file is in the page cache.
fn scan_all(
    file: &File,
    path: &Path,
    size: u64,
    import: bool,
) -> Result<Vec<(MessageMeta, headers::ImportedMessage)>> {
    let scan_part =
        |start: u64, end: u64| -> Result<Vec<(MessageMeta, headers::ImportedMessage)>> {
            let mut out = Vec::new();
            scan(file, path, start, end, |s| {
                let imported = if import {
                    headers::parse(s.head)
                } else {
                    headers::ImportedMessage::default()
                };
                out.push((s.meta, imported));
            })?;
            Ok(out)
        };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8) as u64;
    if size < PARALLEL_MIN || threads < 2 {
        return scan_part(0, size);
    }
    let mut cuts = vec![0u64];
    for k in 1..threads {
        if let Some(b) = boundary_after(file, path, k * size / threads, size)? {
            if b > *cuts.last().unwrap_or(&0) {
                cuts.push(b);
            }
        }
    }
    cuts.push(size);
    let parts: Vec<Result<Vec<_>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                let (a, b) = (w[0], w[1]);
                scope.spawn(move || scan_part(a, b))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(scan_panicked(path))))
            .collect()
    });
    let mut all = Vec::new();
    for part in parts {
        all.extend(part?);
    }
    Ok(all)
}

fn scan_panicked(path: &Path) -> crate::error::StorageError {
    crate::error::StorageError::Corrupt {
        what: "mbox",
        path: path.to_path_buf(),
        reason: "scan thread panicked".into(),
    }
}

/// The first message boundary at or after `from` (a `From ` at a line start), if any
/// within the next few megabytes.
fn boundary_after(file: &File, path: &Path, from: u64, size: u64) -> Result<Option<u64>> {
    const WINDOW: u64 = 4 << 20;
    let start = from.saturating_sub(1);
    let len = WINDOW.min(size - start) as usize;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, start).at(path)?;
    Ok(memchr::memmem::find(&buf, b"\nFrom ").map(|i| start + i as u64 + 1))
}

/// Build an index from the whole mbox, keeping what `old` knew where it still applies.
/// `fresh_uidvalidity` gives a new UIDVALIDITY above the one passed (see [`validity`]).
///
/// [`validity`]: super::validity
pub fn rebuild(
    old: Option<&Index>,
    file: &File,
    stat: &MboxStat,
    path: &Path,
    fresh_uidvalidity: &mut dyn FnMut(Option<u32>) -> Result<u32>,
) -> Result<Index> {
    let scanned = scan_all(file, path, stat.size, old.is_none())?;
    let index = match old {
        Some(old) => match keep_uids(old, &scanned, stat) {
            Some(index) => index,
            None => fresh(
                fresh_uidvalidity(Some(old.uidvalidity))?,
                Vec::new(),
                scanned,
                stat,
            ),
        },
        None => import_headers(scanned, stat, fresh_uidvalidity)?,
    };
    tracing::info!(
        mbox = %path.display(),
        messages = index.messages.len(),
        uidvalidity = index.uidvalidity,
        "rebuilt index"
    );
    Ok(index)
}

/// Match scanned messages to the old index by fingerprint. None if UIDs cannot stay
/// ascending (a changed or new message before a known one).
fn keep_uids(
    old: &Index,
    scanned: &[(MessageMeta, headers::ImportedMessage)],
    stat: &MboxStat,
) -> Option<Index> {
    let mut by_fp: HashMap<(u32, u64), Vec<usize>> = HashMap::new();
    for (i, m) in old.messages.iter().enumerate() {
        by_fp.entry((m.fp, m.len)).or_default().push(i);
    }
    let mut index = Index::new(old.uidvalidity, *stat);
    index.uidnext = old.uidnext;
    index.keywords = old.keywords.clone();
    let mut next_old = 0usize;
    let mut unmatched_seen = false;
    for (meta, _) in scanned {
        let found = by_fp
            .get(&(meta.fp, meta.len))
            .and_then(|c| c.iter().copied().find(|&i| i >= next_old));
        match found {
            Some(i) if !unmatched_seen => {
                let o = &old.messages[i];
                let mut m = meta.clone();
                m.uid = o.uid;
                m.flags = o.flags;
                m.keywords = o.keywords;
                // Same bytes: the recorded exact size (which knows about an added
                // final newline) still holds.
                m.size = o.size;
                index.messages.push(m);
                next_old = i + 1;
            }
            Some(_) => return None,
            None => {
                unmatched_seen = true;
                index.push(meta.clone());
            }
        }
    }
    index.generation = old.generation + 1;
    Some(index)
}

fn fresh(
    uidvalidity: u32,
    keywords: Vec<String>,
    scanned: Vec<(MessageMeta, headers::ImportedMessage)>,
    stat: &MboxStat,
) -> Index {
    let mut index = Index::new(uidvalidity, *stat);
    index.keywords = keywords;
    for (meta, _) in scanned {
        index.push(meta);
    }
    index
}

/// First build of an index for an mbox we have never seen: honour the headers other
/// IMAP servers left, if they are consistent (UIDs ascending and below UIDNEXT).
fn import_headers(
    scanned: Vec<(MessageMeta, headers::ImportedMessage)>,
    stat: &MboxStat,
    fresh_uidvalidity: &mut dyn FnMut(Option<u32>) -> Result<u32>,
) -> Result<Index> {
    // Only the first message may carry the mailbox state or be a pseudo message; an
    // absurd UIDNEXT (no room left for new mail) is not trusted.
    let base = scanned
        .first()
        .and_then(|(_, h)| h.base.clone())
        .filter(|b| b.uidvalidity > 0 && b.uidnext < u32::MAX / 2);
    let first_is_pseudo = scanned.first().is_some_and(|(_, h)| h.pseudo);
    let uids_ok = base.as_ref().is_some_and(|b| {
        let mut last = 0u32;
        scanned
            .iter()
            .skip(usize::from(first_is_pseudo))
            .all(|(_, h)| match h.uid {
                Some(u) if u > last && u < b.uidnext => {
                    last = u;
                    true
                }
                _ => false,
            })
    });
    // The recorded UIDVALIDITY only stands with the recorded UIDs; numbering afresh
    // under it would give old UIDs to other messages.
    let mut index = match &base {
        Some(b) if uids_ok => Index::new(b.uidvalidity, *stat),
        Some(b) => Index::new(fresh_uidvalidity(Some(b.uidvalidity))?, *stat),
        None => Index::new(fresh_uidvalidity(None)?, *stat),
    };
    if let Some(b) = &base {
        for k in &b.keywords {
            index.keyword_bit(k);
        }
    }
    for (mut meta, h) in scanned {
        meta.flags = h.flags;
        for k in &h.keywords {
            if let Some(bit) = index.keyword_bit(k) {
                meta.keywords |= bit;
            }
        }
        if h.pseudo && first_is_pseudo && index.messages.is_empty() {
            // The pseudo message occupies bytes but is no message: UID 0, hidden.
            meta.flags = Flags::HIDDEN;
            meta.uid = 0;
            index.messages.push(meta);
            continue;
        }
        match (uids_ok, h.uid) {
            (true, Some(uid)) => {
                meta.uid = uid;
                index.messages.push(meta);
            }
            _ => {
                index.push(meta);
            }
        }
    }
    if uids_ok {
        let last = index.messages.last().map_or(0, |m| m.uid);
        index.uidnext = base.map_or(1, |b| b.uidnext).max(last + 1);
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Chunked scanning finds exactly the messages and sizes that were written, wherever
        /// the chunk edges fall (also inside "From " and ">From ").
        #[test]
        fn scan_agrees_with_what_was_written(
            msgs in proptest::collection::vec(proptest::collection::vec(prop_oneof![
                Just(b"From ".to_vec()), Just(b">From ".to_vec()), Just(b"\n".to_vec()),
                Just(b"x".to_vec()), Just(b">".to_vec()), Just(b"\r\n".to_vec()),
            ], 0..12).prop_map(|p| p.concat()), 0..6),
            chunk in 1usize..40,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("mbox");
            let mut data = Vec::new();
            let mut expect = Vec::new();
            for m in &msgs {
                let start = data.len() as u64;
                format::encode(&mut data, "s", 0, m);
                expect.push((start, data.len() as u64 - start, m.len() as u64 + u64::from(!m.ends_with(b"\n"))));
            }
            std::fs::write(&path, &data).unwrap();
            let file = File::open(&path).unwrap();
            let mut got = Vec::new();
            scan_chunked(&file, &path, 0, data.len() as u64, chunk, |s| {
                got.push((s.meta.offset, s.meta.len, s.meta.size));
            }).unwrap();
            prop_assert_eq!(got, expect);
        }
    }

    #[test]
    fn parallel_scan_finds_the_same_messages_as_one_pass() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        let mut data = Vec::new();
        let mut n = 0;
        while (data.len() as u64) < PARALLEL_MIN + (3 << 20) {
            let body = format!("Subject: {n}\n\nFrom x\n{}\n", "y".repeat(n % 5000));
            format::encode(&mut data, "s", n as i64, body.as_bytes());
            n += 1;
        }
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let mut one = Vec::new();
        scan(&file, &path, 0, data.len() as u64, |s| one.push(s.meta)).unwrap();
        let all: Vec<MessageMeta> = scan_all(&file, &path, data.len() as u64, true)
            .unwrap()
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        assert_eq!(one.len(), n);
        assert_eq!(all, one);
    }
}
