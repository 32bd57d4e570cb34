//! What a pod's volumes hold, as Kubernetes fills them: the files of its
//! `configMap`, `secret`, `projected` and `downwardAPI` volumes (keys become
//! file names unless `items` choose and rename keys; modes from the item, else
//! the volume's `defaultMode`, else 0644), and which volumes are `emptyDir`,
//! `hostPath` or a kind the plugins cannot provide. [`write_files`] writes a
//! volume's files with their modes from the moment they exist.
//!
//! Where the files go, how containers see them and which kinds a backend
//! accepts is the plugin's part.

use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Volume};

use super::downward::{self, Use};
use super::{Data, ObjectKind, PodError, PodView, resources};

/// The mode of a volume file when neither its item nor its volume sets one.
pub const DEFAULT_MODE: u32 = 0o644;

/// Mode of the directories of a volume (inside the plugin's private pod
/// directory; a container running as another user reads them through its bind).
pub const DIR_MODE: u32 = 0o755;

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFile {
    /// Relative to the volume's directory; never leaves it.
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// What a volume is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Files the plugin writes (configMap, secret, projected, downwardAPI).
    Files(Vec<VolumeFile>),
    /// An empty directory the pod's containers share and write.
    EmptyDir,
    /// A path on the node, as written in the spec (the plugin decides whether
    /// and how it may be used).
    HostPath { path: String, kind: Option<String> },
    /// A kind of volume the plugins cannot provide (PVC, NFS, ...).
    Unsupported,
}

/// One volume of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedVolume {
    pub name: String,
    pub content: Content,
}

/// A relative path that stays inside its directory: names only (`.` is
/// allowed, as Kubernetes allows it; `..` and absolute paths are not).
pub fn relative_path(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let mut names = 0;
    for c in path.components() {
        match c {
            Component::Normal(_) => names += 1,
            Component::CurDir => {}
            _ => return None,
        }
    }
    (names > 0).then(|| path.to_path_buf())
}

/// A volume name usable as one directory name.
pub fn check_name(name: &str) -> Result<(), PodError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(PodError::Invalid(format!(
            "volume name {name:?} is not a valid file name"
        )));
    }
    Ok(())
}

fn mode(m: Option<i32>) -> u32 {
    m.map_or(DEFAULT_MODE, |m| m as u32 & 0o777)
}

fn file(vol: &str, rel: &str, contents: Vec<u8>, mode: u32) -> Result<VolumeFile, PodError> {
    let path = relative_path(rel).ok_or_else(|| {
        PodError::Invalid(format!(
            "volume {vol:?}: path {rel:?} must be a relative path inside the volume"
        ))
    })?;
    Ok(VolumeFile {
        path,
        contents,
        mode,
    })
}

/// The files of an object's keys: all of them, or the chosen `items`.
fn object_files(
    vol: &str,
    kind: ObjectKind,
    name: &str,
    data: &Data,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Vec<VolumeFile>, PodError> {
    let mut out = Vec::new();
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                match data.get(&it.key) {
                    Some(v) => out.push(file(
                        vol,
                        &it.path,
                        v.clone(),
                        mode(it.mode.or(default_mode)),
                    )?),
                    None if optional => {}
                    None => {
                        return Err(PodError::KeyNotSent {
                            context: format!("volume {vol:?}"),
                            kind,
                            name: name.to_string(),
                            key: it.key.clone(),
                        });
                    }
                }
            }
        }
        _ => {
            for (k, v) in data {
                out.push(file(vol, k, v.clone(), mode(default_mode))?);
            }
        }
    }
    Ok(out)
}

/// A referenced ConfigMap or Secret's files; one not sent is an error unless
/// `optional` (then there are none).
#[allow(clippy::too_many_arguments)]
fn referenced(
    view: PodView<'_>,
    vol: &str,
    kind: ObjectKind,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    optional: Option<bool>,
) -> Result<Vec<VolumeFile>, PodError> {
    let optional = optional == Some(true);
    match view.objects.get(kind, name) {
        Some(d) => object_files(vol, kind, name, d, items, default_mode, optional),
        None if optional => Ok(Vec::new()),
        None => Err(PodError::NotSent {
            context: format!("volume {vol:?}"),
            kind,
            name: name.to_string(),
        }),
    }
}

/// Files of downward-API items: each item's own `mode` wins over the volume's.
fn downward_files(
    view: PodView<'_>,
    vol: &str,
    items: Option<&[DownwardAPIVolumeFile]>,
    default_mode: Option<i32>,
) -> Result<Vec<VolumeFile>, PodError> {
    let mut out = Vec::new();
    for it in items.into_iter().flatten() {
        let value = if let Some(f) = &it.field_ref {
            downward::field(view.pod, view.placement, &f.field_path, Use::Volume)
                .map_err(|e| PodError::Invalid(format!("volume {vol:?}: {e}")))?
        } else if let Some(r) = &it.resource_field_ref {
            let wanted = r.container_name.as_deref().unwrap_or("");
            let c = view
                .pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
                .find(|c| c.name == wanted)
                .ok_or_else(|| {
                    PodError::Invalid(format!(
                        "volume {vol:?}: resourceFieldRef names container {wanted:?}, which the pod does not have"
                    ))
                })?;
            resources::field_value(c, r, view.placement)
                .map_err(|e| PodError::Invalid(format!("volume {vol:?}: {e}")))?
        } else {
            String::new()
        };
        out.push(file(
            vol,
            &it.path,
            value.into_bytes(),
            mode(it.mode.or(default_mode)),
        )?);
    }
    Ok(out)
}

/// What volume `v` of the pod holds.
pub fn content(view: PodView<'_>, v: &Volume) -> Result<Content, PodError> {
    let name = v.name.as_str();
    if let Some(cm) = &v.config_map {
        return referenced(
            view,
            name,
            ObjectKind::ConfigMap,
            &cm.name,
            cm.items.as_deref(),
            cm.default_mode,
            cm.optional,
        )
        .map(Content::Files);
    }
    if let Some(s) = &v.secret {
        return referenced(
            view,
            name,
            ObjectKind::Secret,
            s.secret_name.as_deref().unwrap_or(""),
            s.items.as_deref(),
            s.default_mode,
            s.optional,
        )
        .map(Content::Files);
    }
    if let Some(p) = &v.projected {
        // interLink sends a projected volume already rendered, as a map named
        // after the volume (file path -> content); otherwise assemble it here
        if let Some(d) = view.objects.projected.get(name) {
            return object_files(
                name,
                ObjectKind::ConfigMap,
                name,
                d,
                None,
                p.default_mode,
                false,
            )
            .map(Content::Files);
        }
        let mut out = Vec::new();
        for src in p.sources.iter().flatten() {
            if let Some(cm) = &src.config_map {
                out.extend(referenced(
                    view,
                    name,
                    ObjectKind::ConfigMap,
                    &cm.name,
                    cm.items.as_deref(),
                    p.default_mode,
                    cm.optional,
                )?);
            }
            if let Some(s) = &src.secret {
                out.extend(referenced(
                    view,
                    name,
                    ObjectKind::Secret,
                    &s.name,
                    s.items.as_deref(),
                    p.default_mode,
                    s.optional,
                )?);
            }
            if let Some(d) = &src.downward_api {
                out.extend(downward_files(
                    view,
                    name,
                    d.items.as_deref(),
                    p.default_mode,
                )?);
            }
            if let Some(t) = &src.service_account_token {
                tracing::warn!(
                    volume = %name,
                    path = %t.path,
                    "no service-account token was sent for this projected volume; the file is left out"
                );
            }
        }
        return Ok(Content::Files(out));
    }
    if let Some(d) = &v.downward_api {
        return downward_files(view, name, d.items.as_deref(), d.default_mode).map(Content::Files);
    }
    if v.empty_dir.is_some() {
        return Ok(Content::EmptyDir);
    }
    if let Some(hp) = &v.host_path {
        return Ok(Content::HostPath {
            path: hp.path.clone(),
            kind: hp.type_.clone().filter(|t| !t.is_empty()),
        });
    }
    Ok(Content::Unsupported)
}

/// A `hostPath` volume on this machine, checked against its `type`
/// (`DirectoryOrCreate` is made), as the real path to bind (symlinks
/// resolved). With `allowed` (a site's list of directories), the path must
/// lie under one of them, before and after its symlinks are resolved, so a
/// link cannot lead a tenant outside; `None` takes any path (a single-tenant
/// backend such as the local plugin).
pub fn host_path(
    path: &str,
    kind: Option<&str>,
    allowed: Option<&[std::path::PathBuf]>,
) -> Result<std::path::PathBuf, String> {
    use std::path::{Component, Path};
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "hostPath {path:?} must be an absolute path without '..'"
        ));
    }
    let inside = |q: &Path| {
        allowed.is_none_or(|dirs| {
            dirs.iter().any(|d| {
                q.starts_with(d) || std::fs::canonicalize(d).is_ok_and(|d| q.starts_with(d))
            })
        })
    };
    if !inside(p) {
        return Err(format!(
            "hostPath {path} is not under a directory this site allows for hostPath volumes"
        ));
    }
    let leads_outside = |real: &Path| {
        format!(
            "hostPath {path} leads to {}, which is not under a directory this site allows for hostPath volumes",
            real.display()
        )
    };
    if allowed.is_some() {
        // before anything is made: the nearest existing ancestor's real path,
        // so `DirectoryOrCreate` cannot create through a link that leads out
        let existing = p.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
        let real = std::fs::canonicalize(existing).map_err(|e| format!("hostPath {path}: {e}"))?;
        if !inside(&real) {
            return Err(leads_outside(&real));
        }
    }
    match kind.unwrap_or("") {
        "DirectoryOrCreate" => {
            std::fs::create_dir_all(p).map_err(|e| format!("create hostPath {path}: {e}"))?
        }
        "Directory" if !p.is_dir() => return Err(format!("hostPath {path} is not a directory")),
        "File" if !p.is_file() => return Err(format!("hostPath {path} is not a file")),
        _ => {}
    }
    if allowed.is_none() {
        return Ok(p.to_path_buf());
    }
    let real = std::fs::canonicalize(p).map_err(|e| format!("hostPath {path}: {e}"))?;
    if !inside(&real) {
        return Err(leads_outside(&real));
    }
    Ok(real)
}

/// Every volume of the pod, in spec order, each name checked.
pub fn plan(view: PodView<'_>) -> Result<Vec<PlannedVolume>, PodError> {
    let mut out = Vec::new();
    for v in view
        .pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
    {
        check_name(&v.name)?;
        out.push(PlannedVolume {
            name: v.name.clone(),
            content: content(view, v)?,
        });
    }
    Ok(out)
}

/// Write a volume's files under `dir` (made, with missing parents, mode
/// [`DIR_MODE`]). Each file is created with its mode from the start (see
/// [`crate::private_fs::write_new`]); one already there is replaced.
pub fn write_files(dir: &Path, files: &[VolumeFile]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let mkdir = |p: &Path| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(p)
    };
    mkdir(dir)?;
    for f in files {
        let p = dir.join(&f.path);
        if let Some(parent) = p.parent() {
            mkdir(parent)?;
        }
        crate::private_fs::write_new(&p, &f.contents, f.mode)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Placement, PodObjects};
    use super::*;
    use interlink::RetrievedPodData;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn data() -> RetrievedPodData {
        serde_json::from_value(json!({
            "pod": {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "x", "b": "y"}},
              "spec": {
                "volumes": [
                  {"name": "cfg", "configMap": {"name": "cm1", "items": [{"key": "a", "path": "sub/a.txt"}]}},
                  {"name": "sec", "secret": {"secretName": "s1", "defaultMode": 256}},
                  {"name": "kube-api-access-1", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
                  {"name": "scratch", "emptyDir": {}},
                  {"name": "info", "downwardAPI": {"items": [
                      {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                      {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
                      {"path": "mem", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory", "divisor": "1Mi"}}
                  ]}},
                  {"name": "data", "hostPath": {"path": "/srv/data", "type": "Directory"}},
                  {"name": "pvc", "persistentVolumeClaim": {"claimName": "c"}}
                ],
                "containers": [{"name": "main", "image": "busybox", "resources": {"limits": {"memory": "64Mi"}}}]}},
            "container": [{"name": "main",
              "configMaps": [{"metadata": {"name": "cm1"}, "data": {"a": "hello", "b": "unused"}}],
              "secrets": [{"metadata": {"name": "s1"}, "data": {"key": "czNjcjN0"}}],
              "projectedvolumemaps": [{"metadata": {"name": "kube-api-access-1"}, "data": {"token": "tok", "ca.crt": "ca"}}]}]
        }))
        .unwrap()
    }

    fn planned(d: &RetrievedPodData) -> Result<Vec<PlannedVolume>, PodError> {
        let objects = PodObjects::from_request(d);
        plan(PodView {
            pod: &d.pod,
            objects: &objects,
            placement: &Placement::default(),
        })
    }

    fn files(p: &[PlannedVolume], vol: &str) -> Vec<VolumeFile> {
        match &p.iter().find(|v| v.name == vol).unwrap().content {
            Content::Files(f) => f.clone(),
            other => panic!("{vol}: {other:?}"),
        }
    }

    #[test]
    fn every_kind_as_kubernetes_fills_it() {
        let p = planned(&data()).unwrap();
        assert_eq!(
            files(&p, "cfg"),
            vec![VolumeFile {
                path: "sub/a.txt".into(),
                contents: b"hello".to_vec(),
                mode: 0o644
            }]
        );
        let s = files(&p, "sec");
        assert_eq!(
            (s[0].contents.as_slice(), s[0].mode),
            (&b"s3cr3t"[..], 0o400)
        );
        let sa = files(&p, "kube-api-access-1");
        assert_eq!(sa.len(), 2, "the rendered map wins over the sources");
        let info = files(&p, "info");
        assert_eq!(info[0].contents, b"app=\"x\"\nb=\"y\"");
        assert_eq!(info[1].contents, b"x");
        assert_eq!(info[2].contents, b"64");
        assert_eq!(p[3].content, Content::EmptyDir);
        assert_eq!(
            p[5].content,
            Content::HostPath {
                path: "/srv/data".into(),
                kind: Some("Directory".into())
            }
        );
        assert_eq!(p[6].content, Content::Unsupported);
    }

    #[test]
    fn modes_optional_objects_and_projected_sources() {
        let d = data();
        let pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"volumes": [
                {"name": "proj", "projected": {"defaultMode": 0o640, "sources": [
                    {"downwardAPI": {"items": [
                        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o400},
                        {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                    {"secret": {"name": "s1", "items": [{"key": "key", "path": "k", "mode": 0o440}]}},
                    {"configMap": {"name": "absent", "optional": true}},
                    {"configMap": {"name": "cm1", "items": [{"key": "nokey", "path": "n"}], "optional": true}}
                ]}},
                {"name": "plain", "downwardAPI": {"defaultMode": 0o600, "items": [
                    {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}, "mode": 0o444},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                {"name": "opt", "secret": {"secretName": "absent", "optional": true}}
            ], "containers": [{"name": "main"}]}
        }))
        .unwrap();
        let objects = PodObjects::from_request(&d);
        let p = plan(PodView {
            pod: &pod,
            objects: &objects,
            placement: &Placement::default(),
        })
        .unwrap();
        let modes = |vol: &str| -> Vec<(String, u32)> {
            files(&p, vol)
                .into_iter()
                .map(|f| (f.path.display().to_string(), f.mode))
                .collect()
        };
        assert_eq!(
            modes("proj"),
            vec![
                ("name".into(), 0o400),
                ("ns".into(), 0o640),
                ("k".into(), 0o440)
            ]
        );
        assert_eq!(
            modes("plain"),
            vec![("uid".into(), 0o444), ("name".into(), 0o600)]
        );
        assert!(files(&p, "opt").is_empty());
    }

    #[test]
    fn clear_errors() {
        let mut d = data();
        d.containers[0].config_maps.clear();
        let e = planned(&d).unwrap_err();
        assert_eq!(
            e.to_string(),
            "volume \"cfg\": ConfigMap \"cm1\" was not sent with the pod"
        );
        assert_eq!(
            e.with_field_names(),
            "volume \"cfg\": configMap \"cm1\" was not sent with the pod"
        );

        let mut d = data();
        d.pod.spec.as_mut().unwrap().volumes.as_mut().unwrap()[0]
            .config_map
            .as_mut()
            .unwrap()
            .items = Some(vec![
            serde_json::from_value(json!({"key": "zz", "path": "z"})).unwrap(),
        ]);
        let e = planned(&d).unwrap_err().to_string();
        assert_eq!(
            e,
            "volume \"cfg\": key \"zz\" of ConfigMap \"cm1\" was not sent with the pod"
        );

        assert_eq!(relative_path("./a/./b"), Some(PathBuf::from("./a/./b")));
        assert_eq!(relative_path("."), None);
        for bad in ["../x", "/abs", "a/../../b", "", "a/.."] {
            let mut d = data();
            d.containers[0].config_maps[0]
                .data
                .as_mut()
                .unwrap()
                .insert(bad.into(), "y".into());
            d.pod.spec.as_mut().unwrap().volumes.as_mut().unwrap()[0]
                .config_map
                .as_mut()
                .unwrap()
                .items = None;
            let e = planned(&d).unwrap_err().to_string();
            assert!(
                e.contains(&format!("{bad:?}")) && e.contains("inside the volume"),
                "{e}"
            );
        }

        let mut d = data();
        d.pod.spec.as_mut().unwrap().volumes.as_mut().unwrap()[0].name = "..".into();
        assert!(planned(&d).unwrap_err().to_string().contains("volume name"));
    }

    #[test]
    fn writes_files_with_their_modes_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("volumes/sec");
        let f = |path: &str, mode| VolumeFile {
            path: path.into(),
            contents: path.as_bytes().to_vec(),
            mode,
        };
        write_files(&vol, &[f("key", 0o400), f("deep/er/x", 0o640)]).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(std::fs::read(vol.join("key")).unwrap(), b"key");
        assert_eq!(mode(&vol.join("key")), 0o400);
        assert_eq!(mode(&vol.join("deep/er/x")), 0o640);
        assert_eq!(mode(&vol.join("deep")), DIR_MODE);
        // written again (a pod sent again): replaced, mode as planned
        write_files(&vol, &[f("key", 0o600)]).unwrap();
        assert_eq!(mode(&vol.join("key")), 0o600);
    }
}
