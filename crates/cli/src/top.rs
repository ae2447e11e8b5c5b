//! The `top` table, as `go tool pprof -top` prints it: per function, flat (samples whose
//! leaf is the function) and cum (samples with the function anywhere on the stack, once
//! per sample), sorted by flat (or cum), with pprof's header and node dropping.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use rprof_profile::Profile;

use crate::units;

/// The sample index pprof would pick: `name` if given, else the profile's default sample
/// type, else the last one.
pub fn sample_index(p: &Profile, name: Option<&str>) -> Result<usize, String> {
    let names = p.sample_type_names();
    if names.is_empty() {
        return Err("the profile has no sample types".into());
    }
    match name {
        Some(n) => p.sample_type_index(n).ok_or_else(|| {
            format!(
                "unknown sample index {n:?}; this profile has: {}",
                names.join(", ")
            )
        }),
        None => Ok(p
            .sample_type_index(p.str(p.default_sample_type))
            .filter(|_| p.default_sample_type != 0)
            .unwrap_or(names.len() - 1)),
    }
}

/// When the chosen view of `p` holds nothing: a line saying which sample types have data
/// (and, for a heap profile whose in-use view is empty, where its peak file is).
pub fn empty_view_hint(
    p: &Profile,
    name: Option<&str>,
    files: &[&str],
) -> Result<Option<String>, String> {
    let idx = sample_index(p, name)?;
    let total = |i: usize| -> i64 {
        p.sample
            .iter()
            .map(|s| s.value.get(i).copied().unwrap_or(0).abs())
            .sum()
    };
    if total(idx) != 0 {
        return Ok(None);
    }
    let this = p.str(p.sample_type[idx].r#type);
    let with_data: Vec<&str> = (0..p.sample_type.len())
        .filter(|&i| total(i) != 0)
        .map(|i| p.str(p.sample_type[i].r#type))
        .collect();
    // Suggest a view in the same unit first (alloc_space for an empty inuse_space).
    let unit = p.sample_type[idx].unit;
    let alike = (0..p.sample_type.len())
        .filter(|&i| total(i) != 0)
        .find(|&i| p.sample_type[i].unit == unit)
        .map(|i| p.str(p.sample_type[i].r#type));
    let mut hint = match alike.or(with_data.first().copied()) {
        None => format!("the {this} view is empty: the profile holds no samples at all"),
        Some(first) => format!(
            "the {this} view is empty; {} {} data (--sample-index {first})",
            with_data.join(", "),
            if with_data.len() == 1 { "has" } else { "have" }
        ),
    };
    if this.starts_with("inuse") {
        let peaks: Vec<String> = files
            .iter()
            .filter(|f| f.contains(".heap.") && !f.contains(".heap-peak."))
            .map(|f| f.replacen(".heap.", ".heap-peak.", 1))
            .filter(|f| std::path::Path::new(f).exists())
            .collect();
        if !peaks.is_empty() {
            hint.push_str(&format!(
                "; what was in use at the peak is in {}",
                peaks.join(" ")
            ));
        }
    }
    Ok(Some(hint))
}

/// One function's row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub flat: i64,
    pub cum: i64,
    /// Reached from a caller as an inlined frame, and as a frame of its own: pprof labels a
    /// function reached only inlined `(inline)`, both ways `(partial-inline)`.
    pub inlined: (bool, bool),
}

impl Row {
    /// pprof's label after the name, with its leading space, or "".
    pub fn inline_label(&self) -> &'static str {
        match self.inlined {
            (true, true) => " (partial-inline)",
            (true, false) => " (inline)",
            _ => "",
        }
    }
}

/// Flat and cum per function for sample type `idx`; also the total.
pub fn rows(p: &Profile, idx: usize) -> (Vec<Row>, i64) {
    let (locs, funcs) = (p.location_by_id(), p.function_by_id());
    let mut flat: HashMap<String, i64> = HashMap::new();
    let mut cum: HashMap<String, i64> = HashMap::new();
    let mut inlined: HashMap<String, (bool, bool)> = HashMap::new();
    let mut total = 0;
    for s in &p.sample {
        let v = s.value.get(idx).copied().unwrap_or(0);
        total += v;
        let frames = p.frames(s, &locs, &funcs);
        let name = |f: &rprof_profile::Frame<'_>| f.display_name();
        if let Some(leaf) = frames.first() {
            *flat.entry(name(leaf)).or_default() += v;
        }
        let mut seen = HashSet::new();
        for f in &frames {
            let n = name(f);
            if seen.insert(n.clone()) {
                *cum.entry(n).or_default() += v;
            }
        }
        // As pprof's graph: each edge from a caller to a frame, once per sample, is inline
        // when that frame was inlined into its caller.
        let mut edges = HashSet::new();
        for pair in frames.windows(2) {
            let (callee, caller) = (name(&pair[0]), name(&pair[1]));
            if callee != caller && edges.insert((callee.clone(), caller)) {
                let e = inlined.entry(callee).or_insert((false, false));
                if pair[0].inlined {
                    e.0 = true;
                } else {
                    e.1 = true;
                }
            }
        }
    }
    let mut rows: Vec<Row> = cum
        .into_iter()
        .map(|(name, cum)| Row {
            flat: flat.get(&name).copied().unwrap_or(0),
            inlined: inlined.get(&name).copied().unwrap_or_default(),
            name,
            cum,
        })
        .collect();
    sort_by_flat(&mut rows);
    (rows, total)
}

pub struct TopOptions<'a> {
    pub sample_index: Option<&'a str>,
    pub limit: Option<usize>,
    pub by_cum: bool,
}

/// The whole `top` report as text.
pub fn report(p: &Profile, file: &str, o: &TopOptions<'_>) -> Result<String, String> {
    let idx = sample_index(p, o.sample_index)?;
    let unit = p.str(p.sample_type[idx].unit).to_owned();
    let (mut rows, total) = rows(p, idx);
    if o.by_cum {
        rows.sort_by(|a, b| b.cum.abs().cmp(&a.cum.abs()).then(a.name.cmp(&b.name)));
    }
    let dropped = drop_small(&mut rows);
    let shown_rows: Vec<&Row> = rows.iter().take(o.limit.unwrap_or(usize::MAX)).collect();
    let fmt = formatter(shown_rows.iter().copied(), total, &unit);

    let mut s = String::new();
    // As pprof: the main binary's name (the first mapping), else the file's.
    match p.mapping.first() {
        Some(m) if m.filename != 0 => {
            let name = p.str(m.filename);
            let _ = writeln!(s, "File: {}", name.rsplit('/').next().unwrap_or(name));
            if m.build_id != 0 {
                let _ = writeln!(s, "Build ID: {}", p.str(m.build_id));
            }
        }
        _ => {
            let _ = writeln!(s, "File: {file}");
        }
    }
    let _ = writeln!(s, "Type: {}", p.str(p.sample_type[idx].r#type));
    if p.time_nanos != 0 {
        let _ = writeln!(s, "Time: {}", format_time(p.time_nanos));
    }
    let total_label = fmt(total);
    if p.duration_nanos != 0 {
        let duration = units::format_auto(p.duration_nanos, "nanoseconds");
        let pct = if unit == "nanoseconds" {
            format!(" ({})", units::percent(total, p.duration_nanos))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "Duration: {duration}, Total samples = {total_label}{pct}"
        );
    }
    let shown: i64 = shown_rows.iter().map(|r| r.flat).sum();
    let _ = writeln!(
        s,
        "Showing nodes accounting for {}, {} of {} total",
        fmt(shown),
        units::percent(shown, total).trim(),
        fmt(total)
    );
    if dropped > 0 {
        let _ = writeln!(
            s,
            "Dropped {dropped} nodes (cum <= {})",
            fmt(node_cutoff(total))
        );
    }
    if shown_rows.len() < rows.len() {
        let _ = writeln!(
            s,
            "Showing top {} nodes out of {}",
            shown_rows.len(),
            rows.len()
        );
    }
    write_table(&mut s, shown_rows, total, &fmt);
    Ok(s)
}

/// pprof's header time, "Nov 26, 2026 at 10:34am (UTC)".
pub fn format_time(nanos: i64) -> String {
    let (year, month, day, secs) = civil(nanos);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (h, m) = (secs / 3600, secs % 3600 / 60);
    let (h12, ampm) = match h {
        0 => (12, "am"),
        1..=11 => (h, "am"),
        12 => (12, "pm"),
        _ => (h - 12, "pm"),
    };
    format!(
        "{} {day}, {year} at {h12}:{m:02}{ampm} (UTC)",
        MONTHS[(month - 1) as usize]
    )
}

/// Drops rows as pprof's `newTrimmedGraph` drops nodes: those whose |cum| is below 0.5 %
/// of the sum of every row's flat (the total, or in a diff the net change); returns how
/// many.
pub fn drop_small(rows: &mut Vec<Row>) -> usize {
    let cutoff = node_cutoff(rows.iter().map(|r| r.flat).sum());
    let all = rows.len();
    rows.retain(|r| r.cum.abs() >= cutoff);
    all - rows.len()
}

/// 0.5 % of `total`, pprof's default node fraction.
pub fn node_cutoff(total: i64) -> i64 {
    (total.abs() as f64 * 0.005) as i64
}

/// pprof's FlatNameOrder: |flat| descending, then name.
pub fn sort_by_flat(rows: &mut [Row]) {
    rows.sort_by(|a, b| b.flat.abs().cmp(&a.flat.abs()).then(a.name.cmp(&b.name)));
}

/// Formats values in the one unit pprof would pick for these rows of a report whose
/// total is `total`.
pub fn formatter<'a>(
    rows: impl Iterator<Item = &'a Row>,
    total: i64,
    unit: &str,
) -> Box<dyn Fn(i64) -> String> {
    let min = rows
        .map(|r| {
            if r.flat != 0 {
                r.flat.abs()
            } else {
                r.cum.abs()
            }
        })
        .filter(|&v| v > 0)
        .min()
        .unwrap_or(0);
    let out_unit = units::report_unit(min, total, unit);
    let unit = unit.to_owned();
    Box::new(move |v| units::format(v, &unit, out_unit))
}

/// The column header and one line per row, as pprof prints them; percentages of `total`,
/// absolute values as pprof's (a negative row of a diff shows `12.50%`, its value `-5ms`).
pub fn write_table<'a>(
    s: &mut String,
    rows: impl IntoIterator<Item = &'a Row>,
    total: i64,
    fmt: &dyn Fn(i64) -> String,
) {
    let pct = |v: i64| units::percent(v, total);
    let _ = writeln!(
        s,
        "{:>10} {:>6} {:>6} {:>10} {:>6}",
        "flat", "flat%", "sum%", "cum", "cum%"
    );
    let mut sum = 0;
    for r in rows {
        sum += r.flat;
        let _ = writeln!(
            s,
            "{:>10} {} {} {:>10} {}  {}{}",
            fmt(r.flat),
            pct(r.flat),
            pct(sum),
            fmt(r.cum),
            pct(r.cum),
            r.name,
            r.inline_label()
        );
    }
}

/// "2026-11-26 10:34:01 UTC".
pub fn format_timestamp(nanos: i64) -> String {
    let (year, month, day, secs) = civil(nanos);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// (year, month, day, seconds into the day) of Unix nanoseconds, in UTC (Howard Hinnant's
/// civil-from-days; no time-zone database).
fn civil(nanos: i64) -> (i64, i64, i64, i64) {
    let secs = nanos.div_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rprof_profile::{Builder, LineInfo};

    fn line(f: &str) -> LineInfo {
        LineInfo {
            function: f.into(),
            ..LineInfo::default()
        }
    }

    /// As pprof: a function reached only as an inlined frame is `(inline)`, one reached
    /// both ways `(partial-inline)`, one never inlined has no label.
    #[test]
    fn inline_labels() {
        let mut b = Builder::new(&[("samples", "count")], ("samples", "count"), 1);
        // helper inlined into outer at one place, called at another; inl only inlined.
        let inlined = b.location(1, 0, &[line("helper"), line("inl"), line("outer")]);
        let called = b.location(2, 0, &[line("helper")]);
        let outer = b.location(3, 0, &[line("outer")]);
        b.add_sample(vec![inlined], vec![1], &[], &[]);
        b.add_sample(vec![called, outer], vec![1], &[], &[]);
        let (rows, _) = rows(&b.finish(), 0);
        let label = |n: &str| rows.iter().find(|r| r.name == n).unwrap().inline_label();
        assert_eq!(label("helper"), " (partial-inline)");
        assert_eq!(label("inl"), " (inline)");
        assert_eq!(label("outer"), "");
    }

    #[test]
    fn flat_and_cum() {
        let mut b = Builder::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            10_000_000,
        );
        let (a, bb, main) = (
            b.location(1, 0, &[line("a")]),
            b.location(2, 0, &[line("b")]),
            b.location(3, 0, &[line("main")]),
        );
        b.add_sample(vec![a, bb, main], vec![3, 30_000_000], &[], &[]);
        b.add_sample(vec![bb, main], vec![1, 10_000_000], &[], &[]);
        let p = b.finish();
        let (rows, total) = rows(&p, 1);
        assert_eq!(total, 40_000_000);
        assert_eq!(
            rows[0],
            Row {
                name: "a".into(),
                flat: 30_000_000,
                cum: 30_000_000,
                inlined: (false, true)
            }
        );
        assert_eq!(
            rows[1],
            Row {
                name: "b".into(),
                flat: 10_000_000,
                cum: 40_000_000,
                inlined: (false, true)
            }
        );
        assert_eq!(
            rows[2],
            Row {
                name: "main".into(),
                flat: 0,
                cum: 40_000_000,
                inlined: (false, false)
            }
        );
        let text = report(
            &p,
            "x",
            &TopOptions {
                sample_index: None,
                limit: None,
                by_cum: false,
            },
        )
        .unwrap();
        assert!(
            text.contains("      30ms 75.00% 75.00%       30ms 75.00%  a\n"),
            "{text}"
        );
        assert!(sample_index(&p, Some("bogus"))
            .unwrap_err()
            .contains("samples, cpu"));
    }

    /// The share of the duration is padded as pprof pads it: `(  100%)`, `( 5.00%)`.
    #[test]
    fn duration_line_as_pprof() {
        let mut b = Builder::new(
            &[("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            10_000_000,
        );
        let a = b.location(1, 0, &[line("a")]);
        b.add_sample(vec![a], vec![40_000_000], &[], &[]);
        let mut p = b.finish();
        let o = TopOptions {
            sample_index: None,
            limit: None,
            by_cum: false,
        };
        let duration_line = |p: &Profile| {
            report(p, "x", &o)
                .unwrap()
                .lines()
                .find(|l| l.starts_with("Duration:"))
                .map(str::to_owned)
        };
        p.duration_nanos = 40_010_000;
        assert_eq!(
            duration_line(&p).as_deref(),
            Some("Duration: 40.01ms, Total samples = 40ms (  100%)")
        );
        p.duration_nanos = 800_000_000;
        assert_eq!(
            duration_line(&p).as_deref(),
            Some("Duration: 800ms, Total samples = 40ms ( 5.00%)")
        );
    }

    #[test]
    fn times() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            format_timestamp(1_795_689_241_000_000_000),
            "2026-11-26 10:34:01 UTC"
        );
        assert_eq!(
            format_time(1_795_689_241_000_000_000),
            "Nov 26, 2026 at 10:34am (UTC)"
        );
        assert_eq!(
            format_time(1_795_732_441_000_000_000),
            "Nov 26, 2026 at 10:34pm (UTC)"
        );
    }
}
