//! Lists as the merge of both sides, and the local runtime's last full lists,
//! kept so that while it is unreachable kubelet still sees its pods as they
//! were (a pod missing from a list is a pod kubelet recreates) instead of
//! losing them.

use std::collections::HashSet;

use std::sync::Mutex;

use crate::cri::labels_match;
use crate::proto::runtime::v1 as cri;

/// The local runtime's last unfiltered sandbox and container lists.
#[derive(Default)]
pub struct LocalLists {
    sandboxes: Mutex<Option<Vec<cri::PodSandbox>>>,
    containers: Mutex<Option<Vec<cri::Container>>>,
}

impl LocalLists {
    pub fn keep_sandboxes(&self, v: &[cri::PodSandbox]) {
        *self.sandboxes.lock().unwrap_or_else(|e| e.into_inner()) = Some(v.to_vec());
    }
    pub fn keep_containers(&self, v: &[cri::Container]) {
        *self.containers.lock().unwrap_or_else(|e| e.into_inner()) = Some(v.to_vec());
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
