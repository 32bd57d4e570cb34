//! `ListContainers` and `StreamContainers`, from memory; ID prefixes accepted.

use super::labels_match;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::store::Container;

pub fn list(rt: &Runtime, f: Option<&cri::ContainerFilter>) -> Vec<cri::Container> {
    let st = rt.store.read();
    let Some(f) = f else {
        return st
            .containers
            .values()
            .map(crate::views::container_summary)
            .collect();
    };
    let sandbox = if f.pod_sandbox_id.is_empty() {
        None
    } else {
        match crate::ids::resolve(&st.sandboxes, &f.pod_sandbox_id) {
            Ok(s) => Some(s.to_string()),
            Err(_) => return vec![],
        }
    };
    let keep = |c: &Container| {
        sandbox.as_ref().is_none_or(|s| &c.sandbox_id == s)
            && f.state.as_ref().is_none_or(|v| v.state == c.state.as_i32())
            && labels_match(&c.config.labels, &f.label_selector)
    };
    if !f.id.is_empty() {
        return match crate::ids::resolve(&st.containers, &f.id) {
            Ok(id) => st
                .containers
                .get(id)
                .filter(|c| keep(c))
                .map(crate::views::container_summary)
                .into_iter()
                .collect(),
            Err(_) => vec![],
        };
    }
    st.containers
        .values()
        .filter(|c| keep(c))
        .map(crate::views::container_summary)
        .collect()
}
