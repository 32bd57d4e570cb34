//! Lists as the merge of both sides, and the local runtime's last full lists,
//! kept so that while it is unreachable kubelet still sees its pods as they
//! were (a pod missing from a list is a pod kubelet recreates) instead of
//! losing them.

use std::collections::HashSet;
use std::path::PathBuf;

use std::sync::Mutex;

use prost::Message;

use crate::cri::labels_match;
use crate::proto::runtime::v1 as cri;

/// The local runtime's last unfiltered sandbox and container lists, also on
/// disk (so that an outage right after our own restart still shows them).
#[derive(Default)]
pub struct LocalLists {
    sandboxes: Mutex<Option<Vec<cri::PodSandbox>>>,
    containers: Mutex<Option<Vec<cri::Container>>>,
    /// Where they are kept (`<DataRootFolder>/local-runtime`); none: memory only.
    dir: Option<PathBuf>,
}

const SANDBOXES: &str = "sandboxes.pb";
const CONTAINERS: &str = "containers.pb";

impl LocalLists {
    /// Lists kept in `dir`, starting from what an earlier run left there.
    pub fn persistent(dir: PathBuf) -> LocalLists {
        let read = |name: &str| std::fs::read(dir.join(name)).ok();
        let sandboxes = read(SANDBOXES)
            .and_then(|b| cri::ListPodSandboxResponse::decode(b.as_slice()).ok())
            .map(|r| r.items);
        let containers = read(CONTAINERS)
            .and_then(|b| cri::ListContainersResponse::decode(b.as_slice()).ok())
            .map(|r| r.containers);
        LocalLists {
            sandboxes: Mutex::new(sandboxes),
            containers: Mutex::new(containers),
            dir: Some(dir),
        }
    }

    fn save(&self, name: &str, body: Vec<u8>) {
        let Some(dir) = &self.dir else { return };
        let r = crate::store::private_dir(dir)
            .and_then(|()| crate::store::write_atomic(&dir.join(name), &body, false));
        if let Err(e) = r {
            tracing::warn!(error = %e, dir = %dir.display(), "keeping the local runtime's list failed");
        }
    }

    pub fn keep_sandboxes(&self, v: &[cri::PodSandbox]) {
        let mut kept = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        if kept.as_deref() == Some(v) {
            return;
        }
        *kept = Some(v.to_vec());
        let body = cri::ListPodSandboxResponse { items: v.to_vec() }.encode_to_vec();
        self.save(SANDBOXES, body);
    }
    pub fn keep_containers(&self, v: &[cri::Container]) {
        let mut kept = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        if kept.as_deref() == Some(v) {
            return;
        }
        *kept = Some(v.to_vec());
        let body = cri::ListContainersResponse {
            containers: v.to_vec(),
        }
        .encode_to_vec();
        self.save(CONTAINERS, body);
    }
    /// The last sandboxes seen, filtered as the local runtime would.
    pub fn sandboxes(&self, f: Option<&cri::PodSandboxFilter>) -> Option<Vec<cri::PodSandbox>> {
        let all = self.sandboxes.lock().unwrap_or_else(|e| e.into_inner());
        Some(
            all.as_ref()?
                .iter()
                .filter(|s| f.is_none_or(|f| sandbox_matches(s, f)))
                .cloned()
                .collect(),
        )
    }
    /// The last containers seen, filtered as the local runtime would.
    pub fn containers(&self, f: Option<&cri::ContainerFilter>) -> Option<Vec<cri::Container>> {
        let all = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        Some(
            all.as_ref()?
                .iter()
                .filter(|c| f.is_none_or(|f| container_matches(c, f)))
                .cloned()
                .collect(),
        )
    }
}

/// Is this filter empty (the whole list)?
pub fn no_sandbox_filter(f: Option<&cri::PodSandboxFilter>) -> bool {
    f.is_none_or(|f| f.id.is_empty() && f.state.is_none() && f.label_selector.is_empty())
}

/// Is this filter empty (the whole list)?
pub fn no_container_filter(f: Option<&cri::ContainerFilter>) -> bool {
    f.is_none_or(|f| {
        f.id.is_empty()
            && f.state.is_none()
            && f.pod_sandbox_id.is_empty()
            && f.label_selector.is_empty()
    })
}

fn sandbox_matches(s: &cri::PodSandbox, f: &cri::PodSandboxFilter) -> bool {
    (f.id.is_empty() || s.id.starts_with(&f.id))
        && f.state.as_ref().is_none_or(|v| v.state == s.state)
        && labels_match(&s.labels, &f.label_selector)
}

fn container_matches(c: &cri::Container, f: &cri::ContainerFilter) -> bool {
    (f.id.is_empty() || c.id.starts_with(&f.id))
        && (f.pod_sandbox_id.is_empty() || c.pod_sandbox_id.starts_with(&f.pod_sandbox_id))
        && f.state.as_ref().is_none_or(|v| v.state == c.state)
        && labels_match(&c.labels, &f.label_selector)
}

/// Images of both sides, each ID once (the local runtime's entry first: it
/// has the real size and digests).
pub fn images(local: Vec<cri::Image>, ours: Vec<cri::Image>) -> Vec<cri::Image> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(local.len() + ours.len());
    for i in local {
        seen.insert(i.id.clone());
        names.extend(i.repo_tags.iter().cloned());
        out.push(i);
    }
    for i in ours {
        // interLink's record of an image the local runtime has too, under another ID
        if seen.contains(&i.id)
            || (!i.repo_tags.is_empty() && i.repo_tags.iter().all(|t| names.contains(t)))
        {
            continue;
        }
        out.push(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn sb(id: &str, state: cri::PodSandboxState, app: &str) -> cri::PodSandbox {
        cri::PodSandbox {
            id: id.into(),
            state: state as i32,
            labels: HashMap::from([("app".to_string(), app.to_string())]),
            ..Default::default()
        }
    }

    #[test]
    fn kept_lists_filter_like_a_runtime() {
        let l = LocalLists::default();
        assert!(l.sandboxes(None).is_none(), "nothing kept yet");
        l.keep_sandboxes(&[
            sb("aa11", cri::PodSandboxState::SandboxReady, "web"),
            sb("bb22", cri::PodSandboxState::SandboxNotready, "db"),
        ]);
        assert_eq!(l.sandboxes(None).unwrap().len(), 2);
        let f = cri::PodSandboxFilter {
            id: "aa".into(),
            ..Default::default()
        };
        assert_eq!(l.sandboxes(Some(&f)).unwrap()[0].id, "aa11");
        let f = cri::PodSandboxFilter {
            state: Some(cri::PodSandboxStateValue {
                state: cri::PodSandboxState::SandboxNotready as i32,
            }),
            ..Default::default()
        };
        assert_eq!(l.sandboxes(Some(&f)).unwrap()[0].id, "bb22");
        let f = cri::PodSandboxFilter {
            label_selector: HashMap::from([("app".to_string(), "web".to_string())]),
            ..Default::default()
        };
        assert_eq!(l.sandboxes(Some(&f)).unwrap().len(), 1);
        assert!(!no_sandbox_filter(Some(&f)));
        assert!(no_sandbox_filter(Some(&cri::PodSandboxFilter::default())));
    }

    #[test]
    fn kept_lists_outlive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let l = LocalLists::persistent(dir.path().join("local-runtime"));
        assert!(l.containers(None).is_none());
        l.keep_sandboxes(&[sb("aa11", cri::PodSandboxState::SandboxReady, "web")]);
        l.keep_containers(&[cri::Container {
            id: "cc33".into(),
            pod_sandbox_id: "aa11".into(),
            ..Default::default()
        }]);
        let again = LocalLists::persistent(dir.path().join("local-runtime"));
        assert_eq!(again.sandboxes(None).unwrap()[0].id, "aa11");
        assert_eq!(again.containers(None).unwrap()[0].id, "cc33");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("local-runtime").join(SANDBOXES))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn images_once() {
        let img = |id: &str, tag: &str| cri::Image {
            id: id.into(),
            repo_tags: vec![tag.into()],
            ..Default::default()
        };
        let m = images(
            vec![img("sha256:a", "busybox:1")],
            vec![
                img("sha256:a", "busybox:1"),
                img("x", "busybox:1"),
                img("y", "remote-only:2"),
            ],
        );
        let ids: Vec<_> = m.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["sha256:a", "y"]);
    }
}
