//! `ListPodSandbox` and `StreamPodSandboxes`, from memory; ID prefixes accepted.

use super::labels_match;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub fn list(rt: &Runtime, f: Option<&cri::PodSandboxFilter>) -> Vec<cri::PodSandbox> {
    let st = rt.store.read();
    let one = crate::views::sandbox_summary;
    let Some(f) = f else {
        return st.sandboxes.values().map(one).collect();
    };
    if !f.id.is_empty() {
        // exact ID first, else unique prefix
        return match crate::ids::resolve(&st.sandboxes, &f.id) {
            Ok(id) => st
                .sandboxes
                .get(id)
                .filter(|s| keep(s, f))
                .map(one)
                .into_iter()
                .collect(),
            Err(_) => vec![],
        };
    }
    st.sandboxes
        .values()
        .filter(|s| keep(s, f))
        .map(one)
        .collect()
}

fn keep(s: &crate::store::Sandbox, f: &cri::PodSandboxFilter) -> bool {
    if let Some(v) = &f.state {
        let state = if s.ready { 0 } else { 1 };
        if v.state != state {
            return false;
        }
    }
    labels_match(&s.config.labels, &f.label_selector)
}
