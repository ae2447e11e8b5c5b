//! The difference of two profiles of the same kind taken from the same process: Go's
//! delta profiles (`/debug/pprof/heap?seconds=N` subtracts the profile at the start of the
//! window from the one at its end).

use std::collections::HashMap;

use crate::proto::{Profile, Sample};

/// What identifies a sample across two separately built profiles: each frame's address and
/// function names (ids differ between builds), and its labels as strings.
fn keys(p: &Profile) -> Vec<Vec<String>> {
    let locs = p.location_by_id();
    let funcs = p.function_by_id();
    p.sample
        .iter()
        .map(|s| sample_key(p, s, &locs, &funcs))
        .collect()
}

fn sample_key(
    p: &Profile,
    s: &Sample,
    locs: &HashMap<u64, &crate::proto::Location>,
    funcs: &HashMap<u64, &crate::proto::Function>,
) -> Vec<String> {
    let mut key = Vec::with_capacity(s.location_id.len() + s.label.len());
    for id in &s.location_id {
        let Some(l) = locs.get(id) else {
            key.push(String::new());
            continue;
        };
        let mut k = format!("{:x}", l.address);
        for line in &l.line {
            if let Some(f) = funcs.get(&line.function_id) {
                k.push(' ');
                k.push_str(p.str(f.name));
            }
        }
        key.push(k);
    }
    for l in &s.label {
        key.push(format!("{}={}:{}", p.str(l.key), p.str(l.str), l.num));
    }
    key
}

/// `after` minus `before`: every value of each sample less the same sample's in `before`;
/// samples left all zero are dropped. Samples only in `before` (which cumulative profiles
/// do not have) are left out. The time is `after`'s, the duration the span between them.
pub fn subtract(after: Profile, before: &Profile) -> Profile {
    subtract_keeping(after, before, &[])
}

/// [`subtract`], except that the sample types named in `keep` are left as they stand in
/// `after` (a heap window: `alloc_*` are the window's, `inuse_*` what is live at its end,
/// as Pyroscope's godeltaprof sends them).
pub fn subtract_keeping(mut after: Profile, before: &Profile, keep: &[&str]) -> Profile {
    let kept: Vec<bool> = after
        .sample_type
        .iter()
        .map(|t| keep.contains(&after.str(t.r#type)))
        .collect();
    let mut old: HashMap<Vec<String>, Vec<i64>> = HashMap::new();
    for (k, s) in keys(before).into_iter().zip(&before.sample) {
        let v = old.entry(k).or_insert_with(|| vec![0; s.value.len()]);
        for (a, b) in v.iter_mut().zip(&s.value) {
            *a += b;
        }
    }
    let new_keys = keys(&after);
    let samples = std::mem::take(&mut after.sample);
    for (k, mut s) in new_keys.into_iter().zip(samples) {
        if let Some(v) = old.get_mut(&k) {
            for ((a, b), keep) in s.value.iter_mut().zip(v.iter_mut()).zip(&kept) {
                // A key seen twice in `after` is subtracted once.
                let b = std::mem::take(b);
                if !keep {
                    *a -= b;
                }
            }
        }
        if s.value.iter().any(|&v| v != 0) {
            after.sample.push(s);
        }
    }
    after.duration_nanos = (after.time_nanos - before.time_nanos).max(0);
    after.time_nanos = before.time_nanos;
    after
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Builder, LineInfo};

    fn profile(time: i64, samples: &[(&str, i64)]) -> Profile {
        let mut b = Builder::new(&[("alloc_objects", "count")], ("space", "bytes"), 1);
        b.set_time(time, 0);
        for (i, &(name, v)) in samples.iter().enumerate() {
            let line = LineInfo {
                function: name.into(),
                system_name: name.into(),
                filename: "f.c".into(),
                line: 1,
            };
            // Different builds number locations differently: insert in another order.
            let _ = i;
            let loc = b.location(0x1000 + name.len() as u64, 0, &[line]);
            b.add_sample(vec![loc], vec![v], &[], &[]);
        }
        b.finish()
    }

    #[test]
    fn keeps_only_what_changed() {
        let before = profile(100, &[("a", 5), ("bb", 7)]);
        let after = profile(350, &[("bb", 9), ("a", 5), ("ccc", 2)]);
        let d = subtract(after, &before);
        let locs = d.location_by_id();
        let funcs = d.function_by_id();
        let mut got: Vec<(String, i64)> = d
            .sample
            .iter()
            .map(|s| {
                let f = d.frames(s, &locs, &funcs);
                (f[0].function.to_string(), s.value[0])
            })
            .collect();
        got.sort();
        assert_eq!(got, vec![("bb".into(), 2), ("ccc".into(), 2)]);
        assert_eq!((d.time_nanos, d.duration_nanos), (100, 250));
        crate::check_valid(&d).unwrap();
    }

    #[test]
    fn keeps_the_types_asked_for() {
        let before = profile(100, &[("a", 5), ("bb", 7)]);
        let after = profile(350, &[("bb", 9), ("a", 5)]);
        let d = subtract_keeping(after, &before, &["alloc_objects"]);
        let mut got: Vec<i64> = d.sample.iter().map(|s| s.value[0]).collect();
        got.sort();
        assert_eq!(got, vec![5, 9]);
    }
}
