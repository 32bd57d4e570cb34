//! Which extensions of the upstream contract the API server has (see
//! [`crate::extensions`]): asked once, cached, asked again after [`REASK`] or
//! when [`Client::forget_extensions`] says the server may have changed (a
//! reconnect). An upstream server answers 404 there: no extensions.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use reqwest::Method;

use super::{Client, ClientError, encode};
use crate::extensions::{Extensions, PATH, PodStats, STATS_PATH};

/// How long an answer is trusted.
pub const REASK: Duration = Duration::from_secs(300);

impl Client {
    /// The server's extensions, from the cache while it is fresh. Only an
    /// error that says nothing about the server (unreachable, timeout, 5xx,
    /// 401/403) is an error, and is not cached.
    pub async fn extensions(&self) -> Result<Extensions, ClientError> {
        if let Some((e, at)) = self.cached_extensions()
            && at.elapsed() < REASK
        {
            return Ok(e);
        }
        let found = match self
            .send(Method::GET, PATH, None, Some(self.inner.request_timeout))
            .await
        {
            Ok(resp) => {
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| ClientError::from_reqwest(e, PATH))?;
                Extensions::from_answer(200, &bytes)
            }
            Err(ClientError::NotFound(_)) => Extensions::none(),
            Err(ClientError::BadRequest { status, .. }) => Extensions::from_answer(status, b""),
            Err(e) => return Err(e),
        };
        *self
            .inner
            .extensions
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((found.clone(), Instant::now()));
        Ok(found)
    }

    /// Forget the cached answer: the next [`Client::extensions`] asks again.
    pub fn forget_extensions(&self) {
        *self
            .inner
            .extensions
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn cached_extensions(&self) -> Option<(Extensions, Instant)> {
        self.inner
            .extensions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `POST /stats` (extension `stats`): usage of these pods. Ask
    /// [`Client::extensions`] first; a server without it answers 404.
    pub async fn stats(&self, pods: &[Pod]) -> Result<Vec<PodStats>, ClientError> {
        self.stats_encoded(encode(&pods)?).await
    }

    /// [`Client::stats`] with the body already encoded (see
    /// [`super::encode_pods`]).
    pub async fn stats_encoded(
        &self,
        pods_json: bytes::Bytes,
    ) -> Result<Vec<PodStats>, ClientError> {
        let stats: Option<Vec<PodStats>> =
            self.call_json(Method::POST, STATS_PATH, pods_json).await?;
        Ok(stats.unwrap_or_default())
    }
}
