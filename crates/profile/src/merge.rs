//! Several profiles as one, as `pprof` merges the files it is given: the sample types (and
//! period type) must be the same; the time is the earliest, the duration the sum, the
//! period the largest; comments once each; mappings of one object are one mapping.

use std::collections::HashMap;

use crate::proto::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};

/// What makes two mappings the same object (google/pprof's mapping key): the size rounded
/// up to 4 KiB, the file offset, and the build id, else the file name.
fn mapping_key(p: &Profile, m: &Mapping) -> (u64, u64, String) {
    let size = (m.memory_limit.saturating_sub(m.memory_start) + 0xfff) & !0xfff;
    let id = match (p.str(m.build_id), p.str(m.filename)) {
        ("", file) => file.to_owned(),
        (build_id, _) => build_id.to_owned(),
    };
    (size, m.file_offset, id)
}

/// "type/unit" of each sample type, and of the period type.
fn shape(p: &Profile) -> (Vec<String>, String) {
    let vt = |t: &ValueType| format!("{}/{}", p.str(t.r#type), p.str(t.unit));
    (
        p.sample_type.iter().map(vt).collect(),
        p.period_type.as_ref().map(vt).unwrap_or_default(),
    )
}

/// Merges `profiles` (named by `names` in errors). One profile is returned as it is.
pub fn merge(mut profiles: Vec<Profile>, names: &[&str]) -> Result<Profile, String> {
    if profiles.len() <= 1 {
        return profiles
            .pop()
            .ok_or_else(|| "no profile to merge".to_owned());
    }
    let first = shape(&profiles[0]);
    for (p, name) in profiles.iter().zip(names).skip(1) {
        let this = shape(p);
        if this != first {
            return Err(format!(
                "{name} has sample types {} where {} has {}: only profiles of one kind merge",
                this.0.join(", "),
                names[0],
                first.0.join(", ")
            ));
        }
    }
    let mut out = Merged::default();
    out.p.string_table.push(String::new());
    let head = &profiles[0];
    out.p.sample_type = head
        .sample_type
        .iter()
        .map(|t| ValueType {
            r#type: out.string(head.str(t.r#type)),
            unit: out.string(head.str(t.unit)),
        })
        .collect();
    out.p.period_type = head.period_type.as_ref().map(|t| ValueType {
        r#type: out.string(head.str(t.r#type)),
        unit: out.string(head.str(t.unit)),
    });
    for p in &profiles {
        out.add(p);
    }
    Ok(out.p)
}

#[derive(Default)]
struct Merged {
    p: Profile,
    strings: HashMap<String, i64>,
    mappings: HashMap<(u64, u64, String), u64>,
    comments: Vec<String>,
}

impl Merged {
    fn string(&mut self, s: &str) -> i64 {
        if s.is_empty() {
            return 0;
        }
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.p.string_table.len() as i64;
        self.p.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    fn add(&mut self, src: &Profile) {
        if src.time_nanos != 0 && (self.p.time_nanos == 0 || src.time_nanos < self.p.time_nanos) {
            self.p.time_nanos = src.time_nanos;
        }
        self.p.duration_nanos += src.duration_nanos;
        self.p.period = self.p.period.max(src.period);
        if self.p.default_sample_type == 0 && src.default_sample_type != 0 {
            self.p.default_sample_type = self.string(src.str(src.default_sample_type));
        }
        for c in src.comments() {
            if !self.comments.iter().any(|k| k == c) {
                self.comments.push(c.to_owned());
                let i = self.string(c);
                self.p.comment.push(i);
            }
        }
        let mut mapping_ids = HashMap::new();
        for m in &src.mapping {
            let key = mapping_key(src, m);
            let id = match self.mappings.get(&key) {
                Some(&id) => id,
                None => {
                    let id = self.p.mapping.len() as u64 + 1;
                    let mapping = Mapping {
                        id,
                        filename: self.string(src.str(m.filename)),
                        build_id: self.string(src.str(m.build_id)),
                        ..m.clone()
                    };
                    self.p.mapping.push(mapping);
                    self.mappings.insert(key, id);
                    id
                }
            };
            mapping_ids.insert(m.id, id);
        }
        // Functions and locations are renumbered, not deduplicated: reports fold by name.
        let fn_base = self.p.function.len() as u64;
        let mut function_ids = HashMap::new();
        for (k, f) in src.function.iter().enumerate() {
            let id = fn_base + k as u64 + 1;
            function_ids.insert(f.id, id);
            let function = Function {
                id,
                name: self.string(src.str(f.name)),
                system_name: self.string(src.str(f.system_name)),
                filename: self.string(src.str(f.filename)),
                start_line: f.start_line,
            };
            self.p.function.push(function);
        }
        let loc_base = self.p.location.len() as u64;
        let mut location_ids = HashMap::new();
        for (k, l) in src.location.iter().enumerate() {
            let id = loc_base + k as u64 + 1;
            location_ids.insert(l.id, id);
            self.p.location.push(Location {
                id,
                mapping_id: mapping_ids.get(&l.mapping_id).copied().unwrap_or(0),
                address: l.address,
                line: l
                    .line
                    .iter()
                    .map(|line| Line {
                        function_id: function_ids.get(&line.function_id).copied().unwrap_or(0),
                        ..line.clone()
                    })
                    .collect(),
                is_folded: l.is_folded,
            });
        }
        for s in &src.sample {
            let label = s
                .label
                .iter()
                .map(|l| Label {
                    key: self.string(src.str(l.key)),
                    str: self.string(src.str(l.str)),
                    num: l.num,
                    num_unit: self.string(src.str(l.num_unit)),
                })
                .collect();
            self.p.sample.push(Sample {
                location_id: s
                    .location_id
                    .iter()
                    .filter_map(|id| location_ids.get(id).copied())
                    .collect(),
                value: s.value.clone(),
                label,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Builder, LineInfo, MappingInfo};

    fn one(f: &str, v: i64, time: i64, comment: &str) -> Profile {
        let mut b = Builder::new(&[("samples", "count")], ("samples", "count"), 1);
        b.set_time(time, 10);
        b.add_comment(comment);
        let m = b.add_mapping(&MappingInfo {
            memory_start: 0x1000,
            memory_limit: 0x2000,
            file_offset: 0,
            filename: "/bin/x".into(),
            build_id: "ab".into(),
            ..MappingInfo::default()
        });
        let l = b.location(
            0x1100,
            m,
            &[LineInfo {
                function: f.into(),
                ..LineInfo::default()
            }],
        );
        b.add_sample(vec![l], vec![v], &[], &[]);
        b.finish()
    }

    #[test]
    fn merges_as_pprof() {
        let p = merge(
            vec![one("a", 2, 200, "same"), one("b", 3, 100, "same")],
            &["x", "y"],
        )
        .unwrap();
        crate::check_valid(&p).unwrap();
        assert_eq!((p.time_nanos, p.duration_nanos), (100, 20));
        assert_eq!(p.comments(), ["same"]);
        assert_eq!(p.mapping.len(), 1, "one object, one mapping");
        let (locs, funcs) = (p.location_by_id(), p.function_by_id());
        let names: Vec<(String, i64)> = p
            .sample
            .iter()
            .map(|s| {
                (
                    p.frames(s, &locs, &funcs)[0].function.to_owned(),
                    s.value[0],
                )
            })
            .collect();
        assert_eq!(names, [("a".to_owned(), 2), ("b".to_owned(), 3)]);
        let mut other = Builder::new(&[("cpu", "nanoseconds")], ("cpu", "nanoseconds"), 1);
        other.set_time(1, 1);
        let err = merge(vec![one("a", 1, 1, ""), other.finish()], &["x", "y"]).unwrap_err();
        assert!(err.contains("y has sample types cpu/nanoseconds"), "{err}");
    }
}
