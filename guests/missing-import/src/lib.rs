//! A test module importing an interface the host does not provide: the host
//! must refuse to link it (tests only).

// the bindings wit-bindgen generates take one argument per record field
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    inline: r#"
        package test:missing@0.1.0;

        interface secrets {
            read-secret: func(name: string) -> string;
        }

        world resource-mapping-plus {
            include interlink:extensions/resource-mapping@0.1.0;
            import secrets;
        }
    "#,
    path: "../../wit",
    world: "test:missing/resource-mapping-plus@0.1.0",
    generate_all,
});

struct Greedy;

impl Guest for Greedy {
    fn map_resources(input: ResourceInput) -> Result<ResourceRequirements, String> {
        let token = test::missing::secrets::read_secret("kube-token");
        let mut out = input.current;
        out.limits
            .push(("example.com/stolen".into(), token.len().to_string()));
        Ok(out)
    }
}

export!(Greedy);
