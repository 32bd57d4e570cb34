//! A `/status` answer as it arrived: the JSON of each pod's status, decoded
//! only when asked. Splitting an answer checks its syntax and costs a fraction
//! of decoding it; a caller that polls the same pods round after round can
//! tell which statuses are the very bytes it saw before and decode only the
//! others (the CRI host's status loop does).

use std::ops::Range;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::PodStatus;

/// The statuses of one `/status` answer, each as its JSON text.
#[derive(Debug, Clone, Default)]
pub struct StatusAnswer {
    body: Bytes,
    items: Vec<Range<usize>>,
}

impl StatusAnswer {
    /// Split an answer: a JSON array of `PodStatus` objects (`null`, Go's
    /// nil slice, and an empty body are no statuses). The syntax of the whole
    /// is checked; each element is decoded by [`StatusAnswer::decode`].
    pub fn parse(body: Bytes) -> Result<StatusAnswer, serde_json::Error> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(StatusAnswer::default());
        }
        let raws: Option<Vec<&RawValue>> = serde_json::from_slice(&body)?;
        let base = body.as_ptr() as usize;
        let items = raws
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let start = r.get().as_ptr() as usize - base;
                start..start + r.get().len()
            })
            .collect();
        Ok(StatusAnswer { body, items })
    }

    /// The answer these statuses make (what a server would have sent).
    pub fn from_statuses(statuses: &[PodStatus]) -> StatusAnswer {
        let body = serde_json::to_vec(statuses).expect("a PodStatus always encodes");
        StatusAnswer::parse(body.into()).expect("what serde_json wrote parses")
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The JSON text of each status, in the answer's order.
    pub fn raw(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.items.iter().map(|r| &self.body[r.clone()])
    }

    /// The JSON text of status `i`.
    pub fn raw_at(&self, i: usize) -> Option<&[u8]> {
        self.items.get(i).map(|r| &self.body[r.clone()])
    }

    /// Decode one status (one of [`StatusAnswer::raw`]).
    pub fn decode(raw: &[u8]) -> Result<PodStatus, serde_json::Error> {
        serde_json::from_slice(raw)
    }

    /// Every status, decoded.
    pub fn decode_all(&self) -> Result<Vec<PodStatus>, serde_json::Error> {
        self.raw().map(StatusAnswer::decode).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(uid: &str) -> PodStatus {
        PodStatus {
            pod_uid: uid.into(),
            pod_name: format!("p-{uid}"),
            pod_namespace: "ns".into(),
            job_id: "7".into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_status_is_its_own_json_and_decodes_to_what_was_sent() {
        let sent = vec![status("a"), status("b\"quoted\"")];
        let a = StatusAnswer::parse(serde_json::to_vec_pretty(&sent).unwrap().into()).unwrap();
        assert_eq!(a.len(), 2);
        for (raw, want) in a.raw().zip(&sent) {
            assert_eq!(&StatusAnswer::decode(raw).unwrap(), want);
            assert!(raw.starts_with(b"{") && raw.ends_with(b"}"));
        }
        assert_eq!(a.decode_all().unwrap(), sent);
        assert_eq!(a.raw_at(1), a.raw().nth(1));
        assert_eq!(a.raw_at(2), None);
        assert_eq!(
            StatusAnswer::from_statuses(&sent).decode_all().unwrap(),
            sent
        );
    }

    #[test]
    fn null_and_empty_are_no_statuses_and_garbage_is_an_error() {
        for body in ["null", "", "  \n", "[]"] {
            assert!(
                StatusAnswer::parse(Bytes::from(body)).unwrap().is_empty(),
                "{body:?}"
            );
        }
        for body in ["[{]", "{\"UID\":\"a\"}", "[1,"] {
            assert!(StatusAnswer::parse(Bytes::from(body)).is_err(), "{body:?}");
        }
        // an element that is valid JSON but not a status fails only when decoded
        let a = StatusAnswer::parse(Bytes::from("[1]")).unwrap();
        assert!(StatusAnswer::decode(a.raw().next().unwrap()).is_err());
    }
}
