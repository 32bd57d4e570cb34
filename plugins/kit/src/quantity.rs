//! Kubernetes resource quantities (`500m`, `1.5`, `64Mi`, `1e3`) as numbers.
//!
//! Accepted: a non-negative decimal number, optionally in scientific notation,
//! followed by one of the decimal (`n`, `u`, `m`, `k`, `M`, `G`, `T`, `P`, `E`) or binary
//! (`Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`) suffixes.

/// A quantity that is not one of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {0:?}")]
pub struct InvalidQuantity(pub String);

/// A quantity as a number of base units (cores, bytes).
pub fn parse(q: &str) -> Result<f64, InvalidQuantity> {
    let invalid = || InvalidQuantity(q.to_string());
    let s = q.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let (num, suffix) = if let Some(exp) = suffix.strip_prefix(['e', 'E'])
        && !exp.is_empty()
        && exp
            .trim_start_matches(['+', '-'])
            .chars()
            .all(|c| c.is_ascii_digit())
    {
        (s, "") // scientific notation: let f64 parse the whole
    } else {
        (num, suffix)
    };
    let n: f64 = num.parse().map_err(|_| invalid())?;
    if n < 0.0 || !n.is_finite() {
        return Err(invalid());
    }
    let mult: f64 = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return Err(invalid()),
    };
    Ok(n * mult)
}

/// A quantity as a whole number of base units scaled by `scale` (1000 for CPU
/// millis, 1 for bytes), rounded up.
pub fn parse_scaled(q: &str, scale: f64) -> Result<u64, InvalidQuantity> {
    Ok((parse(q)? * scale - 1e-9).ceil().max(0.0) as u64)
}

/// CPU cores as nanocores (a container engine's `NanoCpus`), rounded.
pub fn nano_cpus(q: &str) -> Result<i64, InvalidQuantity> {
    Ok((parse(q)? * 1e9).round() as i64)
}

/// A quantity as whole base units (bytes), rounded up.
pub fn bytes(q: &str) -> Result<i64, InvalidQuantity> {
    Ok(parse(q)?.ceil() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_scaled("500m", 1000.0).unwrap(), 500);
        assert_eq!(parse_scaled("2", 1000.0).unwrap(), 2000);
        assert_eq!(parse_scaled("1.5", 1000.0).unwrap(), 1500);
        assert_eq!(parse_scaled("1Gi", 1.0).unwrap(), 1 << 30);
        assert_eq!(parse_scaled("128Mi", 1.0).unwrap(), 128 << 20);
        assert_eq!(parse_scaled("1G", 1.0).unwrap(), 1_000_000_000);
        assert_eq!(parse_scaled("1e3", 1.0).unwrap(), 1000);
        assert_eq!(parse_scaled("129M", 1.0).unwrap(), 129_000_000);
        assert!(parse_scaled("lots", 1.0).is_err());
        assert!(parse_scaled("1Zi", 1.0).is_err());
        assert!(parse_scaled("-1", 1.0).is_err());
    }

    #[test]
    fn engine_units() {
        assert_eq!(nano_cpus("500m"), Ok(500_000_000));
        assert_eq!(nano_cpus("2"), Ok(2_000_000_000));
        assert_eq!(nano_cpus("0.25"), Ok(250_000_000));
        assert_eq!(nano_cpus("100u"), Ok(100_000));
        assert_eq!(nano_cpus("7n"), Ok(7));
        assert_eq!(bytes("64Mi"), Ok(64 << 20));
        assert_eq!(bytes("1G"), Ok(1_000_000_000));
        assert_eq!(bytes("129e6"), Ok(129_000_000));
        assert_eq!(bytes("128974848"), Ok(128_974_848));
        assert!(bytes("12x").is_err());
        assert!(bytes("-1").is_err());
        assert!(bytes("").is_err());
    }

    #[test]
    fn errors_name_the_quantity() {
        assert_eq!(
            parse("12x").unwrap_err().to_string(),
            "invalid quantity \"12x\""
        );
    }
}
