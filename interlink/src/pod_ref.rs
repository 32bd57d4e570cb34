//! A pod as `/status`, `/stats` and `/status/watch` name it.
//!
//! Those requests carry whole `v1.Pod` objects (upstream's contract), but a
//! plugin answers them from the pod's ids and its containers' names alone.
//! [`PodRef`] decodes only that and skips the rest unread: a 10,000-pod
//! `/status` costs the plugin a few milliseconds instead of building 10,000
//! Kubernetes objects (≈ 2.4 KiB each before any field is filled).

use k8s_openapi::api::core::v1::{Container, Pod};
use serde::{Deserialize, Deserializer};

/// The ids of a pod and the names (and images) of its containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRef {
    /// `metadata.uid` ("" when absent).
    pub uid: String,
    /// `metadata.name` ("" when absent).
    pub name: String,
    /// `metadata.namespace` ("" when absent).
    pub namespace: String,
    /// `spec.containers`, in order.
    pub containers: Vec<ContainerRef>,
    /// `spec.initContainers`, in order.
    pub init_containers: Vec<ContainerRef>,
}

/// A container of a [`PodRef`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerRef {
    pub name: String,
    /// "" when the spec names none.
    pub image: String,
}

impl From<&Container> for ContainerRef {
    fn from(c: &Container) -> Self {
        ContainerRef {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
        }
    }
}

impl From<&Pod> for PodRef {
    fn from(p: &Pod) -> Self {
        let spec = p.spec.as_ref();
        PodRef {
            uid: crate::pod_uid(p).to_string(),
            name: crate::pod_name(p).to_string(),
            namespace: crate::pod_namespace(p).to_string(),
            containers: spec
                .map(|s| s.containers.iter().map(ContainerRef::from).collect())
                .unwrap_or_default(),
            init_containers: spec
                .and_then(|s| s.init_containers.as_ref())
                .map(|cs| cs.iter().map(ContainerRef::from).collect())
                .unwrap_or_default(),
        }
    }
}

// The JSON shape of a `v1.Pod`, cut to what is read; `null` anywhere is absent.
#[derive(Deserialize)]
struct PodShape {
    #[serde(default)]
    metadata: Option<MetaShape>,
    #[serde(default)]
    spec: Option<SpecShape>,
}

#[derive(Deserialize)]
struct MetaShape {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct SpecShape {
    #[serde(default)]
    containers: Option<Vec<ContainerShape>>,
    #[serde(default, rename = "initContainers")]
    init_containers: Option<Vec<ContainerShape>>,
}

#[derive(Deserialize)]
struct ContainerShape {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    image: Option<String>,
}

fn containers(list: Option<Vec<ContainerShape>>) -> Vec<ContainerRef> {
    list.unwrap_or_default()
        .into_iter()
        .map(|c| ContainerRef {
            name: c.name.unwrap_or_default(),
            image: c.image.unwrap_or_default(),
        })
        .collect()
}

impl<'de> Deserialize<'de> for PodRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = PodShape::deserialize(d)?;
        let m = p.metadata;
        let (uid, name, namespace) = m
            .map(|m| {
                (
                    m.uid.unwrap_or_default(),
                    m.name.unwrap_or_default(),
                    m.namespace.unwrap_or_default(),
                )
            })
            .unwrap_or_default();
        let (cs, inits) = p
            .spec
            .map(|s| (s.containers, s.init_containers))
            .unwrap_or_default();
        Ok(PodRef {
            uid,
            name,
            namespace,
            containers: containers(cs),
            init_containers: containers(inits),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_and_containers_and_skips_the_rest() {
        let json = r#"[{"apiVersion":"v1","kind":"Pod",
            "metadata":{"name":"p","namespace":"ns","uid":"u-1","labels":{"a":"b"},
                "annotations":{"x":"{\"nested\":[1,2]}"}},
            "spec":{"containers":[{"name":"main","image":"busybox","command":["sh"],
                "env":[{"name":"A","value":"1"}],"resources":{"limits":{"cpu":"1"}}},
                {"name":"side"}],
                "initContainers":[{"name":"init","image":"alpine"}],
                "volumes":[{"name":"v","emptyDir":{}}],"nodeName":"n"},
            "status":{"phase":"Running"}},
            {"metadata":{"uid":"u-2","name":null},"spec":null},
            {}]"#;
        let pods: Vec<PodRef> = serde_json::from_str(json).unwrap();
        assert_eq!(pods.len(), 3);
        assert_eq!(
            pods[0],
            PodRef {
                uid: "u-1".into(),
                name: "p".into(),
                namespace: "ns".into(),
                containers: vec![
                    ContainerRef {
                        name: "main".into(),
                        image: "busybox".into()
                    },
                    ContainerRef {
                        name: "side".into(),
                        image: String::new()
                    },
                ],
                init_containers: vec![ContainerRef {
                    name: "init".into(),
                    image: "alpine".into()
                }],
            }
        );
        assert_eq!((pods[1].uid.as_str(), pods[1].name.as_str()), ("u-2", ""));
        assert!(pods[1].containers.is_empty());
        assert_eq!(pods[2], PodRef::default());
    }

    #[test]
    fn decodes_what_a_pod_encodes_to() {
        let pod: Pod = serde_json::from_str(
            r#"{"metadata":{"name":"p","namespace":"ns","uid":"u"},
                "spec":{"containers":[{"name":"c","image":"i"}],
                "initContainers":[{"name":"i0"}]}}"#,
        )
        .unwrap();
        let back: PodRef = serde_json::from_slice(&serde_json::to_vec(&pod).unwrap()).unwrap();
        assert_eq!(back, PodRef::from(&pod));
        assert_eq!(back.init_containers[0].name, "i0");
    }

    #[test]
    fn a_wrong_type_is_an_error_not_a_default() {
        assert!(serde_json::from_str::<PodRef>(r#"{"metadata":{"uid":7}}"#).is_err());
        assert!(serde_json::from_str::<PodRef>(r#"{"spec":{"containers":{}}}"#).is_err());
    }
}
