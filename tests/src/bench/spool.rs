//! spoolbench: the storage numbers quoted in the README, measured on the filesystem of
//! `--dir` (put it on the NFS mount to measure NFS).
//!
//! 1. raw append + fdatasync of one writer without any locking (the baseline);
//! 2. `Mailbox::append` (dotlock + fcntl + intent + fsync, group commit) from 1, 4 and 16
//!    concurrent writer *processes* into one mailbox;
//! 3. a ~1 GB mailbox of 100,000 messages: sequential read speed of the file, opening it
//!    cold (no index: full scan) and warm (valid index), fetching one message from the
//!    middle.
//!
//! Usage: cargo run --release -p hamail-lab -- bench spool \
//!          [--dir DIR] [--appends N] [--messages N] [--size BYTES]
//!
//! The writer processes are this program again (`bench spool --worker ID COUNT`).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hamail_storage::mbox::format;
use hamail_storage::{LockOptions, NewMessage, Spool};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to measure: put it on the filesystem to measure (the NFS mount for NFS).
    #[arg(long, default_value_os_t = std::env::temp_dir().join("spoolbench"))]
    dir: PathBuf,
    /// Appends per measurement (4 KB messages).
    #[arg(long, default_value_t = 4000)]
    appends: usize,
    /// Messages in the big mailbox.
    #[arg(long, default_value_t = 100_000)]
    messages: usize,
    /// Size of each message of the big mailbox, in bytes.
    #[arg(long, default_value_t = 10_000)]
    size: usize,
    /// Internal: append COUNT messages into DIR as writer ID, then exit.
    #[arg(long, num_args = 2, value_names = ["ID", "COUNT"], hide = true)]
    worker: Option<Vec<usize>>,
}

fn body(i: usize, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: sender{i}@example.test\r\nTo: bench@example.test\r\nSubject: message {i}\r\n\
         Message-ID: <{i}@bench.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    let line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n";
    while m.len() + line.len() <= size {
        m.extend_from_slice(line);
    }
    m
}

fn spool(dir: &Path) -> Res<Spool> {
    Ok(Spool::open(dir, LockOptions::default())?)
}

fn worker(dir: &Path, id: usize, count: usize) -> Res<()> {
    let inbox = spool(dir)?.inbox("bench")?;
    for i in 0..count {
        inbox.append(&[NewMessage::new(
            "s@example.test",
            body(id * 1_000_000 + i, 4000),
        )])?;
    }
    Ok(())
}

fn raw_appends(dir: &Path, n: usize) -> Res<f64> {
    let path = dir.join("raw-mbox");
    let _ = std::fs::remove_file(&path);
    let mut f = OpenOptions::new().create(true).append(true).open(&path)?;
    let start = Instant::now();
    for i in 0..n {
        let mut buf = Vec::new();
        format::encode(&mut buf, "s@example.test", 0, &body(i, 4000));
        f.write_all(&buf)?;
        f.sync_data()?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn concurrent_appends(dir: &Path, writers: usize, total: usize) -> Res<f64> {
    let sub = dir.join(format!("w{writers}"));
    let _ = std::fs::remove_dir_all(&sub);
    std::fs::create_dir_all(&sub)?;
    let exe = std::env::current_exe()?;
    let per = total / writers;
    let start = Instant::now();
    let children: Vec<_> = (0..writers)
        .map(|w| {
            Command::new(&exe)
                .args(["bench", "spool", "--dir"])
                .arg(&sub)
                .args(["--worker", &w.to_string(), &per.to_string()])
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for mut c in children {
        if !c.wait()?.success() {
            return Err("a writer failed".into());
        }
    }
    let rate = (per * writers) as f64 / start.elapsed().as_secs_f64();
    let s = spool(&sub)?.inbox("bench")?.read()?;
    if s.index().messages.len() != per * writers {
        return Err(format!(
            "expected {} messages, found {}",
            per * writers,
            s.index().messages.len()
        )
        .into());
    }
    Ok(rate)
}

fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn read_speed(path: &Path) -> Res<f64> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 8 << 20];
    let start = Instant::now();
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn big_mailbox(a: &Args) -> Res<()> {
    let dir = a.dir.join("big");
    let _ = std::fs::remove_dir_all(&dir);
    let sp = spool(&dir)?;
    let inbox = sp.inbox("big")?;
    let path = inbox.mbox_path().to_path_buf();
    {
        let mut f = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(&path)?);
        for i in 0..a.messages {
            let mut buf = Vec::new();
            format::encode(
                &mut buf,
                "s@example.test",
                1_700_000_000 + i as i64,
                &body(i, a.size),
            );
            f.write_all(&buf)?;
        }
        f.flush()?;
    }
    let size = std::fs::metadata(&path)?.len();
    println!(
        "big mailbox: {} messages, {:.2} GB",
        a.messages,
        size as f64 / 1e9
    );
    // Best of 3: a page-cache read is a memory copy and varies with what else runs.
    let mut warm_read = 0f64;
    for _ in 0..3 {
        warm_read = warm_read.max(read_speed(&path)?);
    }
    let cold_read = if drop_caches() {
        Some(read_speed(&path)?)
    } else {
        None
    };

    // Cold open: no index, full scan (warm page cache, then cold if we may drop caches).
    let mut builds = Vec::new();
    for cold in [false, true] {
        if cold && !drop_caches() {
            continue;
        }
        let _ = std::fs::remove_file(inbox.index_path());
        let start = Instant::now();
        let s = inbox.read()?;
        let t = start.elapsed();
        if s.index().messages.len() != a.messages {
            return Err("cold open found the wrong number of messages".into());
        }
        builds.push((cold, t, size as f64 / t.as_secs_f64()));
    }
    // The build itself (scan + UID assignment, in memory), without locking and writing.
    let f = std::fs::File::open(&path)?;
    let stat = hamail_storage::index::MboxStat::of(&f, &path)?;
    let mut build_only = Duration::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let built = hamail_storage::index::sync::rebuild(None, &f, &stat, &path, &mut |p| {
            Ok(hamail_storage::index::sync::new_uidvalidity(p))
        })?;
        build_only = build_only.min(start.elapsed());
        if built.messages.len() != a.messages {
            return Err("the in-memory build found the wrong number of messages".into());
        }
    }
    // Warm open: valid index.
    let mut warm = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let s = inbox.read()?;
        warm.push(start.elapsed());
        drop(s);
    }
    warm.sort();
    let start = Instant::now();
    let w = inbox.write()?;
    let warm_write = start.elapsed();
    drop(w);
    // Fetch from the middle, in an open session and including the open.
    let s = inbox.read()?;
    let mid = &s.index().messages[a.messages / 2];
    let start = Instant::now();
    let data = s.read_message(mid)?;
    let fetch = start.elapsed();
    drop(s);
    let start = Instant::now();
    let s = inbox.read()?;
    let data2 = s.read_message(&s.index().messages[a.messages / 2])?;
    let open_fetch = start.elapsed();
    if data != data2 || data != body(a.messages / 2, a.size) {
        return Err("fetched the wrong bytes".into());
    }

    println!(
        "sequential read of the mbox: {:.0} MB/s (page cache)",
        warm_read / 1e6
    );
    if let Some(c) = cold_read {
        println!(
            "sequential read of the mbox: {:.0} MB/s (cold, caches dropped)",
            c / 1e6
        );
    }
    for (cold, t, speed) in builds {
        let (label, base) = if cold {
            ("cold cache", cold_read.unwrap_or(warm_read))
        } else {
            ("page cache", warm_read)
        };
        println!(
            "open without index ({label}): {} = {:.0} MB/s = {:.0}% of sequential read",
            ms(t),
            speed / 1e6,
            100.0 * speed / base
        );
    }
    println!(
        "index build alone (page cache, in memory, best of 3): {} = {:.0} MB/s = {:.0}% of sequential read",
        ms(build_only),
        size as f64 / build_only.as_secs_f64() / 1e6,
        100.0 * size as f64 / build_only.as_secs_f64() / warm_read
    );
    println!(
        "open with valid index (read lock, median of 5): {}",
        ms(warm[2])
    );
    println!("open with valid index (write lock): {}", ms(warm_write));
    println!(
        "fetch message {} in an open session: {}",
        a.messages / 2,
        ms(fetch)
    );
    println!(
        "open + fetch message {}: {}",
        a.messages / 2,
        ms(open_fetch)
    );
    Ok(())
}

pub fn main(a: Args) -> anyhow::Result<()> {
    run(a).map_err(|e| anyhow::anyhow!(e))
}

fn run(a: Args) -> Res<()> {
    if let Some([id, count]) = a.worker.as_deref() {
        return worker(&a.dir, *id, *count);
    }
    std::fs::create_dir_all(&a.dir)?;
    println!(
        "spoolbench on {} ({} cores)",
        a.dir.display(),
        std::thread::available_parallelism()?
    );
    // fsync speed on a shared virtual disk drifts; measure the baseline around each
    // concurrent run and compare with the median.
    let mut raws = vec![raw_appends(&a.dir, a.appends)?];
    let mut rates = Vec::new();
    for writers in [1, 4, 16] {
        rates.push((writers, concurrent_appends(&a.dir, writers, a.appends)?));
        raws.push(raw_appends(&a.dir, a.appends)?);
    }
    raws.sort_by(f64::total_cmp);
    let raw = raws[raws.len() / 2];
    println!(
        "raw append+fdatasync, 1 writer, no locks: {raw:.0} msg/s (4 KB; median of {}, range {:.0}-{:.0})",
        raws.len(),
        raws[0],
        raws[raws.len() - 1]
    );
    for (writers, rate) in rates {
        println!(
            "Mailbox::append, {writers:2} writer processes: {rate:.0} msg/s = {:.0}% of raw",
            100.0 * rate / raw
        );
    }
    big_mailbox(&a)?;
    Ok(())
}
