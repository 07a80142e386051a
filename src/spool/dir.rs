//! The spool directory itself (`buffer.spool_dir`): its creation and mode, the `LOCK` that
//! keeps a second gateway out of it, and the helpers every file in it is written with
//! (private modes, exclusive temp files, symlinks never followed, directory fsync).
//!
//! Owns: `LOCK` and the rules for creating files in the directory. Must never: follow a
//! symlink when creating or writing a file, create a file readable by others, chmod a
//! directory that is shared (sticky bit, like `/tmp`), or take the lock for `check-config`.
//!
//! Modes: the directory is created `0700` (with any missing parents) and files `0600`. A
//! directory that already exists with group or other bits is tightened to `0700` (it holds
//! metric data and state that only the gateway reads; a release before this one left it
//! `0755` with `0644` files, which are then no longer reachable by others). A sticky directory
//! is shared by definition and is only warned about, never changed, as is one we may not chmod.
//!
//! Lock: an exclusive `flock` on the directory and on `LOCK` in it, held for the life of the
//! process (the kernel drops them when the process dies, `kill -9` included, so a stale file
//! never blocks a restart); `LOCK` holds the holder's pid, which a second instance names in
//! its refusal. The directory lock needs no file, so a file system that is read-only at start
//! (a disk problem the spool rides out, counting `spool_error`) still gets one; `LOCK` covers
//! NFS, where Linux maps `flock` to a server-side write lock that a directory cannot take.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub const LOCK_FILE: &str = "LOCK";
pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Options for a file in the spool directory: `0600` when created, never through a symlink.
pub fn options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE).custom_flags(libc::O_NOFOLLOW);
    o
}

/// Creates `dir` (and missing parents) `0700`; an existing directory is left as it is.
pub fn create(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    if !std::fs::metadata(dir)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    Ok(())
}

/// What `check-config` proves: the directory exists or can be created, and a file can be
/// created in it. Creates the directory if missing (as start-up would), takes no lock, and
/// leaves nothing else behind. Ok: a warning to print, if any.
pub fn check_usable(dir: &Path) -> Result<Option<String>, String> {
    let shown = dir.display();
    create(dir).map_err(|e| format!("buffer.spool_dir: cannot create {shown:?}: {e}"))?;
    match create_temp(dir, ".statsgate-check") {
        Ok((file, path)) => {
            drop(file);
            let _ = std::fs::remove_file(&path);
        }
        // Start-up accepts it too: a disk problem, not a configuration one (batches stay in
        // memory, counted, until it is writable).
        Err(e) if e.kind() == io::ErrorKind::ReadOnlyFilesystem => {
            return Ok(Some(format!(
                "buffer.spool_dir {shown:?} is on a read-only file system now: nothing can be spooled until it is writable"
            )));
        }
        Err(e) => {
            return Err(format!(
                "buffer.spool_dir: cannot create a file in {shown:?}: {e}"
            ));
        }
    }
    let mode = std::fs::metadata(dir)
        .map_err(|e| format!("buffer.spool_dir: {shown:?}: {e}"))?
        .permissions()
        .mode();
    Ok(loose(mode).then(|| {
        format!(
            "buffer.spool_dir {shown:?} has mode {:04o}: {}",
            mode & 0o7777,
            if mode & 0o1000 != 0 {
                "a shared (sticky) directory; give statsgate a directory of its own"
            } else {
                "statsgate tightens it to 0700 at start"
            }
        )
    }))
}

fn loose(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// Tightens a directory with group or other bits to `0700`, unless it is shared (sticky) or
/// not ours to change: then it warns, since the files themselves are `0600` anyway.
fn tighten(dir: &Path) -> io::Result<()> {
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if !loose(mode) {
        return Ok(());
    }
    let old = mode & 0o7777;
    if mode & 0o1000 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{old:04o}"), "buffer.spool_dir is a shared (sticky) directory; its files are private (0600) but give statsgate a directory of its own");
        return Ok(());
    }
    match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)) {
        Ok(()) => {
            tracing::warn!(dir = %dir.display(), mode = format!("{old:04o}"), "buffer.spool_dir was readable by others: tightened to 0700")
        }
        Err(e) => {
            tracing::warn!(dir = %dir.display(), mode = format!("{old:04o}"), error = %e, "buffer.spool_dir is readable by others and cannot be tightened to 0700")
        }
    }
    Ok(())
}

/// Why the directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("buffer.spool_dir: cannot create {dir:?}: {reason}")]
    Create { dir: PathBuf, reason: io::Error },
    #[error("buffer.spool_dir: cannot lock {path:?}: {reason}")]
    Lock { path: PathBuf, reason: io::Error },
    #[error(
        "buffer.spool_dir: {dir:?} is in use by another statsgate ({holder}, per {path:?}); \
         two instances must not share a spool directory: stop it or give this one its own"
    )]
    InUse {
        dir: PathBuf,
        path: PathBuf,
        holder: String,
    },
}

/// The spool directory, locked for as long as this value lives.
#[derive(Debug)]
pub struct SpoolDir {
    dir: PathBuf,
    _dir_lock: File,
    _lock: Option<File>,
}

impl SpoolDir {
    /// Creates (`0700`) or tightens `dir`, then locks it and writes this pid into `LOCK`.
    pub fn open(dir: &Path) -> Result<SpoolDir, OpenError> {
        let create_error = |reason| OpenError::Create {
            dir: dir.to_path_buf(),
            reason,
        };
        create(dir).map_err(create_error)?;
        tighten(dir).map_err(create_error)?;
        let path = dir.join(LOCK_FILE);
        let lock_error = |reason| OpenError::Lock {
            path: path.clone(),
            reason,
        };
        let in_use = |file: Option<&mut File>| OpenError::InUse {
            dir: dir.to_path_buf(),
            holder: match file {
                Some(f) => holder(f),
                None => File::open(&path)
                    .map_or_else(|_| "pid unknown".to_owned(), |mut f| holder(&mut f)),
            },
            path: path.clone(),
        };
        // The directory itself is locked too: that needs no file, so it also works on a file
        // system that is read-only now (the spool then counts `spool_error` until it is
        // writable, as documented). Where a directory cannot be locked (NFS emulates flock
        // with write locks), `LOCK` alone does it.
        let dir_lock = File::open(dir).map_err(create_error)?;
        let dir_locked = match dir_lock.try_lock() {
            Ok(()) => true,
            Err(TryLockError::WouldBlock) => return Err(in_use(None)),
            Err(TryLockError::Error(_)) => false,
        };
        let opened = options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path);
        let lock = match opened {
            Ok(mut file) => match file.try_lock() {
                Ok(()) => {
                    // Ours now: what it says is a previous holder's, gone (the kernel released
                    // its lock).
                    let pid = format!("{}\n", std::process::id());
                    file.set_len(0)
                        .and_then(|()| {
                            std::os::unix::fs::FileExt::write_all_at(&file, pid.as_bytes(), 0)
                        })
                        .map_err(lock_error)?;
                    Some(file)
                }
                Err(TryLockError::WouldBlock) => return Err(in_use(Some(&mut file))),
                Err(TryLockError::Error(e)) if !dir_locked => return Err(lock_error(e)),
                Err(TryLockError::Error(_)) => None,
            },
            Err(e) if dir_locked && e.kind() == io::ErrorKind::ReadOnlyFilesystem => {
                tracing::warn!(dir = %dir.display(), "buffer.spool_dir is on a read-only file system: locked, but this pid is not recorded in LOCK; batches stay in memory until it is writable");
                None
            }
            Err(e) => return Err(lock_error(e)),
        };
        Ok(SpoolDir {
            dir: dir.to_path_buf(),
            _dir_lock: dir_lock,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// "pid N" from a held `LOCK`. The holder writes its pid just after locking, so an empty file
/// is read again briefly before giving up.
fn holder(file: &mut File) -> String {
    for _ in 0..10 {
        let mut text = String::new();
        if std::io::Seek::rewind(file).is_ok()
            && file.read_to_string(&mut text).is_ok()
            && let Ok(pid) = text.trim().parse::<u32>()
        {
            return format!("pid {pid}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    "pid unknown".to_owned()
}

/// A new temp file `<name>.<pid>.<n>.tmp` in `dir`, created exclusively (`O_CREAT|O_EXCL`:
/// an existing file or symlink of that name is never opened, a fresh name is tried instead).
pub fn create_temp(dir: &Path, name: &str) -> io::Result<(File, PathBuf)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut last = None;
    for _ in 0..16 {
        let n = NEXT.fetch_add(1, Relaxed);
        let path = dir.join(format!("{name}.{}.{n}.tmp", std::process::id()));
        match options().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((f, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temp file name")))
}

/// Removes temp files of `name` (`<name>.tmp` from older releases, `<name>.<pid>.<n>.tmp`)
/// left by a crash; symlinks are removed, never followed. Only under the lock: then no temp
/// file is anyone's work in progress. Returns how many were removed.
pub fn remove_stale_temps(dir: &Path, name: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let prefix = format!("{name}.");
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        let ours = n.starts_with(&prefix) && n.ends_with(".tmp");
        // DirEntry::file_type does not follow symlinks.
        if ours
            && entry.file_type().is_ok_and(|t| !t.is_dir())
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Makes a rename or a new file in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with what `write` writes, atomically: a fresh temp file (`create_temp`),
/// fsync, rename, fsync of the directory. A crash leaves the old file or the new one.
pub fn replace(path: &Path, write: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let (dir, name) = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(d), Some(n)) => (
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            },
            n,
        ),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file path",
            ));
        }
    };
    let (mut file, tmp) = create_temp(dir, name)?;
    let written = write(&mut file)
        .and_then(|()| file.flush())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn creates_the_directory_private_and_tightens_a_loose_one() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        let d = SpoolDir::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
        drop(d);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _d = SpoolDir::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700, "an existing 0755 directory is tightened");
    }

    #[test]
    fn a_sticky_directory_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let _d = SpoolDir::open(root.path()).unwrap();
        assert_eq!(mode(root.path()), 0o1777);
    }

    #[test]
    fn the_second_lock_names_the_first_pid_and_a_released_lock_is_free() {
        let root = tempfile::tempdir().unwrap();
        let first = SpoolDir::open(root.path()).unwrap();
        let text = std::fs::read_to_string(root.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        // flock locks belong to the open file: a second open in this process conflicts too.
        let err = SpoolDir::open(root.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id()))
                && err.contains("buffer.spool_dir"),
            "{err}"
        );
        drop(first);
        SpoolDir::open(root.path()).unwrap();
    }

    #[test]
    fn temp_files_never_follow_a_symlink_and_stale_ones_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("target");
        std::fs::write(&target, b"precious").unwrap();
        let dir = root.path().join("spool");
        create(&dir).unwrap();
        symlink(&target, dir.join("x.tmp")).unwrap();
        // Plant links at the next names this process will try.
        let pid = std::process::id();
        let (f, first) = create_temp(&dir, "probe").unwrap();
        drop(f);
        let n: u64 = first
            .to_str()
            .unwrap()
            .rsplit('.')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        for k in 1..4 {
            symlink(&target, dir.join(format!("x.{pid}.{}.tmp", n + k))).unwrap();
        }
        let path = dir.join("x");
        replace(&path, |f| f.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        std::fs::remove_file(&first).unwrap();
        assert!(remove_stale_temps(&dir, "x") >= 1);
        assert_eq!(remove_stale_temps(&dir, "x"), 0);
        assert!(path.exists(), "the file itself is not a temp");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    }

    #[test]
    fn check_usable_names_the_key_and_the_os_reason() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = check_usable(&file.join("spool")).unwrap_err();
        assert!(
            err.starts_with("buffer.spool_dir: cannot create") && err.contains("Not a directory"),
            "{err}"
        );
        let ok = root.path().join("new");
        assert_eq!(check_usable(&ok), Ok(None));
        assert_eq!(
            std::fs::read_dir(&ok).unwrap().count(),
            0,
            "nothing left behind"
        );
    }
}
