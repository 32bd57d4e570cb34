//! `POST /status/watch` (extension `statusWatch`, see [`crate::extensions`]):
//! a stream of the statuses of pods as they change. Ask
//! [`Client::extensions`] first; a server without it answers 404 (or 501).

use bytes::BytesMut;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use reqwest::Method;

use super::{Client, ClientError, encode};
use crate::extensions::STATUS_WATCH_PATH;
use crate::types::PodStatus;

/// Longest status line read.
const MAX_LINE: usize = 16 << 20;

impl Client {
    /// Watch these pods (`[]`: every pod the server's plugin has): first
    /// their current statuses, then one each time one changes. Keep-alive
    /// lines are skipped. No overall timeout: a caller that hears nothing for
    /// three [`crate::extensions::WATCH_KEEPALIVE`] takes the stream as dead.
    /// The stream ends when the server ends it; reconnect then.
    pub async fn status_watch(
        &self,
        pods: &[Pod],
    ) -> Result<BoxStream<'static, Result<PodStatus, ClientError>>, ClientError> {
        let resp = self
            .send(Method::POST, STATUS_WATCH_PATH, Some(encode(&pods)?), None)
            .await?;
        let chunks = resp
            .bytes_stream()
            .map(|r| r.map_err(|e| ClientError::from_reqwest(e, STATUS_WATCH_PATH)));
        Ok(status_lines(chunks).boxed())
    }
}

/// Split a byte stream into newline-delimited `PodStatus` objects.
fn status_lines(
    chunks: impl Stream<Item = Result<bytes::Bytes, ClientError>> + Send + 'static,
) -> impl Stream<Item = Result<PodStatus, ClientError>> + Send + 'static {
    let state = (Box::pin(chunks), BytesMut::new(), false);
    futures::stream::unfold(state, |(mut chunks, mut buf, done)| async move {
        if done {
            return None;
        }
        loop {
            if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line = buf.split_to(nl + 1);
                let line = line[..nl].trim_ascii();
                if line.is_empty() {
                    continue;
                }
                let item = serde_json::from_slice::<PodStatus>(line).map_err(|e| {
                    ClientError::Decode(format!(
                        "{STATUS_WATCH_PATH}: a line is not a PodStatus: {e}"
                    ))
                });
                let stop = item.is_err();
                return Some((item, (chunks, buf, stop)));
            }
            if buf.len() > MAX_LINE {
                let e = ClientError::Decode(format!(
                    "{STATUS_WATCH_PATH}: a line longer than {MAX_LINE} bytes"
                ));
                return Some((Err(e), (chunks, buf, true)));
            }
            match chunks.next().await {
                Some(Ok(c)) => buf.extend_from_slice(&c),
                Some(Err(e)) => return Some((Err(e), (chunks, buf, true))),
                None => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_split_across_chunks_and_keepalives_skipped() {
        let parts = [
            "{\"name\":\"a\",\"UID\":\"u1\",\"namespace\":\"n\",\"containers\":[]}\n\n{\"name\":\"b\",",
            "\"UID\":\"u2\",\"namespace\":\"n\",\"containers\":[]}\n",
            "\n",
        ];
        let chunks = futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok::<_, ClientError>(bytes::Bytes::from_static(p.as_bytes())))
                .collect::<Vec<_>>(),
        );
        let got: Vec<_> = status_lines(chunks).collect().await;
        let uids: Vec<_> = got
            .iter()
            .map(|r| r.as_ref().unwrap().pod_uid.clone())
            .collect();
        assert_eq!(uids, ["u1", "u2"]);
        let bad = futures::stream::iter(vec![Ok(bytes::Bytes::from_static(b"nope\n{}\n"))]);
        let got: Vec<_> = status_lines(bad).collect().await;
        assert_eq!(got.len(), 1, "stops at the first bad line");
        assert!(matches!(got[0], Err(ClientError::Decode(_))));
    }
}
