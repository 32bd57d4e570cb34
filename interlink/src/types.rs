//! The JSON bodies of the interLink contract, with keys exactly as upstream's Go
//! code puts them on the wire (`UID`, `JID`, `PodUID`, `projectedvolumesmaps`, ...).
//!
//! Upstream marshals nil Go slices as `null` and a zero `time.Time` as
//! `0001-01-01T00:00:00Z`; every type here accepts both, so documents written by
//! upstream's API server and plugins decode without special cases.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Pod, Secret};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Body of `POST /create` sent to the API server: the pod plus every object its
/// volumes and env reference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodCreateRequests {
    pub pod: Pod,
    #[serde(default, deserialize_with = "null_as_default")]
    pub configmaps: Vec<ConfigMap>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub secrets: Vec<Secret>,
    /// Projected volumes (service-account token, CA bundle, downward API) as
    /// ConfigMaps whose keys are file names. Note the spelling: `volumes`.
    #[serde(
        rename = "projectedvolumesmaps",
        default,
        deserialize_with = "null_as_default"
    )]
    pub projected_volumes_maps: Vec<ConfigMap>,
    #[serde(rename = "jobscriptURL", default, deserialize_with = "null_as_default")]
    pub job_script_url: String,
}

/// The status of one pod as the plugin reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodStatus {
    #[serde(rename = "name", default, deserialize_with = "null_as_default")]
    pub pod_name: String,
    #[serde(rename = "UID", default, deserialize_with = "null_as_default")]
    pub pod_uid: String,
    #[serde(rename = "namespace", default, deserialize_with = "null_as_default")]
    pub pod_namespace: String,
    /// The remote job id: a Slurm job number, a container id, ...
    #[serde(rename = "JID", default, deserialize_with = "null_as_default")]
    pub job_id: String,
    #[serde(default, deserialize_with = "null_as_empty_list")]
    pub containers: Vec<ContainerStatus>,
    #[serde(
        rename = "initContainers",
        default,
        deserialize_with = "null_as_empty_list"
    )]
    pub init_containers: Vec<ContainerStatus>,
}

/// Answer of `/create`: the pod's UID and the remote job id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateStruct {
    #[serde(rename = "PodUID", default, deserialize_with = "null_as_default")]
    pub pod_uid: String,
    #[serde(rename = "PodJID", default, deserialize_with = "null_as_default")]
    pub pod_jid: String,
}

/// Body of `/getLogs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogStruct {
    #[serde(rename = "Namespace", default, deserialize_with = "null_as_default")]
    pub namespace: String,
    #[serde(rename = "PodUID", default, deserialize_with = "null_as_default")]
    pub pod_uid: String,
    #[serde(rename = "PodName", default, deserialize_with = "null_as_default")]
    pub pod_name: String,
    #[serde(
        rename = "ContainerName",
        default,
        deserialize_with = "null_as_default"
    )]
    pub container_name: String,
    #[serde(rename = "Opts", default, deserialize_with = "null_as_default")]
    pub opts: ContainerLogOpts,
}

/// Options of a log request. Zero means "not set" for every number, as upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerLogOpts {
    /// Number of lines from the end; 0 = all.
    #[serde(rename = "Tail", default, deserialize_with = "null_as_default")]
    pub tail: i64,
    /// Byte limit; 0 = none.
    #[serde(rename = "Bytes", default, deserialize_with = "null_as_default")]
    pub limit_bytes: i64,
    #[serde(rename = "Timestamps", default, deserialize_with = "null_as_default")]
    pub timestamps: bool,
    #[serde(rename = "Follow", default, deserialize_with = "null_as_default")]
    pub follow: bool,
    #[serde(rename = "Previous", default, deserialize_with = "null_as_default")]
    pub previous: bool,
    #[serde(rename = "SinceSeconds", default, deserialize_with = "null_as_default")]
    pub since_seconds: i64,
    /// `None` is written as Go's zero time, which upstream reads as "not set".
    #[serde(
        rename = "SinceTime",
        default,
        serialize_with = "ser_go_time",
        deserialize_with = "de_go_time"
    )]
    pub since_time: Option<Timestamp>,
}

/// Answer of `/pinglink` when the plugin reports its resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PingResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<PingResources>,
    /// As upstream's `*[]TaintResponse`: `None` (absent) leaves the node's
    /// taints alone, `Some(vec![])` (`[]`) clears them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taints: Option<Vec<Taint>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PingResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub accelerators: Vec<Accelerator>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accelerator {
    #[serde(rename = "resourceType", default, deserialize_with = "null_as_default")]
    pub resource_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub available: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Taint {
    #[serde(default, deserialize_with = "null_as_default")]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub effect: String,
}

/// Body of the plugin's `/create`: the pod and, per container, what it references.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrievedPodData {
    pub pod: Pod,
    #[serde(rename = "container", default, deserialize_with = "null_as_default")]
    pub containers: Vec<RetrievedContainer>,
    /// Upstream's `ScriptBuildConfig`; Go always writes it (zero values when the
    /// server has none configured), and so does our server.
    #[serde(rename = "jobConfig", default, skip_serializing_if = "Option::is_none")]
    pub job_config: Option<serde_json::Value>,
    #[serde(
        rename = "jobScript",
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub job_script: String,
}

/// What one container (init or regular) references.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrievedContainer {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(rename = "configMaps", default, deserialize_with = "null_as_default")]
    pub config_maps: Vec<ConfigMap>,
    /// Note the spelling: `volume`, unlike [`PodCreateRequests`].
    #[serde(
        rename = "projectedvolumemaps",
        default,
        deserialize_with = "null_as_default"
    )]
    pub projected_volume_maps: Vec<ConfigMap>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub secrets: Vec<Secret>,
    /// Deprecated upstream (plugins lay out emptyDirs themselves); written as
    /// `null` when empty, as upstream's API server always does.
    #[serde(
        rename = "emptyDirs",
        default,
        serialize_with = "empty_as_null",
        deserialize_with = "null_as_default"
    )]
    pub empty_dirs: Vec<String>,
}

/// The UID of a pod, or "" when it has none.
pub fn pod_uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// The name of a pod, or "" when it has none.
pub fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

/// The namespace of a pod, or "" when it has none.
pub fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("")
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A list (`null`: empty) grown from room for one element: most pods have one
/// container, and a `ContainerStatus` is large, so a status of 10,000 pods does
/// not allocate room for four of them per pod (serde's `Vec` starts at four).
fn null_as_empty_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct List<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for List<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list or null")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Vec<T>, D2::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(1).clamp(1, 64));
            while let Some(x) = seq.next_element()? {
                v.push(x);
            }
            Ok(v)
        }
    }
    d.deserialize_option(List(std::marker::PhantomData))
}

fn empty_as_null<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_none()
    } else {
        v.serialize(s)
    }
}

/// Go's zero `time.Time`, which upstream writes for an unset `SinceTime`.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn ser_go_time<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_string()),
        None => s.serialize_str(GO_ZERO_TIME),
    }
}

fn de_go_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    if s.is_empty() {
        return Ok(None);
    }
    let t: Timestamp = s.parse().map_err(serde::de::Error::custom)?;
    if t.as_second()
        <= GO_ZERO_TIME
            .parse::<Timestamp>()
            .map(|z| z.as_second())
            .unwrap_or(i64::MIN)
    {
        Ok(None)
    } else {
        Ok(Some(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn keys(v: &Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn pod_status_as_upstream_writes_it() {
        // A plugin's answer as upstream's Go marshals it: nil slice -> null.
        let doc = json!([{
            "name": "busy", "UID": "0c6b9ab4-8d43-4b4e-9a1c-6a2f0e8f2b11", "namespace": "default",
            "JID": "4242",
            "containers": [{
                "name": "main", "image": "busybox", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"terminated": {"exitCode": 3, "reason": "Error",
                    "startedAt": "2026-11-22T07:00:00Z", "finishedAt": "2026-11-22T07:00:05Z"}}
            }],
            "initContainers": null
        }]);
        let st: Vec<PodStatus> = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(st[0].job_id, "4242");
        assert!(st[0].init_containers.is_empty());
        let term = st[0].containers[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap();
        assert_eq!(term.exit_code, 3);
        let back = serde_json::to_value(&st).unwrap();
        assert_eq!(keys(&back[0]), keys(&doc[0]));
        assert_eq!(
            back[0]["containers"][0]["state"]["terminated"]["exitCode"],
            3
        );
        assert_eq!(
            back[0]["containers"][0]["state"]["terminated"]["finishedAt"],
            "2026-11-22T07:00:05Z"
        );
    }

    #[test]
    fn create_request_keys() {
        let doc = json!({
            "pod": {"metadata": {"name": "p", "namespace": "default", "uid": "u"},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
            "configmaps": [{"metadata": {"name": "cm"}, "data": {"a": "b"}}],
            "secrets": null,
            "projectedvolumesmaps": [{"metadata": {"name": "kube-api-access-x"}, "data": {"token": "t"}}],
            "jobscriptURL": ""
        });
        let req: PodCreateRequests = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(pod_uid(&req.pod), "u");
        assert_eq!(req.projected_volumes_maps.len(), 1);
        let back = serde_json::to_value(&req).unwrap();
        assert_eq!(keys(&back), keys(&doc));
        assert_eq!(back["secrets"], json!([]));
    }

    #[test]
    fn retrieved_pod_data_keys() {
        let doc = json!({
            "pod": {"metadata": {"name": "p", "uid": "u"}},
            "container": [{"name": "c", "configMaps": [], "projectedvolumemaps": null,
                           "secrets": [], "emptyDirs": ["/data/u/emptyDirs/scratch"]}],
            "jobScript": "#!/bin/sh"
        });
        let d: RetrievedPodData = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(
            d.containers[0].empty_dirs,
            vec!["/data/u/emptyDirs/scratch"]
        );
        let back = serde_json::to_value(&d).unwrap();
        assert_eq!(keys(&back), vec!["container", "jobScript", "pod"]);
        assert_eq!(
            back["container"][0]["emptyDirs"],
            json!(["/data/u/emptyDirs/scratch"])
        );
        assert_eq!(keys(&back["container"][0]), keys(&doc["container"][0]));
    }

    #[test]
    fn create_struct_and_logs() {
        let c: CreateStruct = serde_json::from_str(r#"{"PodUID":"u","PodJID":"17"}"#).unwrap();
        assert_eq!(c.pod_jid, "17");
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"PodUID":"u","PodJID":"17"}"#
        );

        let doc = json!({"Namespace": "default", "PodUID": "u", "PodName": "p", "ContainerName": "c",
            "Opts": {"Tail": 10, "Bytes": 0, "Timestamps": false, "Follow": true, "Previous": false,
                     "SinceSeconds": 0, "SinceTime": "0001-01-01T00:00:00Z"}});
        let l: LogStruct = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(l.opts.tail, 10);
        assert!(l.opts.follow);
        assert_eq!(l.opts.since_time, None);
        assert_eq!(serde_json::to_value(&l).unwrap(), doc);

        let with_time: ContainerLogOpts =
            serde_json::from_value(json!({"SinceTime": "2026-11-22T07:00:00.5Z"})).unwrap();
        assert_eq!(
            with_time.since_time.unwrap().to_string(),
            "2026-11-22T07:00:00.5Z"
        );
    }

    #[test]
    fn ping_response_optional_fields() {
        let p: PingResponse = serde_json::from_str(
            r#"{"status":"ok","resources":{"cpu":"64","memory":"256Gi","pods":"100",
                "accelerators":[{"resourceType":"nvidia.com/gpu","available":"4"}]},
                "taints":[{"key":"k","effect":"NoSchedule"}]}"#,
        )
        .unwrap();
        assert_eq!(p.resources.as_ref().unwrap().accelerators[0].available, "4");
        let empty: PingResponse = serde_json::from_str("{}").unwrap();
        assert_eq!(serde_json::to_string(&empty).unwrap(), "{}");
        // Go's *[]TaintResponse: [] clears the node's taints, absent leaves them
        let clear: PingResponse = serde_json::from_str(r#"{"status":"ok","taints":[]}"#).unwrap();
        assert_eq!(clear.taints, Some(vec![]));
        assert_eq!(
            serde_json::to_string(&clear).unwrap(),
            r#"{"status":"ok","taints":[]}"#
        );
        let absent: PingResponse = serde_json::from_str(r#"{"status":"ok"}"#).unwrap();
        assert_eq!(absent.taints, None);
    }

    #[test]
    fn empty_dirs_written_as_null() {
        let c = RetrievedContainer {
            name: "c".into(),
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(&c).unwrap()["emptyDirs"], Value::Null);
    }
}
