//! A container's resources as `resourceFieldRef` reads them (env values and
//! downwardAPI volume files), as the kubelet computes them:
//!
//! - `limits.<r>` / `requests.<r>` for `cpu`, `memory`, `ephemeral-storage`
//!   and `hugepages-<size>`;
//! - the value divided by the `divisor` (default `1`) and rounded **up**: CPU in
//!   millicores (`limits.cpu` `500m` is `1`, with divisor `1m` it is `500`),
//!   the others in bytes (`128Mi` with divisor `1Mi` is `128`);
//! - a request that is not set is the limit (the API server's defaulting); a
//!   CPU or memory limit that is not set is the node's allocatable amount
//!   ([`Placement`]), else `0`.

use k8s_openapi::api::core::v1::{Container, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{Placement, PodError};
use crate::quantity;

/// The value of `sel` for container `c` (`sel.containerName`, when set, has
/// already chosen `c`).
pub fn field_value(
    c: &Container,
    sel: &ResourceFieldSelector,
    placement: &Placement,
) -> Result<String, PodError> {
    let invalid = |why: String| {
        PodError::Invalid(format!(
            "resourceFieldRef {:?} of container {:?}: {why}",
            sel.resource, c.name
        ))
    };
    let (kind, name) = sel
        .resource
        .split_once('.')
        .filter(|(k, n)| {
            matches!(*k, "limits" | "requests")
                && (matches!(*n, "cpu" | "memory" | "ephemeral-storage")
                    || n.starts_with("hugepages-"))
        })
        .ok_or_else(|| {
            invalid("not supported (limits.* or requests.* of cpu, memory, ephemeral-storage, hugepages-<size>)".into())
        })?;
    let res = c.resources.as_ref();
    let limit = res
        .and_then(|r| r.limits.as_ref())
        .and_then(|m| m.get(name));
    let request = res
        .and_then(|r| r.requests.as_ref())
        .and_then(|m| m.get(name));
    let set = if kind == "requests" {
        request.or(limit)
    } else {
        limit
    };
    let cpu = name == "cpu";
    // the value in the unit it is divided in: millicores for CPU, else bytes
    let units = |q: &Quantity| {
        quantity::parse_scaled(&q.0, if cpu { 1000.0 } else { 1.0 })
            .map_err(|e| invalid(e.to_string()))
    };
    let value = match set {
        Some(q) => units(q)?,
        None if kind == "limits" && cpu => placement.allocatable_cpu_millis.unwrap_or(0),
        None if kind == "limits" && name == "memory" => {
            placement.allocatable_memory_bytes.unwrap_or(0)
        }
        None => 0,
    };
    let divisor = match &sel.divisor {
        Some(d) if !d.0.is_empty() => units(d)?,
        _ if cpu => 1000,
        _ => 1,
    };
    if divisor == 0 {
        return Err(invalid("divisor must be positive".into()));
    }
    Ok(value.div_ceil(divisor).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(resources: serde_json::Value, sel: serde_json::Value, node: &Placement) -> String {
        let c: Container =
            serde_json::from_value(json!({"name": "c", "resources": resources})).unwrap();
        let sel: ResourceFieldSelector = serde_json::from_value(sel).unwrap();
        field_value(&c, &sel, node).unwrap()
    }

    #[test]
    fn divided_and_rounded_up_as_the_kubelet() {
        let r = json!({"limits": {"cpu": "500m", "memory": "128Mi", "ephemeral-storage": "1Gi"},
                       "requests": {"cpu": "250m", "memory": "100M"}});
        let none = Placement::default();
        let v = |sel| value(r.clone(), sel, &none);
        assert_eq!(v(json!({"resource": "limits.cpu"})), "1");
        assert_eq!(v(json!({"resource": "limits.cpu", "divisor": "1m"})), "500");
        assert_eq!(
            v(json!({"resource": "requests.cpu", "divisor": "1m"})),
            "250"
        );
        assert_eq!(
            v(json!({"resource": "requests.cpu", "divisor": "100m"})),
            "3"
        );
        assert_eq!(v(json!({"resource": "limits.memory"})), "134217728");
        assert_eq!(
            v(json!({"resource": "limits.memory", "divisor": "1Mi"})),
            "128"
        );
        assert_eq!(
            v(json!({"resource": "requests.memory", "divisor": "1Mi"})),
            "96"
        );
        assert_eq!(
            v(json!({"resource": "requests.memory", "divisor": "1k"})),
            "100000"
        );
        assert_eq!(
            v(json!({"resource": "limits.ephemeral-storage", "divisor": "1Gi"})),
            "1"
        );
    }

    #[test]
    fn unset_requests_are_limits_and_unset_limits_are_the_node() {
        let node = Placement {
            allocatable_cpu_millis: Some(4000),
            allocatable_memory_bytes: Some(8 << 30),
            ..Default::default()
        };
        let r = json!({"limits": {"memory": "64Mi"}});
        assert_eq!(
            value(
                r.clone(),
                json!({"resource": "requests.memory", "divisor": "1Mi"}),
                &node
            ),
            "64"
        );
        assert_eq!(
            value(r.clone(), json!({"resource": "limits.cpu"}), &node),
            "4"
        );
        assert_eq!(
            value(
                json!({}),
                json!({"resource": "limits.memory", "divisor": "1Gi"}),
                &node
            ),
            "8"
        );
        assert_eq!(
            value(json!({}), json!({"resource": "requests.cpu"}), &node),
            "0"
        );
        assert_eq!(
            value(
                json!({}),
                json!({"resource": "limits.cpu"}),
                &Placement::default()
            ),
            "0"
        );
    }

    #[test]
    fn unknown_resources_and_bad_divisors_are_errors() {
        let c: Container = serde_json::from_value(json!({"name": "c"})).unwrap();
        let sel = |v| serde_json::from_value::<ResourceFieldSelector>(v).unwrap();
        let none = Placement::default();
        let e = field_value(&c, &sel(json!({"resource": "limits.gpu"})), &none).unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
        let e = field_value(&c, &sel(json!({"resource": "cpu"})), &none).unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
        let e = field_value(
            &c,
            &sel(json!({"resource": "limits.cpu", "divisor": "0"})),
            &none,
        )
        .unwrap_err();
        assert!(e.to_string().contains("divisor"), "{e}");
    }
}
