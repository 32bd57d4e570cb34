//! `Status`, `RuntimeConfig`, `UpdateRuntimeConfig`. `RuntimeReady` is false, with
//! the reason, when `/pinglink` has not answered for `PingTimeout`.

use std::collections::HashMap;

use super::Result;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub fn status(rt: &Runtime, req: cri::StatusRequest) -> Result<cri::StatusResponse> {
    let runtime = match rt.runtime_ready() {
        Ok(()) => cri::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        },
        Err(why) => cri::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: false,
            reason: "InterLinkUnreachable".into(),
            message: why.to_string(),
        },
    };
    let network = cri::RuntimeCondition {
        r#type: "NetworkReady".into(),
        status: true,
        reason: String::new(),
        message: String::new(),
    };
    let mut info = HashMap::new();
    if req.verbose {
        let (s, c, r) = {
            let st = rt.store.read();
            (st.sandboxes.len(), st.containers.len(), st.remotes.len())
        };
        info.insert(
            "config".to_string(),
            serde_json::json!({
                "runtimeHandler": rt.cfg.cri.runtime_handler,
                "interlinkAddress": rt.cfg.interlink_address.clone().unwrap_or_else(|| "embedded".into()),
                "dataRootFolder": rt.cfg.data_root_folder,
                "statusInterval": format!("{:?}", rt.cfg.status_interval),
                "batchWindow": format!("{:?}", rt.cfg.batch_window),
                "sandboxes": s, "containers": c, "remotePods": r,
            })
            .to_string(),
        );
    }
    Ok(cri::StatusResponse {
        status: Some(cri::RuntimeStatus {
            conditions: vec![runtime, network],
        }),
        info,
        // "" is the default handler kubelet asks for; it is the configured one
        runtime_handlers: ["", rt.cfg.cri.runtime_handler.as_str()]
            .into_iter()
            .map(|name| cri::RuntimeHandler {
                name: name.to_string(),
                features: Some(cri::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: false,
                    user_namespaces: false,
                }),
            })
            .collect(),
        features: Some(cri::RuntimeFeatures {
            supplemental_groups_policy: false,
            user_namespaces_host_network: false,
        }),
    })
}

pub fn runtime_config(
    rt: &Runtime,
    _req: cri::RuntimeConfigRequest,
) -> Result<cri::RuntimeConfigResponse> {
    let driver = if rt.cfg.cgroup_driver == "systemd" {
        cri::CgroupDriver::Systemd
    } else {
        cri::CgroupDriver::Cgroupfs
    };
    Ok(cri::RuntimeConfigResponse {
        linux: Some(cri::LinuxRuntimeConfiguration {
            cgroup_driver: driver as i32,
        }),
    })
}

/// kubelet sends the node's pod CIDR: pod IPs of new sandboxes come from it
/// (persisted: kubelet does not send it again after a restart of this runtime).
pub fn update_runtime_config(
    rt: &Runtime,
    req: cri::UpdateRuntimeConfigRequest,
) -> Result<cri::UpdateRuntimeConfigResponse> {
    let cidr = req
        .runtime_config
        .and_then(|c| c.network_config)
        .map(|n| n.pod_cidr)
        .unwrap_or_default();
    if cidr.trim().is_empty() {
        return Ok(cri::UpdateRuntimeConfigResponse {});
    }
    let parsed = crate::network::Cidr::parse(&cidr)
        .map_err(|e| tonic::Status::invalid_argument(format!("network_config.pod_cidr: {e}")))?;
    let changed = rt.store.update(|st, d| {
        if st.node_pod_cidr.as_deref() == Some(cidr.as_str()) {
            return false;
        }
        st.node_pod_cidr = Some(cidr.clone());
        d.network();
        d.durable();
        true
    });
    if changed {
        tracing::info!(pod_cidr = %parsed, "pod CIDR from kubelet");
    }
    Ok(cri::UpdateRuntimeConfigResponse {})
}
