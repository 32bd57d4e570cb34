//! Volume `subPath`s resolved at the moment of use, the way kubelet fixed
//! CVE-2017-1002101.
//!
//! A container can replace any directory of a volume it writes with a symbolic
//! link (`ln -s / /data/escape`). A path string such as `<volume>/escape` handed
//! to a container engine is resolved by the engine when the next container
//! starts, after the swap, so it would bind the host's `/`. Checking for links
//! when the pod is created does not help: init containers run later.
//!
//! So a subPath is never handed over as a path under the volume. Just before a
//! container starts, [`open_beneath`] walks the subPath from the volume root one
//! component at a time with `O_NOFOLLOW` (a link anywhere is refused, `..` cannot
//! be written), and [`bind_fd`] bind-mounts the opened file descriptor
//! (`/proc/self/fd/N`, which names the opened object, not a path) onto a mount
//! point in a directory of the plugin's own that no container can write. The
//! engine is given that mount point.
//!
//! - [`SubPathBind`]: one subPath mount of one container (root, subPath, target).
//! - [`prepare`]: open and bind every subPath of a container (idempotent).
//! - [`unmount_under`]: detach every mount below a directory (pod removal).
//! - [`enter_private_mount_namespace`]: for a helper that binds in a namespace of
//!   its own and then runs the container command (the Slurm job script).

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, mkdirat};
use serde::{Deserialize, Serialize};

/// One subPath mount: `sub_path` beneath the volume directory `root`, bound at
/// `target` (a path in the plugin's own directory, never inside a volume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubPathBind {
    pub root: PathBuf,
    pub sub_path: String,
    pub target: PathBuf,
    /// Create missing directories of the subPath (writable volumes, as kubelet does).
    #[serde(default)]
    pub create: bool,
}

/// Why a subPath cannot be used. The container must not start.
#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    #[error("subPath {sub:?} is not a relative path inside the volume")]
    Invalid { sub: String },
    #[error(
        "subPath {sub:?}: {component:?} is a symbolic link; links are not followed in a subPath"
    )]
    Link { sub: String, component: String },
    #[error("subPath {sub:?} does not exist in the volume")]
    Missing { sub: String },
    #[error("subPath {sub:?}: {component:?} is not a directory")]
    NotDirectory { sub: String, component: String },
    #[error("subPath {sub:?} is neither a regular file nor a directory")]
    BadType { sub: String },
    #[error("subPath {sub:?}: {op}: {err}")]
    Sys {
        sub: String,
        op: &'static str,
        err: Errno,
    },
}

/// The components of a subPath, or why it is not one (`..`, absolute, empty).
pub fn components(sub: &str) -> Result<Vec<&OsStr>, SubPathError> {
    let invalid = || SubPathError::Invalid { sub: sub.into() };
    if sub.is_empty() || sub.as_bytes().contains(&0) {
        return Err(invalid());
    }
    let mut out = Vec::new();
    for c in Path::new(sub).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(invalid()),
        }
    }
    if out.is_empty() {
        return Err(invalid());
    }
    Ok(out)
}

fn is_type(st: &FileStat, t: SFlag) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == t
}

/// Open `sub` beneath `root` without following a link in any component: an
/// `O_PATH` descriptor of a directory or regular file. With `create`, missing
/// directories are made (with the volume root's mode, as kubelet does), each
/// beneath the descriptor of its parent.
pub fn open_beneath(root: &Path, sub: &str, create: bool) -> Result<OwnedFd, SubPathError> {
    let parts = components(sub)?;
    let sys = |op: &'static str| {
        let sub = sub.to_string();
        move |err: Errno| SubPathError::Sys { sub, op, err }
    };
    // the root is the plugin's own directory: an admin's link above it is fine
    let mut dir = openat(
        nix::fcntl::AT_FDCWD,
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("opening the volume"))?;
    let root_mode = fstat(&dir).map_err(sys("stat of the volume"))?.st_mode & 0o7777;
    let last = parts.len() - 1;
    for (i, name) in parts.iter().enumerate() {
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match openat(dir.as_fd(), *name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => {
                match mkdirat(dir.as_fd(), *name, Mode::from_bits_truncate(root_mode)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(sys("creating a directory")(e)),
                }
                openat(dir.as_fd(), *name, flags, Mode::empty())
                    .map_err(sys("opening a created directory"))?
            }
            Err(Errno::ENOENT) => return Err(SubPathError::Missing { sub: sub.into() }),
            Err(e) => return Err(sys("opening")(e)),
        };
        let st = fstat(&fd).map_err(sys("stat"))?;
        let component = || name.to_string_lossy().into_owned();
        if is_type(&st, SFlag::S_IFLNK) {
            return Err(SubPathError::Link {
                sub: sub.into(),
                component: component(),
            });
        }
        if i < last {
            if !is_type(&st, SFlag::S_IFDIR) {
                return Err(SubPathError::NotDirectory {
                    sub: sub.into(),
                    component: component(),
                });
            }
        } else if !is_type(&st, SFlag::S_IFDIR) && !is_type(&st, SFlag::S_IFREG) {
            return Err(SubPathError::BadType { sub: sub.into() });
        }
        dir = fd;
    }
    Ok(dir)
}

/// Whether an opened subPath is a directory.
pub fn is_dir(fd: &OwnedFd) -> bool {
    fstat(fd).is_ok_and(|st| is_type(&st, SFlag::S_IFDIR))
}

/// Bind the object `fd` names onto `target`, replacing whatever was mounted there.
/// The target is made a directory or an empty file to match; its parent must be
/// a directory no container can write.
pub fn bind_fd(fd: &OwnedFd, target: &Path) -> std::io::Result<()> {
    use nix::mount::{MsFlags, mount};
    unmount(target)?;
    let dir = is_dir(fd);
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() == dir && (dir || m.is_file()) => {}
        Ok(m) => {
            if m.is_dir() {
                std::fs::remove_dir(target)?;
            } else {
                std::fs::remove_file(target)?;
            }
            make_target(target, dir)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => make_target(target, dir)?,
        Err(e) => return Err(e),
    }
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    mount(
        Some(source.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(std::io::Error::from)
}

fn make_target(target: &Path, dir: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(p) = target.parent() {
        std::fs::create_dir_all(p)?;
    }
    if dir {
        std::fs::create_dir(target)
    } else {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(target)
            .map(drop)
    }
}

/// Detach a mount at `path`; nothing mounted there (or no such path) is fine.
pub fn unmount(path: &Path) -> std::io::Result<()> {
    use nix::mount::{MntFlags, umount2};
    loop {
        match umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue, // stacked binds: detach them all
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Open and bind every subPath of a container, in order. On error nothing of the
/// failing bind is mounted; earlier ones stay (the caller removes the pod's).
pub fn prepare(binds: &[SubPathBind]) -> Result<(), String> {
    for b in binds {
        let fd = open_beneath(&b.root, &b.sub_path, b.create).map_err(|e| e.to_string())?;
        bind_fd(&fd, &b.target).map_err(|e| {
            format!(
                "subPath {:?}: binding it at {}: {e}",
                b.sub_path,
                b.target.display()
            )
        })?;
    }
    Ok(())
}

/// Mount points at or below `dir` in this mount namespace, deepest first.
fn mounts_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    Ok(out)
}

/// `/proc/self/mountinfo` writes space, tab, newline and `\` as octal escapes.
fn unescape_mountinfo(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

/// Detach every mount at or below `dir` (before a pod's directory is removed, so
/// the removal cannot reach through a bind).
pub fn unmount_under(dir: &Path) -> std::io::Result<()> {
    let dir = match dir.canonicalize() {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for m in mounts_under(&dir)? {
        unmount(&m)?;
    }
    Ok(())
}

/// Move this process into a mount namespace of its own whose mounts do not
/// propagate back: binds made afterwards vanish when its last process ends.
pub fn enter_private_mount_namespace() -> std::io::Result<()> {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, unshare};
    unshare(CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn components_refuse_escapes() {
        assert!(components("a/b").is_ok());
        assert_eq!(components("./a//b/").unwrap().len(), 2);
        for bad in ["", "/etc", "../x", "a/../../b", ".", "a/..", "a\0b"] {
            assert!(
                matches!(components(bad), Err(SubPathError::Invalid { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn links_are_refused_anywhere() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("vol");
        std::fs::create_dir_all(root.join("real/dir")).unwrap();
        std::fs::write(root.join("real/file"), "x").unwrap();
        symlink("/", root.join("escape")).unwrap();
        symlink("real", root.join("inner")).unwrap();
        symlink("/etc/passwd", root.join("real/pw")).unwrap();
        assert!(open_beneath(&root, "real/dir", false).is_ok());
        assert!(!is_dir(&open_beneath(&root, "real/file", false).unwrap()));
        let e = open_beneath(&root, "escape", false).unwrap_err();
        assert!(
            matches!(&e, SubPathError::Link { component, .. } if component == "escape"),
            "{e}"
        );
        // a link in the middle, even one pointing inside the volume
        assert!(matches!(
            open_beneath(&root, "inner/dir", false),
            Err(SubPathError::Link { .. })
        ));
        assert!(matches!(
            open_beneath(&root, "real/pw", true),
            Err(SubPathError::Link { .. })
        ));
        // creating beneath a link is refused too, and creates nothing outside
        assert!(matches!(
            open_beneath(&root, "escape/tmp/created-by-test", true),
            Err(SubPathError::Link { .. })
        ));
        assert!(matches!(
            open_beneath(&root, "real/file/x", false),
            Err(SubPathError::NotDirectory { .. })
        ));
        assert!(matches!(
            open_beneath(&root, "nope", false),
            Err(SubPathError::Missing { .. })
        ));
    }

    #[test]
    fn missing_directories_are_created_with_the_volume_mode() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("vol");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o750)).unwrap();
        let fd = open_beneath(&root, "a/b", true).unwrap();
        assert!(is_dir(&fd));
        let m = std::fs::metadata(root.join("a/b")).unwrap();
        assert!(m.is_dir());
        // the umask may take bits away, never add
        assert_eq!(m.permissions().mode() & 0o7777 & !0o750, 0);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(
            unescape_mountinfo(r"/a\040b\011c\134d"),
            PathBuf::from("/a b\tc\\d")
        );
        assert_eq!(unescape_mountinfo(r"/x\04"), PathBuf::from(r"/x\04"));
    }
}
