//! `/pinglink` every `PingInterval`, recorded in [`crate::readiness`]. When the
//! API server answers again after failing, it may have restarted with an
//! empty cache: our pods are registered again ([`crate::recovery`]).

use std::sync::Arc;

use crate::runtime::Runtime;

pub async fn run(rt: Arc<Runtime>) {
    let mut down = false;
    loop {
        let res = tokio::time::timeout(rt.cfg.cri.request_timeout, rt.remote.ping()).await;
        let ok = matches!(res, Ok(Ok(())));
        rt.metrics.remote("ping", ok);
        down |= !ok;
        match res {
            Ok(Ok(())) => {
                rt.readiness.answered(crate::now_ns());
                if std::mem::take(&mut down) {
                    tracing::info!("the interLink API server answers again; re-registering pods");
                    tokio::spawn(crate::recovery::reregister(rt.clone()));
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "pinglink failed");
                rt.readiness.failed(&e.to_string());
            }
            Err(_) => rt.readiness.failed("timed out"),
        }
        tokio::time::sleep(rt.cfg.ping_interval).await;
    }
}
