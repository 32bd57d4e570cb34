//! Forwarding beside a local runtime (`LocalRuntime` in the config): kubelet
//! has one runtime endpoint, this one; pods whose runtime handler is
//! `CRI.RuntimeHandler` are offloaded through interLink as always, every other
//! pod is forwarded to the node's own CRI runtime (containerd, CRI-O).
//!
//! - A new sandbox goes where its handler says ([`route::by_handler`]); every
//!   later call follows its sandbox or container ID ([`route`]: an ID is
//!   interLink's exactly when this runtime's persisted state has it, so routing
//!   survives a restart of either side with nothing more stored).
//! - Lists, stats and the event stream are the merge of both sides. While the
//!   local runtime is unreachable its last full lists stand in for it
//!   ([`merge::LocalLists`]), so kubelet does not take its pods for gone; a
//!   call about one of its pods fails `Unavailable`, naming it; interLink's
//!   pods go on as before.
//! - `Status`: `RuntimeReady` stays true while this process serves (false makes
//!   kubelet stop syncing every pod); each side's readiness is a condition of
//!   its own (`InterlinkReady`, `LocalRuntimeReady`, `LocalNetworkReady`).
//! - Images: kubelet's `PullImage` names no handler, but it pulls after
//!   `RunPodSandbox` and sends the pod's sandbox config: the pull goes to the
//!   side of that pod; a pull for no pod (`crictl pull`) goes to the local
//!   runtime and is recorded for interLink as well.
//! - exec, attach and port-forward of a local pod return the local runtime's
//!   own streaming URL; kubelet connects there directly.

pub mod events;
pub mod local;
pub mod merge;
pub mod route;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::cri::Cri;
use crate::proto::runtime::v1 as cri;
use crate::proto::runtime::v1::image_service_server::ImageService;
use crate::proto::runtime::v1::runtime_service_server::RuntimeService;
use local::Local;
use route::{PullSide, Side};

type Result<T> = std::result::Result<T, Status>;
type Stream1<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send + 'static>>;

/// Both services, routing each call to interLink's side ([`Cri`]) or the local
/// runtime.
#[derive(Clone)]
pub struct Forwarder {
    pub cri: Cri,
    pub local: Local,
    lists: Arc<merge::LocalLists>,
}

impl Forwarder {
    pub fn new(cri: Cri, local: Local) -> Forwarder {
        let lists =
            merge::LocalLists::persistent(cri.rt.cfg.data_root_folder.join("local-runtime"));
        Forwarder {
            cri,
            local,
            lists: Arc::new(lists),
        }
    }

    fn rt(&self) -> &crate::runtime::Runtime {
        &self.cri.rt
    }

    /// Record a forwarded call in the CRI metrics (method `local/<Name>`).
    fn observe<T>(&self, method: &'static str, t0: std::time::Instant, r: &Result<T>) {
        let code = match r {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        self.rt()
            .metrics
            .cri(method, code, t0.elapsed().as_secs_f64());
        if let Err(s) = r {
            tracing::debug!(method, code = ?code, message = s.message(), "forwarded call failed");
        }
    }

    async fn local_sandboxes(&self, filter: Option<cri::PodSandboxFilter>) -> Vec<cri::PodSandbox> {
        let whole = merge::no_sandbox_filter(filter.as_ref());
        let r = self
            .local
            .runtime()
            .list_pod_sandbox(self.local.quick(cri::ListPodSandboxRequest {
                filter: filter.clone(),
            }))
            .await;
        match r {
            Ok(r) => {
                let items = r.into_inner().items;
                if whole {
                    self.lists.keep_sandboxes(&items);
                }
                items
            }
            Err(e) => {
                tracing::warn!(error = %self.local.named(e), "listing the local runtime's sandboxes failed: answering with its last list");
                self.lists.sandboxes(filter.as_ref()).unwrap_or_default()
            }
        }
    }

    async fn local_containers(&self, filter: Option<cri::ContainerFilter>) -> Vec<cri::Container> {
        let whole = merge::no_container_filter(filter.as_ref());
        let r = self
            .local
            .runtime()
            .list_containers(self.local.quick(cri::ListContainersRequest {
                filter: filter.clone(),
            }))
            .await;
        match r {
            Ok(r) => {
                let items = r.into_inner().containers;
                if whole {
                    self.lists.keep_containers(&items);
                }
                items
            }
            Err(e) => {
                tracing::warn!(error = %self.local.named(e), "listing the local runtime's containers failed: answering with its last list");
                self.lists.containers(filter.as_ref()).unwrap_or_default()
            }
        }
    }

    /// Sandboxes of both sides (only one side's when the filter names an ID).
    async fn sandboxes(&self, filter: Option<cri::PodSandboxFilter>) -> Vec<cri::PodSandbox> {
        let ours =
            |f: Option<&cri::PodSandboxFilter>| crate::cri::list_pod_sandbox::list(self.rt(), f);
        if let Some(f) = filter.as_ref().filter(|f| !f.id.is_empty()) {
            return match route::sandbox(self.rt(), &f.id) {
                Side::Interlink => ours(Some(f)),
                Side::Local => self.local_sandboxes(filter).await,
            };
        }
        let mut all = self.local_sandboxes(filter.clone()).await;
        all.extend(ours(filter.as_ref()));
        all
    }

    /// Containers of both sides (one side's when the filter names a container
    /// or a sandbox).
    async fn containers(&self, filter: Option<cri::ContainerFilter>) -> Vec<cri::Container> {
        let ours =
            |f: Option<&cri::ContainerFilter>| crate::cri::list_containers::list(self.rt(), f);
        if let Some(f) = filter.as_ref() {
            match route::named(self.rt(), &f.id, &f.pod_sandbox_id) {
                Some(Side::Interlink) => return ours(Some(f)),
                Some(Side::Local) => return self.local_containers(filter).await,
                None => {}
            }
        }
        let mut all = self.local_containers(filter.clone()).await;
        all.extend(ours(filter.as_ref()));
        all
    }

    async fn container_stats_list(
        &self,
        filter: Option<cri::ContainerStatsFilter>,
    ) -> Vec<cri::ContainerStats> {
        crate::usage_loop::fresh(self.rt()).await;
        let ours =
            |f: Option<&cri::ContainerStatsFilter>| crate::cri::container_stats::list(self.rt(), f);
        let side = filter
            .as_ref()
            .and_then(|f| route::named(self.rt(), &f.id, &f.pod_sandbox_id));
        if side == Some(Side::Interlink) {
            return ours(filter.as_ref());
        }
        let mut all = match self
            .local
            .runtime()
            .list_container_stats(self.local.quick(cri::ListContainerStatsRequest {
                filter: filter.clone(),
            }))
            .await
        {
            Ok(r) => r.into_inner().stats,
            Err(e) => {
                tracing::debug!(error = %self.local.named(e), "the local runtime's container stats are missing");
                Vec::new()
            }
        };
        if side.is_none() {
            all.extend(ours(filter.as_ref()));
        }
        all
    }

    async fn sandbox_stats_list(
        &self,
        filter: Option<cri::PodSandboxStatsFilter>,
    ) -> Vec<cri::PodSandboxStats> {
        crate::usage_loop::fresh(self.rt()).await;
        let ours = |f: Option<&cri::PodSandboxStatsFilter>| {
            crate::cri::pod_sandbox_stats::list(self.rt(), f)
        };
        if let Some(f) = filter.as_ref().filter(|f| !f.id.is_empty())
            && route::sandbox(self.rt(), &f.id) == Side::Interlink
        {
            return ours(Some(f));
        }
        let mut all = match self
            .local
            .runtime()
            .list_pod_sandbox_stats(self.local.quick(cri::ListPodSandboxStatsRequest {
                filter: filter.clone(),
            }))
            .await
        {
            Ok(r) => r.into_inner().stats,
            Err(e) => {
                tracing::debug!(error = %self.local.named(e), "the local runtime's sandbox stats are missing");
                Vec::new()
            }
        };
        if filter.as_ref().is_none_or(|f| f.id.is_empty()) {
            all.extend(ours(filter.as_ref()));
        }
        all
    }

    async fn images(&self, filter: Option<cri::ImageFilter>) -> Vec<cri::Image> {
        let ours = crate::cri::list_images::list(self.rt(), filter.as_ref());
        let local = match self
            .local
            .image()
            .list_images(self.local.quick(cri::ListImagesRequest {
                filter: filter.clone(),
            }))
            .await
        {
            Ok(r) => r.into_inner().images,
            Err(e) => {
                tracing::debug!(error = %self.local.named(e), "the local runtime's images are missing");
                Vec::new()
            }
        };
        merge::images(local, ours)
    }
}

/// Route a call about one sandbox or container: interLink's side through
/// [`Cri`], the local runtime's by forwarding the request as it came.
macro_rules! routed {
    ($self:ident, $r:ident, $svc:ident, $client:ident, $method:ident, $side:expr, $name:literal) => {{
        match $side {
            Side::Interlink => $svc::$method(&$self.cri, $r).await,
            Side::Local => {
                let t0 = std::time::Instant::now();
                let out = $self
                    .local
                    .$client()
                    .$method($self.local.forward($r))
                    .await
                    .map_err(|s| $self.local.named(s));
                $self.observe(concat!("local/", $name), t0, &out);
                out
            }
        }
    }};
}

macro_rules! by_container {
    ($self:ident, $r:ident, $method:ident, $name:literal) => {{
        let side = route::container($self.rt(), &$r.get_ref().container_id);
        routed!($self, $r, RuntimeService, runtime, $method, side, $name)
    }};
}

macro_rules! by_sandbox {
    ($self:ident, $r:ident, $method:ident, $name:literal) => {{
        let side = route::sandbox($self.rt(), &$r.get_ref().pod_sandbox_id);
        routed!($self, $r, RuntimeService, runtime, $method, side, $name)
    }};
}

fn one_shot<T: Send + 'static>(v: T) -> Stream1<T> {
    Box::pin(futures::stream::once(async move { Ok(v) }))
}

fn condition(c: &[cri::RuntimeCondition], t: &str) -> Option<cri::RuntimeCondition> {
    c.iter().find(|c| c.r#type == t).cloned()
}

#[tonic::async_trait]
impl RuntimeService for Forwarder {
    async fn version(
        &self,
        r: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>> {
        RuntimeService::version(&self.cri, r).await
    }
    async fn run_pod_sandbox(
        &self,
        r: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>> {
        let side = route::by_handler(&self.rt().cfg, &r.get_ref().runtime_handler)?;
        routed!(
            self,
            r,
            RuntimeService,
            runtime,
            run_pod_sandbox,
            side,
            "RunPodSandbox"
        )
    }
    async fn stop_pod_sandbox(
        &self,
        r: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>> {
        by_sandbox!(self, r, stop_pod_sandbox, "StopPodSandbox")
    }
    async fn remove_pod_sandbox(
        &self,
        r: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>> {
        by_sandbox!(self, r, remove_pod_sandbox, "RemovePodSandbox")
    }
    async fn pod_sandbox_status(
        &self,
        r: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>> {
        by_sandbox!(self, r, pod_sandbox_status, "PodSandboxStatus")
    }
    async fn list_pod_sandbox(
        &self,
        r: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>> {
        let items = self.sandboxes(r.into_inner().filter).await;
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }
    async fn create_container(
        &self,
        r: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>> {
        by_sandbox!(self, r, create_container, "CreateContainer")
    }
    async fn start_container(
        &self,
        r: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>> {
        by_container!(self, r, start_container, "StartContainer")
    }
    async fn stop_container(
        &self,
        r: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>> {
        by_container!(self, r, stop_container, "StopContainer")
    }
    async fn remove_container(
        &self,
        r: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>> {
        by_container!(self, r, remove_container, "RemoveContainer")
    }
    async fn list_containers(
        &self,
        r: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>> {
        let containers = self.containers(r.into_inner().filter).await;
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }
    async fn container_status(
        &self,
        r: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>> {
        by_container!(self, r, container_status, "ContainerStatus")
    }
    async fn update_container_resources(
        &self,
        r: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>> {
        by_container!(
            self,
            r,
            update_container_resources,
            "UpdateContainerResources"
        )
    }
    async fn reopen_container_log(
        &self,
        r: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>> {
        by_container!(self, r, reopen_container_log, "ReopenContainerLog")
    }
    async fn exec_sync(
        &self,
        r: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>> {
        by_container!(self, r, exec_sync, "ExecSync")
    }
    async fn exec(&self, r: Request<cri::ExecRequest>) -> Result<Response<cri::ExecResponse>> {
        by_container!(self, r, exec, "Exec")
    }
    async fn attach(
        &self,
        r: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>> {
        by_container!(self, r, attach, "Attach")
    }
    async fn port_forward(
        &self,
        r: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>> {
        by_sandbox!(self, r, port_forward, "PortForward")
    }
    async fn container_stats(
        &self,
        r: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>> {
        by_container!(self, r, container_stats, "ContainerStats")
    }
    async fn list_container_stats(
        &self,
        r: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>> {
        let stats = self.container_stats_list(r.into_inner().filter).await;
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }
    async fn pod_sandbox_stats(
        &self,
        r: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>> {
        by_sandbox!(self, r, pod_sandbox_stats, "PodSandboxStats")
    }
    async fn list_pod_sandbox_stats(
        &self,
        r: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>> {
        let stats = self.sandbox_stats_list(r.into_inner().filter).await;
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }
    async fn update_runtime_config(
        &self,
        r: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>> {
        // both sides get the node's pod CIDR; the local runtime's refusal is
        // logged, not returned (it must not fail interLink's pods)
        let copy = self.local.quick(r.get_ref().clone());
        if let Err(e) = self.local.runtime().update_runtime_config(copy).await {
            tracing::warn!(error = %self.local.named(e), "UpdateRuntimeConfig on the local runtime failed");
        }
        RuntimeService::update_runtime_config(&self.cri, r).await
    }
    async fn status(
        &self,
        r: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>> {
        let verbose = r.get_ref().verbose;
        let mut client = self.local.runtime();
        let local = client.status(self.local.quick(cri::StatusRequest { verbose }));
        let (ours, local) = tokio::join!(RuntimeService::status(&self.cri, r), local);
        let mut ours = ours?.into_inner();
        let our_conditions = ours.status.take().map(|s| s.conditions).unwrap_or_default();
        let mut conditions = Vec::new();
        let ready = |t: &str, reason: &str, message: String| cri::RuntimeCondition {
            r#type: t.into(),
            status: reason.is_empty(),
            reason: reason.into(),
            message,
        };
        conditions.push(ready("RuntimeReady", "", String::new()));
        let (local_conditions, local_handlers, local_info) = match local {
            Ok(l) => {
                let l = l.into_inner();
                (
                    l.status.map(|s| s.conditions).unwrap_or_default(),
                    l.runtime_handlers,
                    l.info,
                )
            }
            Err(e) => {
                let why = self.local.named(e).message().to_string();
                (
                    vec![
                        ready("RuntimeReady", "LocalRuntimeUnreachable", why.clone()),
                        ready("NetworkReady", "LocalRuntimeUnreachable", why),
                    ],
                    Vec::new(),
                    HashMap::new(),
                )
            }
        };
        let our_net = condition(&our_conditions, "NetworkReady");
        let local_net = condition(&local_conditions, "NetworkReady");
        // pods of either side can get a network while one side can give it
        let net = [&our_net, &local_net]
            .into_iter()
            .flatten()
            .find(|c| c.status)
            .or(local_net.as_ref())
            .cloned()
            .unwrap_or_else(|| ready("NetworkReady", "", String::new()));
        conditions.push(cri::RuntimeCondition {
            r#type: "NetworkReady".into(),
            ..net
        });
        let rename = |c: Option<cri::RuntimeCondition>, t: &str| {
            c.map(|c| cri::RuntimeCondition {
                r#type: t.into(),
                ..c
            })
        };
        conditions.extend(rename(
            condition(&our_conditions, "RuntimeReady"),
            "InterlinkReady",
        ));
        conditions.extend(rename(
            condition(&local_conditions, "RuntimeReady"),
            "LocalRuntimeReady",
        ));
        conditions.extend(rename(local_net, "LocalNetworkReady"));
        ours.status = Some(cri::RuntimeStatus { conditions });
        // the default handler "" is the local runtime's now
        ours.runtime_handlers.retain(|h| !h.name.is_empty());
        let has_default = local_handlers.iter().any(|h| h.name.is_empty());
        ours.runtime_handlers.extend(local_handlers);
        if !has_default {
            ours.runtime_handlers.push(cri::RuntimeHandler {
                name: String::new(),
                features: Some(cri::RuntimeHandlerFeatures::default()),
            });
        }
        ours.info
            .insert("localRuntime".into(), self.local.endpoint.clone());
        for (k, v) in local_info {
            ours.info.insert(format!("local.{k}"), v);
        }
        Ok(Response::new(ours))
    }
    async fn checkpoint_container(
        &self,
        r: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>> {
        by_container!(self, r, checkpoint_container, "CheckpointContainer")
    }

    type GetContainerEventsStream = Stream1<cri::ContainerEventResponse>;
    async fn get_container_events(
        &self,
        r: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>> {
        let ours = RuntimeService::get_container_events(&self.cri, r)
            .await?
            .into_inner();
        Ok(Response::new(events::merged(ours, self.local.clone())))
    }
    async fn list_metric_descriptors(
        &self,
        r: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>> {
        routed!(
            self,
            r,
            RuntimeService,
            runtime,
            list_metric_descriptors,
            Side::Local,
            "ListMetricDescriptors"
        )
    }
    async fn list_pod_sandbox_metrics(
        &self,
        r: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>> {
        let copy = self.local.quick(*r.get_ref());
        let mut out = RuntimeService::list_pod_sandbox_metrics(&self.cri, r)
            .await?
            .into_inner();
        match self.local.runtime().list_pod_sandbox_metrics(copy).await {
            Ok(l) => out.pod_metrics.extend(l.into_inner().pod_metrics),
            Err(e) => {
                tracing::debug!(error = %self.local.named(e), "the local runtime's pod metrics are missing")
            }
        }
        Ok(Response::new(out))
    }
    async fn runtime_config(
        &self,
        r: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>> {
        // the cgroup driver kubelet must use is the one of the runtime that
        // makes cgroups on this node: the local one's answer, as it is
        let copy = self.local.quick(*r.get_ref());
        match self.local.runtime().runtime_config(copy).await {
            Ok(l) => Ok(l),
            // containerd < 2.0 has no RuntimeConfig: kubelet then keeps its own
            // cgroupDriver (set to match containerd's); answering our
            // CgroupDriver instead could tell it the wrong one
            Err(e) if e.code() == tonic::Code::Unimplemented => {
                tracing::debug!(
                    "RuntimeConfig: the local runtime has none; kubelet keeps its own cgroupDriver"
                );
                Err(e)
            }
            Err(e) => {
                tracing::warn!(error = %self.local.named(e), "RuntimeConfig: the local runtime did not answer; giving CgroupDriver from the config");
                RuntimeService::runtime_config(&self.cri, r).await
            }
        }
    }

    type StreamPodSandboxesStream = Stream1<cri::StreamPodSandboxesResponse>;
    async fn stream_pod_sandboxes(
        &self,
        r: Request<cri::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>> {
        let pod_sandboxes = self.sandboxes(r.into_inner().filter).await;
        Ok(Response::new(one_shot(cri::StreamPodSandboxesResponse {
            pod_sandboxes,
        })))
    }
    type StreamContainersStream = Stream1<cri::StreamContainersResponse>;
    async fn stream_containers(
        &self,
        r: Request<cri::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>> {
        let containers = self.containers(r.into_inner().filter).await;
        Ok(Response::new(one_shot(cri::StreamContainersResponse {
            containers,
        })))
    }
    type StreamContainerStatsStream = Stream1<cri::StreamContainerStatsResponse>;
    async fn stream_container_stats(
        &self,
        r: Request<cri::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>> {
        let container_stats = self.container_stats_list(r.into_inner().filter).await;
        Ok(Response::new(one_shot(cri::StreamContainerStatsResponse {
            container_stats,
        })))
    }
    type StreamPodSandboxStatsStream = Stream1<cri::StreamPodSandboxStatsResponse>;
    async fn stream_pod_sandbox_stats(
        &self,
        r: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>> {
        let pod_sandbox_stats = self.sandbox_stats_list(r.into_inner().filter).await;
        Ok(Response::new(one_shot(
            cri::StreamPodSandboxStatsResponse { pod_sandbox_stats },
        )))
    }
    type StreamPodSandboxMetricsStream = Stream1<cri::StreamPodSandboxMetricsResponse>;
    async fn stream_pod_sandbox_metrics(
        &self,
        _r: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>> {
        let m = self
            .list_pod_sandbox_metrics(Request::new(cri::ListPodSandboxMetricsRequest {}))
            .await?
            .into_inner();
        Ok(Response::new(one_shot(
            cri::StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics: m.pod_metrics,
            },
        )))
    }
    async fn update_pod_sandbox_resources(
        &self,
        r: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<cri::UpdatePodSandboxResourcesResponse>> {
        by_sandbox!(
            self,
            r,
            update_pod_sandbox_resources,
            "UpdatePodSandboxResources"
        )
    }
}

#[tonic::async_trait]
impl ImageService for Forwarder {
    async fn list_images(
        &self,
        r: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>> {
        let images = self.images(r.into_inner().filter).await;
        Ok(Response::new(cri::ListImagesResponse { images }))
    }
    async fn image_status(
        &self,
        r: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>> {
        // the local runtime's answer when it has the image, else interLink's record
        let copy = self.local.quick(r.get_ref().clone());
        match self.local.image().image_status(copy).await {
            Ok(l) if l.get_ref().image.is_some() => Ok(l),
            Ok(_) => ImageService::image_status(&self.cri, r).await,
            Err(e) => {
                tracing::debug!(error = %self.local.named(e), "ImageStatus: the local runtime did not answer");
                ImageService::image_status(&self.cri, r).await
            }
        }
    }
    async fn pull_image(
        &self,
        r: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>> {
        let handler = r
            .get_ref()
            .image
            .as_ref()
            .map(|i| i.runtime_handler.clone())
            .unwrap_or_default();
        let uid = r
            .get_ref()
            .sandbox_config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.uid.clone());
        match route::pull(self.rt(), &handler, uid.as_deref()) {
            PullSide::Interlink => ImageService::pull_image(&self.cri, r).await,
            PullSide::Local => routed!(
                self,
                r,
                ImageService,
                image,
                pull_image,
                Side::Local,
                "PullImage"
            ),
            PullSide::Both => {
                let record = Request::new(r.get_ref().clone());
                let out = routed!(
                    self,
                    r,
                    ImageService,
                    image,
                    pull_image,
                    Side::Local,
                    "PullImage"
                )?;
                if let Err(e) = ImageService::pull_image(&self.cri, record).await {
                    tracing::warn!(error = %e, "recording a pulled image for interLink failed");
                }
                Ok(out)
            }
        }
    }
    async fn remove_image(
        &self,
        r: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>> {
        let copy = Request::new(r.get_ref().clone());
        let ours = ImageService::remove_image(&self.cri, copy).await;
        let local = routed!(
            self,
            r,
            ImageService,
            image,
            remove_image,
            Side::Local,
            "RemoveImage"
        );
        match (ours, local) {
            (_, Ok(l)) => Ok(l),
            (Ok(o), Err(e)) if e.code() == tonic::Code::NotFound => Ok(o),
            (_, Err(e)) => Err(e),
        }
    }
    async fn image_fs_info(
        &self,
        r: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>> {
        // images take the local runtime's disk; interLink's are elsewhere
        let copy = self.local.quick(*r.get_ref());
        match self.local.image().image_fs_info(copy).await {
            Ok(l) => Ok(l),
            Err(e) => {
                tracing::debug!(error = %self.local.named(e), "ImageFsInfo: the local runtime did not answer");
                ImageService::image_fs_info(&self.cri, r).await
            }
        }
    }
    type StreamImagesStream = Stream1<cri::StreamImagesResponse>;
    async fn stream_images(
        &self,
        r: Request<cri::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>> {
        let images = self.images(r.into_inner().filter).await;
        Ok(Response::new(one_shot(cri::StreamImagesResponse {
            images,
        })))
    }
}
