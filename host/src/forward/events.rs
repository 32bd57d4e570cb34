//! `GetContainerEvents` of both sides as one stream. The local runtime's
//! stream is reopened (with a growing pause) whenever it ends or cannot be
//! opened, so a restart of the local runtime does not end the caller's stream.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tonic::Status;

use super::local::Local;
use crate::proto::runtime::v1 as cri;

type Events = Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

/// interLink's events and the local runtime's, interleaved as they come.
pub fn merged(ours: Events, local: Local) -> Events {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(follow_local(local, tx));
    let theirs = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok);
    Box::pin(futures::stream::select(ours, theirs))
}

async fn follow_local(local: Local, tx: tokio::sync::mpsc::Sender<cri::ContainerEventResponse>) {
    let mut pause = Duration::from_millis(200);
    loop {
        let opened = local
            .runtime()
            .get_container_events(cri::GetEventsRequest {})
            .await;
        match opened {
            Ok(s) => {
                let mut s = s.into_inner();
                loop {
                    tokio::select! {
                        _ = tx.closed() => return,
                        item = s.next() => match item {
                            Some(Ok(e)) => {
                                pause = Duration::from_millis(200);
                                if tx.send(e).await.is_err() {
                                    return;
                                }
                            }
                            Some(Err(e)) => {
                                tracing::debug!(error = %e, "local runtime's event stream failed");
                                break;
                            }
                            None => break,
                        }
                    }
                }
            }
            Err(e) if e.code() == tonic::Code::Unimplemented => {
                tracing::debug!("the local runtime has no GetContainerEvents");
                tx.closed().await;
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "opening the local runtime's event stream failed")
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}
