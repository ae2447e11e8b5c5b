//! `rprof inspect`: what a profile file holds.

use std::fmt::Write;

use rprof_profile::{names, Profile};

use crate::{top, units};

pub fn report(p: &Profile) -> String {
    let mut s = String::new();
    let types: Vec<String> = p
        .sample_type
        .iter()
        .map(|t| format!("{}/{}", p.str(t.r#type), p.str(t.unit)))
        .collect();
    let _ = writeln!(s, "sample types: {}", types.join(", "));
    if p.default_sample_type != 0 {
        let _ = writeln!(s, "default sample type: {}", p.str(p.default_sample_type));
    }
    if let Some(pt) = p.period_type {
        let _ = writeln!(
            s,
            "period: {} {}/{}",
            p.period,
            p.str(pt.r#type),
            p.str(pt.unit)
        );
    }
    if p.time_nanos != 0 {
        let _ = writeln!(s, "time: {}", top::format_timestamp(p.time_nanos));
    }
    let _ = writeln!(
        s,
        "duration: {}",
        units::format_auto(p.duration_nanos, "nanoseconds")
    );
    let _ = writeln!(
        s,
        "samples: {}, locations: {}, functions: {}",
        p.sample.len(),
        p.location.len(),
        p.function.len()
    );
    let (locs, funcs) = (p.location_by_id(), p.function_by_id());
    for (label, frame) in [
        ("lost", names::LOST_SAMPLES_FRAME),
        ("truncated stacks", names::TRUNCATED_FRAME),
    ] {
        let mut totals = vec![0i64; p.sample_type.len()];
        for sample in &p.sample {
            if p.frames(sample, &locs, &funcs)
                .iter()
                .any(|f| f.function == frame)
            {
                for (t, v) in totals.iter_mut().zip(&sample.value) {
                    *t += v;
                }
            }
        }
        let parts: Vec<String> = totals
            .iter()
            .zip(&p.sample_type)
            .map(|(v, t)| {
                format!(
                    "{} {}",
                    units::format_auto(*v, p.str(t.unit)),
                    p.str(t.r#type)
                )
            })
            .collect();
        let _ = writeln!(s, "{label}: {}", parts.join(", "));
    }
    if let Some(c) = p.comments().iter().find(|c| c.starts_with("heap peak: ")) {
        let inuse: i64 = p
            .sample_type_index("inuse_space")
            .map_or(0, |i| p.sample.iter().map(|s| s.value[i]).sum());
        let after = c
            .split(") ")
            .nth(1)
            .map_or(String::new(), |a| format!(", {a}"));
        let _ = writeln!(
            s,
            "heap peak: {} in use at {}{after}",
            units::format_auto(inuse, "bytes"),
            top::format_timestamp(p.time_nanos)
        );
    }
    let _ = writeln!(s, "mappings:");
    for m in &p.mapping {
        let flags: String = [
            (m.has_functions, "F"),
            (m.has_filenames, "L"),
            (m.has_line_numbers, "N"),
            (m.has_inline_frames, "I"),
        ]
        .iter()
        .map(|(on, c)| if *on { *c } else { "-" })
        .collect();
        let build_id = p.str(m.build_id);
        let _ = writeln!(
            s,
            "  {:#x}-{:#x} +{:#x} [{flags}] {} build-id {}",
            m.memory_start,
            m.memory_limit,
            m.file_offset,
            p.str(m.filename),
            if build_id.is_empty() { "-" } else { build_id }
        );
    }
    let comments = p.comments();
    if !comments.is_empty() {
        let _ = writeln!(s, "comments:");
        for c in comments {
            let _ = writeln!(s, "  {c}");
        }
    }
    s
}
