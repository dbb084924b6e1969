//! Byte sizes as the command lines take them (`2GiB`, `512M`, `3gb`).

/// Parses a byte size: a number with an optional unit (B, KB, MB, GB, KiB,
/// MiB, GiB, also K/M/G = binary), case-insensitive.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("{s:?} is not a byte size (try 2GiB)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown byte unit {other:?} in {s:?}")),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5 MiB"), Ok(1_572_864));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("3gb"), Ok(3_000_000_000));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("2XB").is_err());
        assert!(parse_bytes("0").is_err());
    }
}
