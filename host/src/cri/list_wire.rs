//! `ListContainers` answered from each container's encoded list entry.
//!
//! kubelet lists every container each second (PLEG); at 10,000 containers the
//! answer is ~5 MB of protobuf, and building it as `cri::Container` values
//! (label and annotation maps cloned under the store's read lock) then
//! encoding them cost more than moving the bytes. Here each container's entry
//! (field 1 of `ListContainersResponse`: tag, length, `Container`) is encoded
//! once and kept until the container changes; an answer is those entries one
//! after the other, which is byte for byte what encoding the built response
//! gives (a repeated message field is its elements' records in order).
//!
//! A list entry depends on the container's state and on what is fixed at
//! `CreateContainer` (ID, sandbox, metadata, image, labels, annotations,
//! creation time); an entry is reused only while state and creation time are
//! those it was encoded with. Entries of removed containers are dropped.
//!
//! The filters are [`super::list_containers::select`]'s, so this answers what
//! [`super::list_containers::list`] would. Used by the CRI server when every
//! container is ours (not beside a local runtime, whose list is merged in).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes};
use tonic::codec::{BufferSettings, Codec, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::Cri;
use crate::proto::runtime::v1 as cri;
use crate::proto::runtime::v1::runtime_service_server::RuntimeServiceServer;
use crate::store::{Container, Inner};

const PATH: &str = "/runtime.v1.RuntimeService/ListContainers";

struct Entry {
    state: i32,
    created_at: i64,
    /// Tag, length and the encoded `cri::Container`.
    wire: Bytes,
}

/// Encoded list entries by container ID (a fast hash: every entry is looked
/// up on each full list; the IDs are this runtime's own).
#[derive(Default)]
pub struct WireCache {
    entries: Mutex<HashMap<String, Entry, foldhash::fast::RandomState>>,
}

/// An encoded `ListContainersResponse`, as its entries.
pub struct WireList(Vec<Bytes>);

impl WireList {
    /// The whole message (tests, diagnostics).
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.concat()
    }
}

fn entry_of(c: &Container) -> Entry {
    let summary = crate::views::container_summary(c);
    let len = prost::Message::encoded_len(&summary);
    let mut buf = Vec::with_capacity(len + 6);
    prost::encoding::message::encode(1, &summary, &mut buf);
    Entry {
        state: c.state.as_i32(),
        created_at: c.created_at,
        wire: buf.into(),
    }
}

impl WireCache {
    /// The encoded answer to `ListContainers(filter)`.
    pub fn list(&self, st: &Inner, f: Option<&cri::ContainerFilter>) -> WireList {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for c in super::list_containers::select(st, f) {
            let fresh = |e: &Entry| e.state == c.state.as_i32() && e.created_at == c.created_at;
            match entries.get_mut(&c.id) {
                Some(e) if fresh(e) => out.push(e.wire.clone()),
                Some(e) => {
                    *e = entry_of(c);
                    out.push(e.wire.clone());
                }
                None => {
                    let e = entry_of(c);
                    out.push(e.wire.clone());
                    entries.insert(c.id.clone(), e);
                }
            }
        }
        if entries.len() > st.containers.len() {
            entries.retain(|id, _| st.containers.contains_key(id));
        }
        WireList(out)
    }
}

/// Encodes a [`WireList`] as it is; decodes the request with prost.
struct WireCodec;

struct WireEncoder;

impl Encoder for WireEncoder {
    type Item = WireList;
    type Error = Status;
    fn encode(&mut self, item: WireList, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.0.iter().map(Bytes::len).sum());
        for b in &item.0 {
            dst.put_slice(b);
        }
        Ok(())
    }
}

impl Codec for WireCodec {
    type Encode = WireList;
    type Decode = cri::ListContainersRequest;
    type Encoder = WireEncoder;
    type Decoder = tonic_prost::ProstDecoder<cri::ListContainersRequest>;
    fn encoder(&mut self) -> WireEncoder {
        WireEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(BufferSettings::default())
    }
}

struct ListSvc {
    cri: Arc<Cri>,
    cache: Arc<WireCache>,
}

impl UnaryService<cri::ListContainersRequest> for ListSvc {
    type Response = WireList;
    type Future = BoxFuture<Response<WireList>, Status>;
    fn call(&mut self, r: Request<cri::ListContainersRequest>) -> Self::Future {
        let (cri, cache) = (self.cri.clone(), self.cache.clone());
        Box::pin(async move {
            super::timed(&cri.rt, "ListContainers", async {
                let st = cri.rt.store.read();
                Ok(cache.list(&st, r.into_inner().filter.as_ref()))
            })
            .await
        })
    }
}

/// `RuntimeService` with `ListContainers` answered from a [`WireCache`]; every
/// other call goes to the generated server.
#[derive(Clone)]
pub struct RuntimeRoutes {
    inner: RuntimeServiceServer<Cri>,
    cri: Arc<Cri>,
    cache: Arc<WireCache>,
    max_decoding: usize,
    max_encoding: usize,
}

impl RuntimeRoutes {
    pub fn new(cri: Cri, max_decoding: usize, max_encoding: usize) -> RuntimeRoutes {
        let cri = Arc::new(cri);
        RuntimeRoutes {
            inner: RuntimeServiceServer::from_arc(cri.clone())
                .max_decoding_message_size(max_decoding)
                .max_encoding_message_size(max_encoding),
            cri,
            cache: Arc::default(),
            max_decoding,
            max_encoding,
        }
    }
}

impl NamedService for RuntimeRoutes {
    const NAME: &'static str = <RuntimeServiceServer<Cri> as NamedService>::NAME;
}

impl<B> Service<http::Request<B>> for RuntimeRoutes
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != PATH {
            return self.inner.call(req);
        }
        let svc = ListSvc {
            cri: self.cri.clone(),
            cache: self.cache.clone(),
        };
        let (dec, enc) = (self.max_decoding, self.max_encoding);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(WireCodec)
                .apply_max_message_size_config(Some(dec), Some(enc));
            Ok(grpc.unary(svc, req).await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::states::ContainerState;
    use prost::Message;

    fn container(i: usize, sandbox: &str) -> Container {
        Container {
            id: format!("{i:064x}"),
            sandbox_id: sandbox.into(),
            config: cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: format!("c{i}"),
                    attempt: 1,
                }),
                image: Some(cri::ImageSpec {
                    image: "busybox".into(),
                    ..Default::default()
                }),
                labels: [("app".to_string(), format!("a{}", i % 2))].into(),
                annotations: [("k".to_string(), "v".to_string())].into(),
                ..Default::default()
            },
            kind: crate::store::Kind::Regular,
            image_ref: "docker.io/library/busybox:latest".into(),
            image_id: "sha256:00".into(),
            created_at: i as i64,
            started_at: 0,
            finished_at: 0,
            state: ContainerState::Created,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            remote_uid: None,
            spec: None,
            log_file: None,
            log_offset: 0,
            log_done: false,
            stop_requested: false,
            remote_seen: 0,
            rev: 0,
            admitted: None,
        }
    }

    fn built(st: &Inner, f: Option<&cri::ContainerFilter>) -> Vec<u8> {
        cri::ListContainersResponse {
            containers: crate::cri::list_containers::select(st, f)
                .map(crate::views::container_summary)
                .collect(),
        }
        .encode_to_vec()
    }

    #[test]
    fn answers_what_encoding_the_built_list_gives() {
        let mut st = Inner::default();
        for i in 0..20 {
            let c = container(i, if i < 10 { "s1" } else { "s2" });
            st.containers.insert(c.id.clone(), c);
        }
        let cache = WireCache::default();
        let filters = [
            None,
            Some(cri::ContainerFilter {
                id: format!("{:064x}", 3)[..20].to_string(),
                ..Default::default()
            }),
            Some(cri::ContainerFilter {
                label_selector: [("app".to_string(), "a1".to_string())].into(),
                ..Default::default()
            }),
            Some(cri::ContainerFilter {
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        ];
        let check = |st: &Inner| {
            for f in &filters {
                assert_eq!(cache.list(st, f.as_ref()).to_vec(), built(st, f.as_ref()));
            }
        };
        check(&st);
        // a second answer comes from the entries kept, and is the same
        check(&st);
        // a change of state is seen; a removed container is gone from the answer and the cache
        let id = format!("{:064x}", 3);
        st.containers.get_mut(&id).unwrap().state = ContainerState::Running;
        check(&st);
        st.containers.remove(&format!("{:064x}", 4));
        check(&st);
        assert_eq!(cache.entries.lock().unwrap().len(), 19);
        let decoded =
            cri::ListContainersResponse::decode(&cache.list(&st, None).to_vec()[..]).unwrap();
        assert_eq!(decoded.containers.len(), 19);
    }
}
