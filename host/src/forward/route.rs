//! Which side serves a call: interLink (this runtime's own state) or the local
//! runtime. Nothing about routing is stored: a sandbox or container is
//! interLink's exactly when this runtime's persisted state has it (an ID or a
//! unique prefix of one), so the answer is the same after a restart of either
//! side; everything else belongs to the local runtime, which answers NotFound
//! for what neither has.

use tonic::Status;

use crate::config::Config;
use crate::ids::{self, Lookup};
use crate::runtime::Runtime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Interlink,
    Local,
}

/// A new sandbox goes where its runtime handler says.
pub fn by_handler(cfg: &Config, handler: &str) -> Result<Side, Status> {
    if handler == cfg.cri.runtime_handler {
        return Ok(Side::Interlink);
    }
    let Some(local) = &cfg.local_runtime else {
        return Ok(Side::Interlink);
    };
    match &local.handlers {
        None => Ok(Side::Local),
        Some(_) if handler.is_empty() => Ok(Side::Local),
        Some(hs) if hs.iter().any(|h| h == handler) => Ok(Side::Local),
        Some(hs) => Err(Status::invalid_argument(format!(
            "runtime handler {handler:?} is not served here: {:?} is offloaded through \
             interLink, and the local runtime takes \"\" and {hs:?}",
            cfg.cri.runtime_handler
        ))),
    }
}

fn owned(r: Result<&str, Lookup>, id: &str) -> Side {
    match r {
        Ok(_) | Err(Lookup::Ambiguous(_)) => Side::Interlink,
        // an empty ID is refused by interLink's side with a clear InvalidArgument
        Err(Lookup::NotFound) if id.is_empty() => Side::Interlink,
        Err(Lookup::NotFound) => Side::Local,
    }
}

/// The side of a sandbox ID (or prefix).
pub fn sandbox(rt: &Runtime, id: &str) -> Side {
    owned(ids::resolve(&rt.store.read().sandboxes, id), id)
}

/// The side of a container ID (or prefix).
pub fn container(rt: &Runtime, id: &str) -> Side {
    owned(ids::resolve(&rt.store.read().containers, id), id)
}

/// The one side a list filter names, by its container ID or else its sandbox
/// ID; `None` when it names neither (both sides are listed).
pub fn named(rt: &Runtime, container_id: &str, sandbox_id: &str) -> Option<Side> {
    if !container_id.is_empty() {
        Some(container(rt, container_id))
    } else if !sandbox_id.is_empty() {
        Some(sandbox(rt, sandbox_id))
    } else {
        None
    }
}

/// The side of an image pull: the pod it is for when kubelet names one (it pulls
/// after `RunPodSandbox`), or the handler the image spec names; with neither
/// (`crictl pull`), the local runtime, and interLink records it too.
pub fn pull(rt: &Runtime, handler: &str, pod_uid: Option<&str>) -> PullSide {
    if !handler.is_empty() {
        return match by_handler(&rt.cfg, handler) {
            Ok(Side::Interlink) => PullSide::Interlink,
            _ => PullSide::Local,
        };
    }
    match pod_uid {
        Some(uid) if !uid.is_empty() => {
            let st = rt.store.read();
            let ours = st
                .sandboxes
                .values()
                .any(|s| s.config.metadata.as_ref().is_some_and(|m| m.uid == uid));
            if ours {
                PullSide::Interlink
            } else {
                PullSide::Local
            }
        }
        _ => PullSide::Both,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullSide {
    Interlink,
    Local,
    Both,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(y: &str) -> Config {
        Config::from_yaml(y, "t").unwrap()
    }

    #[test]
    fn handlers_pick_a_side() {
        let all = cfg("LocalRuntime:\n  Endpoint: /c.sock\n");
        assert_eq!(by_handler(&all, "interlink").unwrap(), Side::Interlink);
        assert_eq!(by_handler(&all, "").unwrap(), Side::Local);
        assert_eq!(by_handler(&all, "runc").unwrap(), Side::Local);
        let listed = cfg("LocalRuntime:\n  Endpoint: /c.sock\n  Handlers: [runc]\n");
        assert_eq!(by_handler(&listed, "").unwrap(), Side::Local);
        assert_eq!(by_handler(&listed, "runc").unwrap(), Side::Local);
        let e = by_handler(&listed, "kata").unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("kata"), "{}", e.message());
        // without a local runtime everything is interLink's
        assert_eq!(by_handler(&cfg(""), "").unwrap(), Side::Interlink);
    }
}
