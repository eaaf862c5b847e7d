//! File writes that never leave a half-written file: the bytes go to a temporary file in the
//! same folder, which is synced and renamed over the target.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// The text of a file that may not exist yet: `None` when it does not.
pub fn read_optional(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to `path` atomically and durably (synced before the rename), keeping the
/// target's permissions when it exists.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write(path, bytes, true)
}

/// Like [`write_atomic`] without waiting for the disk (as git writes work tree files): a crash
/// may lose the new content but never leaves half of it. For caches that are checked when read,
/// and for edits of many records at once.
pub fn write_atomic_nosync(path: &Path, bytes: &[u8]) -> Result<()> {
    write(path, bytes, false)
}

/// Writes several files as [`write_atomic_nosync`] does, creating their folders, on two
/// threads: creating and renaming files is mostly the file system's work, which two threads
/// overlap (a promotion of hundreds of agents writes hundreds of records). Each file is whole or
/// untouched; on an error, files of the other half may already be written, as files before it
/// would be when writing one by one.
pub fn write_many_nosync(files: &[(std::path::PathBuf, &[u8])]) -> Result<()> {
    let write = |(path, bytes): &(std::path::PathBuf, &[u8])| -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        write_atomic_nosync(path, bytes)
    };
    let (first, second) = files.split_at(files.len() / 2);
    std::thread::scope(|s| {
        let helper = s.spawn(|| first.iter().try_for_each(write));
        let mine = second.iter().try_for_each(write);
        let theirs = helper.join().unwrap_or_else(|_| {
            Err(Error::Internal {
                what: "a writer thread failed".into(),
            })
        });
        theirs.and(mine)
    })
}

/// A temporary file in `path`'s folder, to be filled and then persisted over `path`.
pub fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".ledgit-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))
}

fn write(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    if durable {
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(tmp.path(), e))?;
    }
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(tmp.path(), meta.permissions())
            .map_err(|e| Error::io(tmp.path(), e))?;
    }
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yaml");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn writes_many_files_with_their_folders_and_reports_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<(std::path::PathBuf, &[u8])> = (0..7)
            .map(|i| (dir.path().join(format!("agent-{i}/prod.yaml")), &b"v"[..]))
            .collect();
        write_many_nosync(&files).unwrap();
        for (path, bytes) in &files {
            assert_eq!(&std::fs::read(path).unwrap(), bytes);
        }
        // A folder that is a file: that write fails and says where.
        std::fs::write(dir.path().join("blocked"), "").unwrap();
        let bad = [(dir.path().join("blocked/prod.yaml"), &b"v"[..])];
        let err = write_many_nosync(&bad).unwrap_err().to_string();
        assert!(err.contains("blocked"), "{err}");
        assert!(write_many_nosync(&[]).is_ok());
    }
}
