//! Durations (`"5m"`, `"1m30s"`, `"250ms"`) and sizes (`"64MiB"`) as written in `runner.toml`.

use std::time::Duration;

/// The longest duration `runner.toml` accepts anywhere: a year (8760h).
/// Longer is surely a typo, and deadlines `now + duration` must stay far
/// from the clock's limits.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The largest size `runner.toml` accepts anywhere: 1 TiB. Keys may allow
/// less (a plugin's memory, a WebSocket message).
pub const MAX_SIZE: u64 = 1 << 40;

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"1h"`, or a sequence such as
/// `"1m30s"`; at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; write for example \"30s\" or \"5m\"".into());
    }
    let too_long = || {
        format!(
            "`{text}` is too long; at most {} (a year)",
            format_duration(MAX_DURATION)
        )
    };
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration; write for example \"30s\" or \"5m\""
            ));
        }
        // A number too large for u64 is certainly too long.
        let number: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => {
                return Err(format!(
                    "`{text}` has no unit; write for example \"{number}s\""
                ));
            }
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}` (use ms, s, m or h)"
                ));
            }
        };
        total = number
            .checked_mul(millis_per_unit)
            .map(Duration::from_millis)
            .and_then(|part| total.checked_add(part))
            .filter(|total| *total <= MAX_DURATION)
            .ok_or_else(too_long)?;
    }
    if total.is_zero() {
        return Err(format!(
            "`{text}` is zero; a timeout must be longer than that"
        ));
    }
    Ok(total)
}

/// Parses `"64MiB"`, `"1GiB"`, `"512KiB"`, `"100MB"` or a number of bytes;
/// at most [`MAX_SIZE`].
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return Err(format!(
            "`{text}` is not a size; write for example \"64MiB\""
        ));
    }
    let too_large = || format!("`{text}` is too large; at most {}", format_size(MAX_SIZE));
    let number: u64 = text[..digits].parse().map_err(|_| too_large())?;
    let factor: u64 = match text[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use KiB, MiB or GiB)"
            ));
        }
    };
    number
        .checked_mul(factor)
        .filter(|bytes| *bytes <= MAX_SIZE)
        .ok_or_else(too_large)
}

/// Formats a duration the way `runner.toml` writes it: `8760h`, `90s`, `250ms`.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        ms if ms >= 3_600_000 && ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms >= 60_000 && ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// A time that passed, at a glance: `250ms`, `1.5s`, `2m`. Unlike
/// [`format_duration`], it rounds to a tenth of a second from 1s on.
pub fn format_elapsed(duration: Duration) -> String {
    match duration.as_millis() {
        ms if ms < 1000 => format!("{ms}ms"),
        ms if ms % 1000 != 0 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format_duration(duration),
    }
}

/// Formats a byte count the way people read it: `64 MiB`.
pub fn format_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 40 && b % (1 << 40) == 0 => format!("{} TiB", b >> 40),
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// A size at a glance, in decimal units with one decimal: `18.4 MB`, `312.0 KB`, `900 B`.
pub fn format_size_rounded(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} KB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

/// `4 MiB`, `25 KiB`, or `1000 bytes`: never rounded.
pub fn format_size_exact(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_durations_people_write() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn refuses_durations_without_units_or_with_unknown_ones() {
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(
            parse_duration("3 days")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_duration("0s").unwrap_err().contains("zero"));
    }

    #[test]
    fn reads_sizes_in_binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert_eq!(format_size(64 << 20), "64 MiB");
        assert_eq!(format_size_rounded(18_400_000), "18.4 MB");
        assert_eq!(format_size_rounded(312_049), "312.0 KB");
        assert_eq!(format_size_rounded(900), "900 B");
        assert_eq!(format_size(1 << 40), "1 TiB");
    }

    #[test]
    fn refuses_durations_longer_than_a_year_without_overflowing() {
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("8759h60m"), Ok(MAX_DURATION));
        for text in [
            "8760h1ms",
            "8761h",
            "18446744073709551615s",
            "18446744073709551615h",
            "99999999999999999999999s",
            "18446744073709551615ms18446744073709551615ms",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("too long; at most 8760h"), "{text}: {err}");
        }
    }

    #[test]
    fn refuses_sizes_larger_than_a_tebibyte_without_overflowing() {
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        for text in [
            "1025GiB",
            "18446744073709551615GiB",
            "99999999999999999999999",
        ] {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains("too large; at most 1 TiB"), "{text}: {err}");
        }
    }

    #[test]
    fn formats_durations_as_they_are_written() {
        assert_eq!(format_duration(MAX_DURATION), "8760h");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_elapsed(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_elapsed(Duration::from_millis(250)), "250ms");
        assert_eq!(format_elapsed(Duration::from_secs(120)), "2m");
        assert_eq!(format_elapsed(Duration::from_secs(7200)), "2h");
        assert_eq!(format_elapsed(Duration::from_millis(61_500)), "61.5s");
    }
}
