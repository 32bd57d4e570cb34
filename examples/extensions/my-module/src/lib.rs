//! Example annotation handler: labels every offloaded pod with the site name
//! and records which runtime handler ran it. The site name comes from the
//! module's configuration file (`my_module.json` next to `my_module.wasm`):
//! `{"site": "cnaf"}` — here parsed by hand to keep the module tiny.

wit_bindgen::generate!({
    world: "annotation-handling",
    // the WIT package of interlink-rs (copy wit/ next to your crate if you
    // build it elsewhere)
    path: "../../../wit",
});

use interlink::extensions::host::{Level, config, log};

struct MyModule;

impl Guest for MyModule {
    fn handle_annotations(input: AnnotationInput) -> Result<MetadataChanges, String> {
        let cfg = config();
        let site = cfg
            .split("\"site\"")
            .nth(1)
            .and_then(|rest| rest.split('"').nth(1))
            .unwrap_or("unknown-site")
            .to_string();
        log(
            Level::Debug,
            "labelling pod",
            &[("pod".into(), input.pod_name.clone()), ("site".into(), site.clone())],
        );
        let handler = if input.runtime_handler.is_empty() {
            "default".to_string()
        } else {
            input.runtime_handler.clone()
        };
        Ok(MetadataChanges {
            set_labels: vec![("site.example/name".into(), site)],
            remove_labels: vec![],
            set_annotations: vec![("site.example/runtime-handler".into(), handler)],
            remove_annotations: vec![],
        })
    }
}

export!(MyModule);
