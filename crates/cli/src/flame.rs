//! `rprof flame`: an interactive SVG flame graph (root at the bottom, hover titles with
//! value and percentage) drawn by inferno from the profile's stacks.

use std::collections::BTreeMap;

use rprof_profile::Profile;

use crate::top::sample_index;

/// Folded stacks ("root;…;leaf value"), one line per distinct stack, for sample type `idx`.
pub fn folded(p: &Profile, idx: usize) -> Vec<String> {
    let (locs, funcs) = (p.location_by_id(), p.function_by_id());
    let mut stacks: BTreeMap<String, i64> = BTreeMap::new();
    for s in &p.sample {
        let v = s.value.get(idx).copied().unwrap_or(0);
        if v <= 0 {
            continue;
        }
        let names: Vec<String> = p
            .frames(s, &locs, &funcs)
            .iter()
            .rev()
            // ';' separates frames and a trailing number is the count: keep names clean.
            .map(|f| f.display_name().replace(';', ":"))
            .collect();
        *stacks.entry(names.join(";")).or_default() += v;
    }
    stacks
        .into_iter()
        .map(|(stack, v)| format!("{stack} {v}"))
        .collect()
}

/// The SVG of the flame graph of `p` for `sample_index` (or the default sample type).
pub fn svg(p: &Profile, index: Option<&str>, title: &str) -> Result<Vec<u8>, String> {
    let idx = sample_index(p, index)?;
    let ty = p.str(p.sample_type[idx].r#type).to_owned();
    let unit = p.str(p.sample_type[idx].unit).to_owned();
    let lines = folded(p, idx);
    if lines.is_empty() {
        return Err(format!("the profile has no {ty} samples to draw"));
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_owned();
    opts.subtitle = Some(format!("{ty} ({unit})"));
    opts.count_name = unit;
    opts.deterministic = true;
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut out)
        .map_err(|e| format!("drawing the flame graph: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rprof_profile::{Builder, LineInfo};

    #[test]
    fn folds_root_first_and_sums() {
        let mut b = Builder::new(&[("samples", "count")], ("samples", "count"), 1);
        let line = |f: &str| LineInfo {
            function: f.into(),
            ..LineInfo::default()
        };
        let (leaf, main) = (
            b.location(1, 0, &[line("a;b")]),
            b.location(2, 0, &[line("main")]),
        );
        b.add_sample(vec![leaf, main], vec![2], &[], &[]);
        b.add_sample(vec![leaf, main], vec![3], &[], &[]);
        b.add_sample(vec![main], vec![1], &[], &[]);
        let p = b.finish();
        assert_eq!(folded(&p, 0), ["main 1", "main;a:b 5"]);
        let svg = String::from_utf8(svg(&p, None, "t").unwrap()).unwrap();
        assert!(
            svg.starts_with("<?xml") && svg.contains("main") && svg.trim_end().ends_with("</svg>")
        );
    }
}
