//! hamail-spool: inspect and operate on a hamail spool from the shell. Operators use it to
//! look into mailboxes and queue entries; the tests use it as a real separate process (a
//! "host") that appends, reads, expunges and holds locks.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hamail_storage::index::Flags;
use hamail_storage::{FolderError, LockOptions, Mailbox, NewMessage, Spool, StorageError};

#[derive(Parser, Debug)]
#[command(version, about = "Inspect and operate on a hamail spool")]
struct Cli {
    /// The spool root (the NFS mount).
    #[arg(long, env = "HAMAIL_SPOOL")]
    spool: PathBuf,
    /// Give up waiting for a lock after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Break dotlocks not refreshed for this many seconds.
    #[arg(long, default_value_t = 300.0)]
    stale_after: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug)]
struct Target {
    #[arg(long)]
    user: String,
    #[arg(long, default_value = "INBOX")]
    mailbox: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Append one message read from standard input; prints "uid UIDVALIDITY UID".
    Append {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "")]
        sender: String,
        #[arg(long, default_value = "")]
        id: String,
        /// Flags to set, comma-separated (\Seen,\Flagged,...).
        #[arg(long, default_value = "")]
        flags: String,
    },
    /// Append COUNT generated, self-checking messages one at a time (load generator).
    AppendGen {
        #[command(flatten)]
        target: Target,
        /// Tag that makes the messages of this writer unique.
        #[arg(long)]
        writer: String,
        #[arg(long)]
        count: u32,
        /// Body size in bytes.
        #[arg(long, default_value_t = 2000)]
        size: usize,
        /// Pause between messages, in milliseconds (to spread load over time).
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
    },
    /// Take the write lock, print "locked", hold it, then print "released".
    HoldLock {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        seconds: f64,
    },
    /// Print "uidvalidity V uidnext N count C", then "UID FLAGS SIZE" per message.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Print one message's exact bytes.
    Cat {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        uid: u32,
    },
    /// Set the flags of a message (replacing them), e.g. --flags '\Seen,\Deleted'.
    Store {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        uid: u32,
        #[arg(long, default_value = "")]
        flags: String,
    },
    /// Expunge the given UIDs (comma-separated), or every \Deleted message.
    Expunge {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_delimiter = ',')]
        uids: Vec<u32>,
    },
    /// Read every message and check generated ones against their checksums; prints
    /// "ok COUNT" or the problems (exit 1). With --counts: "found F duplicates D partials
    /// P" (distinct generated messages, extra copies, damaged ones), exit 1 unless D and
    /// P are 0.
    Verify {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        counts: bool,
    },
    /// List queue entries: "ID ATTEMPTS SENDER RECIPIENTS...".
    Queue,
    /// Manage a user's mailboxes as IMAP does (with their sidecars, crash-safe).
    Folder {
        #[arg(long)]
        user: String,
        #[command(subcommand)]
        op: FolderOp,
    },
}

#[derive(Subcommand, Debug)]
enum FolderOp {
    /// Print "NAME" per mailbox, "NAME/" per hierarchy level, INBOX first.
    List,
    /// Create a mailbox (a trailing '/' makes a hierarchy level).
    Create { name: String },
    /// Delete a mailbox with its messages, or an empty hierarchy level.
    Delete { name: String },
    /// Rename a mailbox or a hierarchy level (not INBOX).
    Rename { from: String, to: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hamail-spool: {e}");
            // 75 = EX_TEMPFAIL, as sendmail-style tools report a temporary failure.
            ExitCode::from(if e.is_temporary() { 75 } else { 1 })
        }
    }
}

fn parse_flags(s: &str) -> Result<Flags, StorageError> {
    let mut f = Flags::empty();
    for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        f.insert(
            Flags::from_name(name).ok_or_else(|| StorageError::InvalidName {
                name: name.to_string(),
                reason: "not a system flag",
            })?,
        );
    }
    Ok(f)
}

/// A generated message: headers, then a body whose last line is the CRC of the rest.
pub fn generated(writer: &str, n: u32, size: usize) -> Vec<u8> {
    let mut m = format!(
        "X-Hamail-Gen: {writer} {n}\r\nFrom: {writer}@load.test\r\nTo: user@example.test\r\nSubject: gen {writer} {n}\r\n\
         Message-ID: <{writer}.{n}@load.test>\r\n\r\n"
    )
    .into_bytes();
    // Lines that must survive mboxrd quoting.
    m.extend_from_slice(b"From the start of a line\r\n>From quoted\r\n");
    let mut i = 0usize;
    while m.len() < size {
        m.extend_from_slice(
            format!("line {i} of {writer}/{n} .........................\r\n").as_bytes(),
        );
        i += 1;
    }
    let crc = crc32fast::hash(&m);
    m.extend_from_slice(format!("X-Check: {crc:08x}\r\n").as_bytes());
    m
}

/// Check a generated message; returns its "writer n" tag.
fn check_generated(data: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(data);
    let last = text.trim_end().rsplit("\r\n").next().unwrap_or("");
    let body_len = data.len() - last.len() - 2;
    let want = last.strip_prefix("X-Check: ").ok_or("no checksum line")?;
    let got = format!("{:08x}", crc32fast::hash(&data[..body_len]));
    if want != got {
        return Err(format!("checksum {got} != {want}"));
    }
    let subject = text
        .lines()
        .find_map(|l| l.strip_prefix("Subject: gen "))
        .ok_or("no subject")?;
    Ok(subject.trim().to_string())
}

fn mailbox(spool: &Spool, t: &Target) -> Result<Mailbox, StorageError> {
    spool.mailbox(&t.user, &t.mailbox)
}

fn run(cli: Cli) -> Result<ExitCode, StorageError> {
    let opts = LockOptions {
        timeout: Duration::from_secs_f64(cli.timeout),
        stale_after: Duration::from_secs_f64(cli.stale_after),
        ..LockOptions::default()
    };
    let spool = Spool::open(&cli.spool, opts)?;
    let mut out = std::io::stdout().lock();
    let io = |e: std::io::Error| StorageError::io("<stdout>", e);
    match cli.command {
        Command::Append {
            target,
            sender,
            id,
            flags,
        } => {
            let mut data = Vec::new();
            std::io::stdin()
                .read_to_end(&mut data)
                .map_err(|e| StorageError::io("<stdin>", e))?;
            let mut msg = NewMessage::new(&sender, data);
            msg.queue_id = id;
            msg.flags = parse_flags(&flags)?;
            let a = mailbox(&spool, &target)?.append(&[msg])?;
            writeln!(out, "uid {} {}", a.uidvalidity, a.first_uid).map_err(io)?;
        }
        Command::AppendGen {
            target,
            writer,
            count,
            size,
            pause_ms,
        } => {
            let mb = mailbox(&spool, &target)?;
            for n in 0..count {
                let msg =
                    NewMessage::new(&format!("{writer}@load.test"), generated(&writer, n, size));
                let a = mb.append(&[msg])?;
                writeln!(out, "{writer} {n} {} {}", a.uidvalidity, a.first_uid).map_err(io)?;
                if pause_ms > 0 {
                    std::thread::sleep(Duration::from_millis(pause_ms));
                }
            }
        }
        Command::HoldLock { target, seconds } => {
            let session = mailbox(&spool, &target)?.write()?;
            writeln!(out, "locked").map_err(io)?;
            out.flush().map_err(io)?;
            // Refresh the dotlock like any long-running holder, so it never looks stale.
            let until = std::time::Instant::now() + Duration::from_secs_f64(seconds);
            while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(left.min(Duration::from_millis(500)));
                session.refresh()?;
            }
            drop(session);
            writeln!(out, "released").map_err(io)?;
        }
        Command::List { target } => {
            let s = mailbox(&spool, &target)?.read()?;
            let idx = s.index();
            let visible: Vec<_> = idx.visible().collect();
            writeln!(
                out,
                "uidvalidity {} uidnext {} count {}",
                idx.uidvalidity,
                idx.uidnext,
                visible.len()
            )
            .map_err(io)?;
            for m in visible {
                let mut line = format!("{} {} {}", m.uid, m.flags, m.size);
                for k in idx.keyword_names(m.keywords) {
                    line.push(' ');
                    line.push_str(k);
                }
                writeln!(out, "{line}").map_err(io)?;
            }
        }
        Command::Cat { target, uid } => {
            let s = mailbox(&spool, &target)?.read()?;
            let m = s
                .index()
                .by_uid(uid)
                .ok_or(StorageError::NoSuchMessage { uid })?;
            out.write_all(&s.read_message(m)?).map_err(io)?;
        }
        Command::Store { target, uid, flags } => {
            let mut s = mailbox(&spool, &target)?.write()?;
            s.set_flags(&[(uid, parse_flags(&flags)?, Vec::new())])?;
        }
        Command::Expunge { target, uids } => {
            let mut s = mailbox(&spool, &target)?.write()?;
            let removed = if uids.is_empty() {
                s.expunge_deleted()?
            } else {
                s.expunge(&uids)?
            };
            writeln!(out, "expunged {}", removed.len()).map_err(io)?;
        }
        Command::Verify { target, counts } => {
            let s = mailbox(&spool, &target)?.read()?;
            let mut problems = Vec::new();
            let mut tags = std::collections::HashSet::new();
            let mut count = 0;
            let (mut duplicates, mut partials) = (0, 0);
            for m in s.index().visible() {
                let data = s.read_message(m)?;
                if !data.starts_with(b"X-Hamail-Gen: ") {
                    continue; // not a generated message
                }
                count += 1;
                match check_generated(&data) {
                    Ok(tag) => {
                        if !tags.insert(tag.clone()) {
                            duplicates += 1;
                            problems.push(format!("uid {}: duplicate {tag}", m.uid));
                        }
                    }
                    Err(e) => {
                        partials += 1;
                        problems.push(format!("uid {}: {e}", m.uid));
                    }
                }
            }
            if counts {
                let found = tags.len();
                writeln!(
                    out,
                    "found {found} duplicates {duplicates} partials {partials}"
                )
                .map_err(io)?;
                if !problems.is_empty() {
                    return Ok(ExitCode::from(1));
                }
            } else if problems.is_empty() {
                writeln!(out, "ok {count}").map_err(io)?;
            } else {
                for p in problems {
                    writeln!(out, "{p}").map_err(io)?;
                }
                return Ok(ExitCode::from(1));
            }
        }
        Command::Queue => {
            let q = spool.queue();
            for id in q.list()? {
                match q.claim(&id) {
                    Ok(Some(c)) => {
                        let e = &c.entry;
                        writeln!(
                            out,
                            "{} {} {} {}",
                            e.id,
                            e.attempts,
                            e.sender,
                            e.recipients.join(" ")
                        )
                        .map_err(io)?;
                    }
                    Ok(None) => writeln!(out, "{id} (being delivered)").map_err(io)?,
                    Err(e) => writeln!(out, "{id} error: {e}").map_err(io)?,
                }
            }
        }
        Command::Folder { user, op } => {
            let folders = spool.folders(&user)?;
            let done = match op {
                FolderOp::List => {
                    for e in folders.list() {
                        let slash = if e.noselect { "/" } else { "" };
                        writeln!(out, "{}{slash}", e.name).map_err(io)?;
                    }
                    Ok(())
                }
                FolderOp::Create { name } => folders.create(&name),
                FolderOp::Delete { name } => folders.delete(&name),
                FolderOp::Rename { from, to } => folders.rename(&from, &to),
            };
            match done {
                Ok(()) => {}
                Err(FolderError::Storage(e)) => return Err(e),
                Err(refused) => {
                    eprintln!("hamail-spool: {refused}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
