//! The few ways this crate opens and writes files, in one place. (std opens every file
//! with `O_CLOEXEC`, so descriptors never leak into the programs an agent runs.)

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Open read-write, creating it (mode 0600) if absent, never truncating.
pub(crate) fn open_or_create(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .at(path)
}

/// Create a file that must not exist yet (`O_EXCL`), read-write.
pub(crate) fn create_new(path: &Path, mode: u32) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .at(path)
}

/// Replace the contents of `path` (mode 0600 if new) with `data` and fsync it.
pub fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .at(path)?;
    f.write_all(data).at(path)?;
    f.sync_all().at(path)
}

/// fsync the directory containing `path`, making a rename or create in it durable.
pub fn fsync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
