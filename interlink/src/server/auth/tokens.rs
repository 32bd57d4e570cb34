//! Static bearer tokens from a file (`TOKEN [NAME]` per line, `#` comments),
//! reloaded when the file changes. Only SHA-256 digests are kept in memory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

struct Loaded {
    stamp: Option<Stamp>,
    /// digest -> caller name
    tokens: HashMap<[u8; 32], String>,
}

pub struct TokensFile {
    path: PathBuf,
    state: Mutex<Loaded>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse(text: &str) -> HashMap<[u8; 32], String> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let token = parts.next().unwrap_or_default();
        let name = parts
            .next()
            .map(str::to_string)
            .unwrap_or_else(|| format!("token#{}", i + 1));
        out.insert(digest(token), name);
    }
    out
}

impl TokensFile {
    /// Load the file now; an unreadable file is an error at start-up.
    pub fn open(path: PathBuf) -> Result<Self, String> {
        let tf = TokensFile {
            path,
            state: Mutex::new(Loaded {
                stamp: None,
                tokens: HashMap::new(),
            }),
        };
        tf.refresh(true)?;
        Ok(tf)
    }

    fn stamp(&self) -> std::io::Result<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&self.path)?;
        Ok(Stamp {
            modified: m.modified().ok(),
            len: m.len(),
            ino: m.ino(),
        })
    }

    /// Re-read the file if it changed. A vanished file revokes every token; a
    /// file that cannot be read keeps the previous set.
    fn refresh(&self, strict: bool) -> Result<(), String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match self.stamp() {
            Ok(stamp) => {
                if st.stamp.as_ref() == Some(&stamp) {
                    return Ok(());
                }
                match std::fs::read_to_string(&self.path) {
                    Ok(text) => {
                        st.tokens = parse(&text);
                        st.stamp = Some(stamp);
                        tracing::info!(file = %self.path.display(), tokens = st.tokens.len(), "tokens file loaded");
                        Ok(())
                    }
                    Err(e) => {
                        let msg = format!("cannot read tokens file {}: {e}", self.path.display());
                        if strict {
                            return Err(msg);
                        }
                        tracing::warn!("{msg}; keeping the previous tokens");
                        Ok(())
                    }
                }
            }
            Err(e) => {
                let msg = format!("tokens file {}: {e}", self.path.display());
                if strict {
                    return Err(msg);
                }
                if st.stamp.is_some() || !st.tokens.is_empty() {
                    tracing::warn!("{msg}; no static token is accepted until it is back");
                }
                st.tokens.clear();
                st.stamp = None;
                Ok(())
            }
        }
    }

    /// The caller's name when `token` is one of the file's tokens.
    pub fn check(&self, token: &str) -> Option<String> {
        let _ = self.refresh(false);
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.tokens.get(&digest(token)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reloads_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens");
        std::fs::write(&p, "# comment\nalpha ci\n\nbeta\n").unwrap();
        let tf = TokensFile::open(p.clone()).unwrap();
        assert_eq!(tf.check("alpha").as_deref(), Some("ci"));
        assert_eq!(tf.check("beta").as_deref(), Some("token#4"));
        assert_eq!(tf.check("gamma"), None);
        std::fs::write(&p, "gamma cri\n").unwrap();
        assert_eq!(tf.check("alpha"), None);
        assert_eq!(tf.check("gamma").as_deref(), Some("cri"));
        std::fs::remove_file(&p).unwrap();
        assert_eq!(tf.check("gamma"), None);
        assert!(TokensFile::open(dir.path().join("absent")).is_err());
    }
}
