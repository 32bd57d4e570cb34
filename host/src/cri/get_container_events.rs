//! `GetContainerEvents`: a stream of container state changes.

use futures::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::Stream1;
use crate::proto::runtime::v1 as cri;
use crate::runtime::Runtime;

pub fn stream(rt: &Runtime, _req: cri::GetEventsRequest) -> Stream1<cri::ContainerEventResponse> {
    let rx = rt.events.subscribe();
    Box::pin(BroadcastStream::new(rx).filter_map(|e| async move { e.ok().map(Ok) }))
}
