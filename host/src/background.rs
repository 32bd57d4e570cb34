//! The background tasks of a runtime: the dispatcher (sends and deletes
//! remote pods), the status loop, the usage loop, the ping loop, and the
//! recovery of what a previous run left, the watch of this node's pods, and
//! the return of freed memory after pods went away.

use std::sync::Arc;

use crate::runtime::Runtime;

/// Start every background task.
pub fn start(rt: &Arc<Runtime>) {
    tokio::spawn(crate::dispatch::run(rt.clone()));
    tokio::spawn(crate::status_loop::run(rt.clone()));
    tokio::spawn(crate::usage_loop::run(rt.clone()));
    tokio::spawn(crate::ping_loop::run(rt.clone()));
    tokio::spawn(crate::recovery::recover(rt.clone()));
    tokio::spawn(crate::pod_watch::run(rt.clone()));
    tokio::spawn(crate::memory_return::run(rt.clone()));
}
