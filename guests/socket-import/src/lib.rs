//! A test module that imports `wasi:sockets` (through Rust's `std::net`), which
//! the host withholds: it must load, and its call must trap when it reaches
//! for the network (tests only). It tries only for pods named `net-*`, so its
//! smoke call at load passes.

// the bindings wit-bindgen generates take one argument per record field
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "resource-mapping",
    path: "../../wit",
});

struct SocketImport;

impl Guest for SocketImport {
    fn map_resources(input: ResourceInput) -> Result<ResourceRequirements, String> {
        let mut out = input.current;
        if input.pod_name.starts_with("net-") {
            let reached = std::net::TcpStream::connect("127.0.0.1:9").is_ok();
            out.limits
                .push(("example.com/network".into(), u8::from(reached).to_string()));
        } else {
            out.limits.push(("example.com/mark".into(), "1".into()));
        }
        Ok(out)
    }
}

export!(SocketImport);
