//! Value formatting as google/pprof's internal/measurement does it: bytes in B/kB/MB/GB
//! (powers of 1024), time in ns/us/ms/s/hrs, counts as plain numbers; two decimals with
//! ".00" dropped; percentages with at least two significant digits.

/// (unit name, factor relative to the base unit) for a profile unit, or None for counts.
fn unit_table(unit: &str) -> Option<&'static [(&'static str, f64)]> {
    const BYTES: &[(&str, f64)] = &[
        ("B", 1.0),
        ("kB", 1024.0),
        ("MB", 1048576.0),
        ("GB", 1073741824.0),
        ("TB", 1099511627776.0),
    ];
    const TIME: &[(&str, f64)] = &[
        ("ns", 1.0),
        ("us", 1e3),
        ("ms", 1e6),
        ("s", 1e9),
        ("hrs", 3.6e12),
    ];
    match unit {
        "bytes" | "byte" | "B" => Some(BYTES),
        "nanoseconds" | "nanosecond" | "ns" => Some(TIME),
        _ => None,
    }
}

/// The largest unit in which `value` (in the profile's unit) is at least 1.
pub fn auto_unit(value: i64, unit: &str) -> Option<&'static str> {
    let table = unit_table(unit)?;
    let v = value.unsigned_abs() as f64;
    Some(
        table
            .iter()
            .rev()
            .find(|(_, f)| v / f >= 1.0)
            .map_or(table[0].0, |(n, _)| n),
    )
}

/// pprof's choice of one output unit for a report (`selectOutputUnit`): `min` is the
/// smallest value shown (each row's flat, or its cum where flat is 0), `max` the report's
/// total. The unit of the smallest, or of 100 × the smallest when the total needs a bigger
/// unit and is over 100 times the smallest.
pub fn report_unit(min: i64, max: i64, unit: &str) -> Option<&'static str> {
    let max = max.abs();
    let min = if min == 0 { max } else { min.abs() };
    let (min_u, max_u) = (auto_unit(min, unit), auto_unit(max, unit));
    if min_u != max_u && min * 100 < max {
        auto_unit(min * 100, unit)
    } else {
        min_u
    }
}

/// Formats `value` (in the profile's `unit`) in `out` (None: a plain count).
pub fn format(value: i64, unit: &str, out: Option<&str>) -> String {
    let (Some(table), Some(out)) = (unit_table(unit), out) else {
        return value.to_string();
    };
    let factor = table
        .iter()
        .find(|(n, _)| *n == out)
        .map_or(1.0, |(_, f)| *f);
    let s = format!("{:.2}", value as f64 / factor);
    let s = s.strip_suffix(".00").unwrap_or(&s).to_owned();
    if s == "0" || s == "-0" {
        "0".to_owned()
    } else {
        s + out
    }
}

/// Formats `value` in the unit that suits it alone.
pub fn format_auto(value: i64, unit: &str) -> String {
    format(value, unit, auto_unit(value, unit))
}

/// pprof's percentage: "  100%", "52.31%", or two significant digits below 1%.
pub fn percent(value: i64, total: i64) -> String {
    let r = if total == 0 {
        0.0
    } else {
        (value as f64 / total as f64).abs() * 100.0
    };
    if (99.95..=100.05).contains(&r) {
        "  100%".to_owned()
    } else if r >= 1.0 {
        format!("{r:5.2}%")
    } else {
        format!("{:>5}%", format_g2(r))
    }
}

/// Go's %.2g for small non-negative numbers.
fn format_g2(r: f64) -> String {
    if r == 0.0 {
        return "0".to_owned();
    }
    let exp = r.log10().floor() as i32;
    if exp < -4 {
        return format!("{r:.1e}").replace("e-", "e-0");
    }
    let decimals = (1 - exp).max(0) as usize;
    let s = format!("{r:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_pprof() {
        assert_eq!(format(520_000_000, "nanoseconds", Some("ms")), "520ms");
        assert_eq!(format(2_177_000_000, "nanoseconds", Some("ms")), "2177ms");
        assert_eq!(format(1_125_000_000, "nanoseconds", Some("s")), "1.12s");
        assert_eq!(format(0, "nanoseconds", Some("ms")), "0");
        assert_eq!(format(64 << 20, "bytes", Some("MB")), "64MB");
        assert_eq!(format(1536, "bytes", Some("kB")), "1.50kB");
        assert_eq!(format(42, "count", None), "42");
        assert_eq!(format_auto(10_000_000, "nanoseconds"), "10ms");
        // As pprof: the smallest value's unit, unless the largest needs a bigger one and
        // is over 100 times the smallest.
        assert_eq!(
            report_unit(10_000_000, 2_000_000_000, "nanoseconds"),
            Some("s")
        );
        assert_eq!(
            report_unit(10_000_000, 500_000_000, "nanoseconds"),
            Some("ms")
        );
        assert_eq!(
            report_unit(1_000_000_000, 2_000_000_000, "nanoseconds"),
            Some("s")
        );
        // The total counts: 128 kB beside a total of 75 MB is shown as 0.12MB.
        assert_eq!(report_unit(128 << 10, 75 << 20, "bytes"), Some("MB"));
        assert_eq!(report_unit(0, 75 << 20, "bytes"), Some("MB"));
        assert_eq!(percent(1, 1), "  100%");
        assert_eq!(percent(5231, 10000), "52.31%");
        assert_eq!(percent(5, 1000), "  0.5%");
        assert_eq!(percent(12, 10000), " 0.12%");
        assert_eq!(percent(0, 10), "    0%");
    }
}
