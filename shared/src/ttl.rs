//! Durations as Vault accepts them: integer seconds (`3600`, `"3600"`) or Go
//! duration strings (`"1h30m"`, `"768h"`, `"1.5s"`, `"250ms"`).

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct TtlError {
    pub input: String,
    pub reason: &'static str,
}

/// Parses a duration the way Vault's `parseutil.ParseDurationSecond` does.
/// Negative durations are refused.
pub fn parse_duration(input: &str) -> Result<Duration, TtlError> {
    let err = |reason| TtlError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s.starts_with('-') {
        return Err(err("negative durations are not allowed"));
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("missing unit"))?;
        if num_len == 0 {
            return Err(err("expected a number"));
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err("bad number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(err("unknown unit")),
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    if !total.is_finite() || total > (u64::MAX / 2) as f64 {
        return Err(err("out of range"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses a JSON value holding a duration: a non-negative integer (seconds) or
/// a string. `null` means "not given".
pub fn parse_duration_value(v: &serde_json::Value) -> Result<Option<Duration>, TtlError> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(secs) => Ok(Some(Duration::from_secs(secs))),
            None => Err(TtlError {
                input: n.to_string(),
                reason: "must be a non-negative whole number of seconds",
            }),
        },
        serde_json::Value::String(s) => parse_duration(s).map(Some),
        other => Err(TtlError {
            input: other.to_string(),
            reason: "must be a number of seconds or a duration string",
        }),
    }
}

/// Formats seconds the way Vault prints durations in a few fields (`"0s"`, `"1h0m0s"`).
pub fn format_go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<u64>) {
        let got = parse_duration(input).ok().map(|d| d.as_millis() as u64);
        assert_eq!(got, expected, "{input}");
    }

    #[test]
    fn parses_like_vault() {
        check("0", Some(0));
        check("3600", Some(3_600_000));
        check("30s", Some(30_000));
        check("15m", Some(900_000));
        check("768h", Some(2_764_800_000));
        check("1h30m", Some(5_400_000));
        check("1.5s", Some(1_500));
        check("250ms", Some(250));
        check("2d", Some(172_800_000));
        check(" 10s ", Some(10_000));
        check("", None);
        check("-5s", None);
        check("5", Some(5_000));
        check("5x", None);
        check("h", None);
        check("1h-2m", None);
        check("abc", None);
        check("1e400h", None);
    }

    #[test]
    fn json_values() {
        use serde_json::json;
        assert_eq!(parse_duration_value(&json!(null)).unwrap(), None);
        assert_eq!(
            parse_duration_value(&json!(60)).unwrap(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_duration_value(&json!("1m")).unwrap(),
            Some(Duration::from_secs(60))
        );
        assert!(parse_duration_value(&json!(-1)).is_err());
        assert!(parse_duration_value(&json!(true)).is_err());
        assert!(parse_duration_value(&json!(1.5)).is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
        assert_eq!(format_go_duration(Duration::from_secs(59)), "59s");
        assert_eq!(format_go_duration(Duration::from_secs(3661)), "1h1m1s");
        assert_eq!(format_go_duration(Duration::from_secs(120)), "2m0s");
    }
}
