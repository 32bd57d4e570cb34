//! A bearer token read from a file, re-read whenever the file changes (an
//! external refresher rewrites it every few minutes).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use super::ClientError;

/// What identifies one version of the file: cheap to get with one `stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

pub(crate) struct TokenFile {
    path: PathBuf,
    cached: Mutex<Option<(Stamp, String)>>,
}

impl TokenFile {
    pub(crate) fn new(path: PathBuf) -> TokenFile {
        TokenFile {
            path,
            cached: Mutex::new(None),
        }
    }

    /// The current token (trimmed). The file is read again only when its
    /// mtime, length or inode changed since the last read.
    pub(crate) fn token(&self) -> Result<String, ClientError> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| ClientError::Config(format!("token file {}: {e}", self.path.display())))?;
        let stamp = Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            ino: meta.ino(),
        };
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, t)) = cached.as_ref()
            && *s == stamp
        {
            return Ok(t.clone());
        }
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| ClientError::Config(format!("token file {}: {e}", self.path.display())))?;
        let token = text.trim().to_string();
        if token.is_empty() {
            // do not cache an empty read: the refresher may be mid-write
            return Err(ClientError::Config(format!(
                "token file {} is empty",
                self.path.display()
            )));
        }
        *cached = Some((stamp, token.clone()));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rereads_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "first\n").unwrap();
        let tf = TokenFile::new(p.clone());
        assert_eq!(tf.token().unwrap(), "first");
        assert_eq!(tf.token().unwrap(), "first");
        // same length, different content: a rename gives a new inode
        let tmp = dir.path().join("token.tmp");
        std::fs::write(&tmp, "secnd\n").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        assert_eq!(tf.token().unwrap(), "secnd");
        std::fs::write(&p, "a-longer-third\n").unwrap();
        assert_eq!(tf.token().unwrap(), "a-longer-third");
        std::fs::write(&p, "").unwrap();
        assert!(matches!(tf.token(), Err(ClientError::Config(_))));
        std::fs::remove_file(&p).unwrap();
        assert!(matches!(tf.token(), Err(ClientError::Config(_))));
    }
}
