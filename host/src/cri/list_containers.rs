//! `ListContainers` and `StreamContainers`, from memory; ID prefixes accepted.

use super::labels_match;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;
use crate::store::{Container, Inner};

pub fn list(rt: &Runtime, f: Option<&cri::ContainerFilter>) -> Vec<cri::Container> {
    let st = rt.store.read();
    select(&st, f)
        .map(crate::views::container_summary)
        .collect()
}

/// The containers `f` selects, in the order they are listed.
pub(crate) fn select<'a>(
    st: &'a Inner,
    f: Option<&'a cri::ContainerFilter>,
) -> Box<dyn Iterator<Item = &'a Container> + 'a> {
    let Some(f) = f else {
        return Box::new(st.containers.values());
    };
    let sandbox = if f.pod_sandbox_id.is_empty() {
        None
    } else {
        match crate::ids::resolve(&st.sandboxes, &f.pod_sandbox_id) {
            Ok(s) => Some(s.to_string()),
            Err(_) => return Box::new(std::iter::empty()),
        }
    };
    let keep = move |c: &Container| {
        sandbox.as_ref().is_none_or(|s| &c.sandbox_id == s)
            && f.state.as_ref().is_none_or(|v| v.state == c.state.as_i32())
            && labels_match(&c.config.labels, &f.label_selector)
    };
    if !f.id.is_empty() {
        return match crate::ids::resolve(&st.containers, &f.id) {
            Ok(id) => Box::new(st.containers.get(id).filter(move |c| keep(c)).into_iter()),
            Err(_) => Box::new(std::iter::empty()),
        };
    }
    Box::new(st.containers.values().filter(move |c| keep(c)))
}
