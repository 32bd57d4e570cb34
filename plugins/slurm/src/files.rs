//! Reading what the job script writes under `<pod dir>/containers/` (see
//! [`crate::script`] for the formats).

use std::path::{Path, PathBuf};

use jiff::Timestamp;

/// What the files say about one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerFiles {
    pub started: Option<Timestamp>,
    /// Exit code and finish time.
    pub exit: Option<(i32, Timestamp)>,
}

/// `1795333069.123456` (or with a `,`) as a timestamp.
pub fn parse_epoch(s: &str) -> Option<Timestamp> {
    let s = s.trim().replace(',', ".");
    let (secs, frac) = s.split_once('.').unwrap_or((&s, "0"));
    let secs: i64 = secs.parse().ok()?;
    let frac = frac.get(..9.min(frac.len()))?;
    let nanos: i32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Timestamp::new(secs, nanos).ok()
}

fn read_code_time(p: &Path) -> Option<(i32, Timestamp)> {
    let s = std::fs::read_to_string(p).ok()?;
    let mut it = s.split_whitespace();
    let code = it.next()?.parse().ok()?;
    let t = parse_epoch(it.next()?)?;
    Some((code, t))
}

pub fn containers_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("containers")
}

pub fn log_path(pod_dir: &Path, container: &str) -> PathBuf {
    containers_dir(pod_dir).join(format!("{container}.log"))
}

pub fn read_container(pod_dir: &Path, name: &str) -> ContainerFiles {
    let dir = containers_dir(pod_dir);
    let started = std::fs::read_to_string(dir.join(format!("{name}.started")))
        .ok()
        .and_then(|s| parse_epoch(&s));
    let exit = read_code_time(&dir.join(format!("{name}.exit")));
    ContainerFiles {
        started: started.or(exit.map(|e| e.1)),
        exit,
    }
}

/// The script's last word: its exit code and time (absent while it runs or if it was killed).
pub fn read_job_done(pod_dir: &Path) -> Option<(i32, Timestamp)> {
    read_code_time(&pod_dir.join("job.done"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs() {
        assert_eq!(
            parse_epoch("1795333069.5").unwrap().to_string(),
            "2026-11-22T07:37:49.5Z"
        );
        assert_eq!(
            parse_epoch("1795333069,000001\n")
                .unwrap()
                .subsec_microsecond(),
            1
        );
        assert_eq!(parse_epoch("1795333069").unwrap().as_second(), 1795333069);
        assert!(parse_epoch("x").is_none());
    }

    #[test]
    fn reads_container_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(containers_dir(d.path())).unwrap();
        assert_eq!(read_container(d.path(), "c"), ContainerFiles::default());
        std::fs::write(
            containers_dir(d.path()).join("c.started"),
            "1795333069.100000\n",
        )
        .unwrap();
        let f = read_container(d.path(), "c");
        assert!(f.started.is_some() && f.exit.is_none());
        std::fs::write(
            containers_dir(d.path()).join("c.exit"),
            "3 1795333070.000000\n",
        )
        .unwrap();
        assert_eq!(read_container(d.path(), "c").exit.unwrap().0, 3);
        assert!(read_job_done(d.path()).is_none());
    }
}
