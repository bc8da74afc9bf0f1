//! The data directory: its layout, its 0700 mode, and the lock file that
//! makes one `sikker serve` (or one offline admin command) its only user.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create data dir {path} (--data-dir / SIKKER_DATA_DIR): {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "no data dir at {path}; start `sikker serve` once or pass --data-dir / SIKKER_DATA_DIR"
    )]
    Missing { path: String },
    #[error("another sikker process is already running on data dir {path}")]
    AlreadyRunning { path: String },
    #[error("cannot lock data dir {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
}

/// The secret key's file name inside the data dir.
pub const SECRET_KEY_FILE: &str = "secret.key";

#[derive(Clone, Debug)]

pub struct DataDir {
    root: PathBuf,
}

/// Held while a process owns the data dir; released on drop or exit.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DataDir {
    /// Opens the directory, creating it with mode 0700 when missing. Returns
    /// a warning when an existing directory is readable by others.
    pub fn create(path: &Path) -> Result<(Self, Option<String>), DataDirError> {
        let err = |source| DataDirError::Create {
            path: path.display().to_string(),
            source,
        };
        let mut warning = None;
        if path.is_dir() {
            let mode = fs::metadata(path).map_err(err)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                warning = Some(format!(
                    "data dir {} has mode {mode:o}; other users may read it (chmod 700 recommended)",
                    path.display()
                ));
            }
        } else {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(err)?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
        Ok((
            Self {
                root: path.to_path_buf(),
            },
            warning,
        ))
    }

    /// Opens an existing directory without creating anything.
    pub fn existing(path: &Path) -> Result<Self, DataDirError> {
        if path.is_dir() {
            Ok(Self {
                root: path.to_path_buf(),
            })
        } else {
            Err(DataDirError::Missing {
                path: path.display().to_string(),
            })
        }
    }

    /// Takes the exclusive lock, or says who holds it.
    pub fn lock(&self) -> Result<DirLock, DataDirError> {
        let p = self.root.join("sikker.lock");
        let lock_err = |source| DataDirError::Lock {
            path: self.root.display().to_string(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(DataDirError::AlreadyRunning {
                path: self.root.display().to_string(),
            }),
            Err(fs::TryLockError::Error(e)) => Err(lock_err(e)),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn db(&self) -> PathBuf {
        self.root.join(crate::store::DB_FILE)
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("admin.sock")
    }
    pub fn secret_key(&self) -> PathBuf {
        self.root.join(SECRET_KEY_FILE)
    }
    pub fn tls_dir(&self) -> PathBuf {
        self.root.join("tls")
    }
    pub fn acme_dir(&self) -> PathBuf {
        self.root.join("acme")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_and_locked_once() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("d");
        let (d, warn) = DataDir::create(&p).unwrap();
        assert!(warn.is_none());
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let l = d.lock().unwrap();
        assert!(matches!(d.lock(), Err(DataDirError::AlreadyRunning { .. })));
        drop(l);
        d.lock().unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(DataDir::create(&p).unwrap().1.is_some());
        assert!(DataDir::existing(&t.path().join("nope")).is_err());
    }
}
