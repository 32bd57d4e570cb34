//! The CRI gRPC surface: `runtime.v1.RuntimeService` and `runtime.v1.ImageService`.
//! Every RPC lives in the module named after it (`StartContainer` ->
//! [`start_container`]); this file only routes calls there, with a tracing span,
//! metrics and the error mapping per call.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::ids::{self, Lookup};
use crate::proto::runtime::v1 as cri;
use crate::proto::runtime::v1::image_service_server::ImageService;
use crate::proto::runtime::v1::runtime_service_server::RuntimeService;
use crate::runtime::Runtime;

pub mod attach;
pub mod container_stats;
pub mod container_status;
pub mod create_container;
pub mod exec;
pub mod exec_sync;
pub mod get_container_events;
pub mod image_fs_info;
pub mod image_status;
pub mod list_containers;
pub mod list_images;
pub mod list_pod_sandbox;
pub mod list_wire;
pub mod pod_sandbox_stats;
pub mod pod_sandbox_status;
pub mod port_forward;
pub mod pull_image;
pub mod remove_container;
pub mod remove_image;
pub mod remove_pod_sandbox;
pub mod reopen_container_log;
pub mod run_pod_sandbox;
pub mod start_container;
pub mod status;
pub mod stop_container;
pub mod stop_pod_sandbox;
pub mod update_resources;
pub mod validate;
pub mod version;

/// The gRPC services over one [`Runtime`].
#[derive(Clone)]
pub struct Cri {
    pub rt: Arc<Runtime>,
}

pub type Result<T> = std::result::Result<T, Status>;
type Stream1<T> = Pin<Box<dyn Stream<Item = Result<T>> + Send + 'static>>;

/// Resolve a container ID or unique prefix.
pub fn resolve_container(rt: &Runtime, id: &str) -> Result<String> {
    let st = rt.store.read();
    lookup(ids::resolve(&st.containers, id), "container", id)
}

/// Resolve a sandbox ID or unique prefix.
pub fn resolve_sandbox(rt: &Runtime, id: &str) -> Result<String> {
    let st = rt.store.read();
    lookup(ids::resolve(&st.sandboxes, id), "pod sandbox", id)
}

pub fn lookup(r: std::result::Result<&str, Lookup>, what: &str, id: &str) -> Result<String> {
    match r {
        Ok(k) => Ok(k.to_string()),
        Err(Lookup::NotFound) if id.is_empty() => Err(Status::invalid_argument(format!(
            "{what} ID must not be empty"
        ))),
        Err(Lookup::NotFound) => Err(Status::not_found(format!("{what} {id:?} not found"))),
        Err(Lookup::Ambiguous(n)) => Err(Status::invalid_argument(format!(
            "{what} ID prefix {id:?} matches {n} IDs"
        ))),
    }
}

/// Label selector: every key/value must be present.
pub fn labels_match(
    labels: &std::collections::HashMap<String, String>,
    sel: &std::collections::HashMap<String, String>,
) -> bool {
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

async fn timed<T>(
    rt: &Runtime,
    method: &'static str,
    f: impl Future<Output = Result<T>>,
) -> Result<Response<T>> {
    let t0 = Instant::now();
    let span = tracing::debug_span!(
        "cri",
        method,
        otel.name = method,
        otel.kind = "server",
        rpc.grpc.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
    );
    let r = tracing::Instrument::instrument(f, span.clone()).await;
    let code = match &r {
        Ok(_) => tonic::Code::Ok,
        Err(s) => s.code(),
    };
    span.record("rpc.grpc.status_code", code as i32);
    if let Err(s) = &r {
        interlink::telemetry::fail(&span, &format!("{code:?}: {}", s.message()));
    }
    rt.metrics.cri(method, code, t0.elapsed().as_secs_f64());
    match &r {
        Err(s) if code == tonic::Code::Internal || code == tonic::Code::Unavailable => {
            tracing::error!(method, code = ?code, message = s.message(), "CRI call failed")
        }
        Err(s) => tracing::debug!(method, code = ?code, message = s.message(), "CRI call refused"),
        Ok(_) => tracing::trace!(method, "CRI call ok"),
    }
    r.map(Response::new)
}

fn one_shot<T: Send + 'static>(v: T) -> Stream1<T> {
    Box::pin(futures::stream::once(async move { Ok(v) }))
}

#[tonic::async_trait]
impl RuntimeService for Cri {
    async fn version(
        &self,
        r: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>> {
        timed(&self.rt, "Version", async {
            version::version(&self.rt, r.into_inner())
        })
        .await
    }
    async fn run_pod_sandbox(
        &self,
        r: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>> {
        timed(&self.rt, "RunPodSandbox", async {
            run_pod_sandbox::run_pod_sandbox(&self.rt, r.into_inner())
        })
        .await
    }
    async fn stop_pod_sandbox(
        &self,
        r: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>> {
        timed(
            &self.rt,
            "StopPodSandbox",
            stop_pod_sandbox::stop_pod_sandbox(&self.rt, r.into_inner()),
        )
        .await
    }
    async fn remove_pod_sandbox(
        &self,
        r: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>> {
        timed(
            &self.rt,
            "RemovePodSandbox",
            remove_pod_sandbox::remove_pod_sandbox(&self.rt, r.into_inner()),
        )
        .await
    }
    async fn pod_sandbox_status(
        &self,
        r: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>> {
        timed(&self.rt, "PodSandboxStatus", async {
            pod_sandbox_status::pod_sandbox_status(&self.rt, r.into_inner())
        })
        .await
    }
    async fn list_pod_sandbox(
        &self,
        r: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>> {
        timed(&self.rt, "ListPodSandbox", async {
            Ok(cri::ListPodSandboxResponse {
                items: list_pod_sandbox::list(&self.rt, r.into_inner().filter.as_ref()),
            })
        })
        .await
    }
    async fn create_container(
        &self,
        r: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>> {
        timed(&self.rt, "CreateContainer", async {
            create_container::create_container(&self.rt, r.into_inner())
        })
        .await
    }
    async fn start_container(
        &self,
        r: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>> {
        timed(&self.rt, "StartContainer", async {
            start_container::start_container(&self.rt, r.into_inner())
        })
        .await
    }
    async fn stop_container(
        &self,
        r: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>> {
        timed(
            &self.rt,
            "StopContainer",
            stop_container::stop_container(&self.rt, r.into_inner()),
        )
        .await
    }
    async fn remove_container(
        &self,
        r: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>> {
        timed(
            &self.rt,
            "RemoveContainer",
            remove_container::remove_container(&self.rt, r.into_inner()),
        )
        .await
    }
    async fn list_containers(
        &self,
        r: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>> {
        timed(&self.rt, "ListContainers", async {
            Ok(cri::ListContainersResponse {
                containers: list_containers::list(&self.rt, r.into_inner().filter.as_ref()),
            })
        })
        .await
    }
    async fn container_status(
        &self,
        r: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>> {
        timed(&self.rt, "ContainerStatus", async {
            container_status::container_status(&self.rt, r.into_inner())
        })
        .await
    }
    async fn update_container_resources(
        &self,
        r: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>> {
        timed(&self.rt, "UpdateContainerResources", async {
            update_resources::update_container_resources(&self.rt, r.into_inner())
        })
        .await
    }
    async fn reopen_container_log(
        &self,
        r: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>> {
        timed(&self.rt, "ReopenContainerLog", async {
            reopen_container_log::reopen_container_log(&self.rt, r.into_inner())
        })
        .await
    }
    async fn exec_sync(
        &self,
        r: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>> {
        timed(&self.rt, "ExecSync", async {
            exec_sync::exec_sync(&self.rt, r.into_inner()).await
        })
        .await
    }
    async fn exec(&self, r: Request<cri::ExecRequest>) -> Result<Response<cri::ExecResponse>> {
        timed(&self.rt, "Exec", async {
            exec::exec(&self.rt, r.into_inner()).await
        })
        .await
    }
    async fn attach(
        &self,
        r: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>> {
        timed(&self.rt, "Attach", async {
            attach::attach(&self.rt, r.into_inner()).await
        })
        .await
    }
    async fn port_forward(
        &self,
        r: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>> {
        timed(&self.rt, "PortForward", async {
            port_forward::port_forward(&self.rt, r.into_inner()).await
        })
        .await
    }
    async fn container_stats(
        &self,
        r: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>> {
        timed(&self.rt, "ContainerStats", async {
            crate::usage_loop::fresh(&self.rt).await;
            container_stats::container_stats(&self.rt, r.into_inner())
        })
        .await
    }
    async fn list_container_stats(
        &self,
        r: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>> {
        timed(&self.rt, "ListContainerStats", async {
            crate::usage_loop::fresh(&self.rt).await;
            Ok(cri::ListContainerStatsResponse {
                stats: container_stats::list(&self.rt, r.into_inner().filter.as_ref()),
            })
        })
        .await
    }
    async fn pod_sandbox_stats(
        &self,
        r: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>> {
        timed(&self.rt, "PodSandboxStats", async {
            crate::usage_loop::fresh(&self.rt).await;
            pod_sandbox_stats::pod_sandbox_stats(&self.rt, r.into_inner())
        })
        .await
    }
    async fn list_pod_sandbox_stats(
        &self,
        r: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>> {
        timed(&self.rt, "ListPodSandboxStats", async {
            crate::usage_loop::fresh(&self.rt).await;
            Ok(cri::ListPodSandboxStatsResponse {
                stats: pod_sandbox_stats::list(&self.rt, r.into_inner().filter.as_ref()),
            })
        })
        .await
    }
    async fn update_runtime_config(
        &self,
        r: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>> {
        timed(&self.rt, "UpdateRuntimeConfig", async {
            status::update_runtime_config(&self.rt, r.into_inner())
        })
        .await
    }
    async fn status(
        &self,
        r: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>> {
        timed(&self.rt, "Status", async {
            status::status(&self.rt, r.into_inner())
        })
        .await
    }
    async fn checkpoint_container(
        &self,
        r: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>> {
        timed(&self.rt, "CheckpointContainer", async {
            exec::checkpoint_container(&self.rt, r.into_inner())
        })
        .await
    }

    type GetContainerEventsStream = Stream1<cri::ContainerEventResponse>;
    async fn get_container_events(
        &self,
        r: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>> {
        timed(&self.rt, "GetContainerEvents", async {
            Ok(get_container_events::stream(&self.rt, r.into_inner()))
        })
        .await
    }
    async fn list_metric_descriptors(
        &self,
        _r: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>> {
        // critest and kubelet read a descriptor list as the promise of cAdvisor's
        // whole set (blkio, fs, network...), which a remote pod cannot give:
        // Unimplemented makes them skip these metrics; usage reaches them through
        // ContainerStats / PodSandboxStats
        timed(&self.rt, "ListMetricDescriptors", async {
            Err(Status::unimplemented(
                "ListMetricDescriptors: this runtime reports CPU and memory usage through \
                 ContainerStats and PodSandboxStats, not cAdvisor's metric set",
            ))
        })
        .await
    }
    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>> {
        timed(&self.rt, "ListPodSandboxMetrics", async {
            crate::usage_loop::fresh(&self.rt).await;
            Ok(cri::ListPodSandboxMetricsResponse {
                pod_metrics: pod_sandbox_stats::metrics(&self.rt),
            })
        })
        .await
    }
    async fn runtime_config(
        &self,
        r: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>> {
        timed(&self.rt, "RuntimeConfig", async {
            status::runtime_config(&self.rt, r.into_inner())
        })
        .await
    }

    type StreamPodSandboxesStream = Stream1<cri::StreamPodSandboxesResponse>;
    async fn stream_pod_sandboxes(
        &self,
        r: Request<cri::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>> {
        timed(&self.rt, "StreamPodSandboxes", async {
            Ok(one_shot(cri::StreamPodSandboxesResponse {
                pod_sandboxes: list_pod_sandbox::list(&self.rt, r.into_inner().filter.as_ref()),
            }))
        })
        .await
    }
    type StreamContainersStream = Stream1<cri::StreamContainersResponse>;
    async fn stream_containers(
        &self,
        r: Request<cri::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>> {
        timed(&self.rt, "StreamContainers", async {
            Ok(one_shot(cri::StreamContainersResponse {
                containers: list_containers::list(&self.rt, r.into_inner().filter.as_ref()),
            }))
        })
        .await
    }
    type StreamContainerStatsStream = Stream1<cri::StreamContainerStatsResponse>;
    async fn stream_container_stats(
        &self,
        r: Request<cri::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>> {
        timed(&self.rt, "StreamContainerStats", async {
            crate::usage_loop::fresh(&self.rt).await;
            Ok(one_shot(cri::StreamContainerStatsResponse {
                container_stats: container_stats::list(&self.rt, r.into_inner().filter.as_ref()),
            }))
        })
        .await
    }
    type StreamPodSandboxStatsStream = Stream1<cri::StreamPodSandboxStatsResponse>;
    async fn stream_pod_sandbox_stats(
        &self,
        r: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>> {
        timed(&self.rt, "StreamPodSandboxStats", async {
            crate::usage_loop::fresh(&self.rt).await;
            Ok(one_shot(cri::StreamPodSandboxStatsResponse {
                pod_sandbox_stats: pod_sandbox_stats::list(
                    &self.rt,
                    r.into_inner().filter.as_ref(),
                ),
            }))
        })
        .await
    }
    type StreamPodSandboxMetricsStream = Stream1<cri::StreamPodSandboxMetricsResponse>;
    async fn stream_pod_sandbox_metrics(
        &self,
        _r: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>> {
        timed(&self.rt, "StreamPodSandboxMetrics", async {
            crate::usage_loop::fresh(&self.rt).await;
            Ok(one_shot(cri::StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics: pod_sandbox_stats::metrics(&self.rt),
            }))
        })
        .await
    }
    async fn update_pod_sandbox_resources(
        &self,
        r: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<cri::UpdatePodSandboxResourcesResponse>> {
        timed(&self.rt, "UpdatePodSandboxResources", async {
            update_resources::update_pod_sandbox_resources(&self.rt, r.into_inner())
        })
        .await
    }
}

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(
        &self,
        r: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>> {
        timed(&self.rt, "ListImages", async {
            Ok(cri::ListImagesResponse {
                images: list_images::list(&self.rt, r.into_inner().filter.as_ref()),
            })
        })
        .await
    }
    async fn image_status(
        &self,
        r: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>> {
        timed(&self.rt, "ImageStatus", async {
            image_status::image_status(&self.rt, r.into_inner())
        })
        .await
    }
    async fn pull_image(
        &self,
        r: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>> {
        timed(&self.rt, "PullImage", async {
            pull_image::pull_image(&self.rt, r.into_inner())
        })
        .await
    }
    async fn remove_image(
        &self,
        r: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>> {
        timed(&self.rt, "RemoveImage", async {
            remove_image::remove_image(&self.rt, r.into_inner())
        })
        .await
    }
    async fn image_fs_info(
        &self,
        r: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>> {
        timed(&self.rt, "ImageFsInfo", async {
            image_fs_info::image_fs_info(&self.rt, r.into_inner())
        })
        .await
    }
    type StreamImagesStream = Stream1<cri::StreamImagesResponse>;
    async fn stream_images(
        &self,
        r: Request<cri::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>> {
        timed(&self.rt, "StreamImages", async {
            Ok(one_shot(cri::StreamImagesResponse {
                images: list_images::list(&self.rt, r.into_inner().filter.as_ref()),
            }))
        })
        .await
    }
}
