//! Read-side helpers: resolving indices and ids, and a validity check for tests
//! (after google/pprof's `Profile.CheckValid`).

use std::collections::{HashMap, HashSet};

use crate::proto::{Function, Location, Profile, Sample};

/// One frame of a sample's stack, after inlined calls are expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub function: &'a str,
    pub filename: &'a str,
    pub line: i64,
    pub address: u64,
    /// The file name of the location's mapping ("" when it has none).
    pub object: &'a str,
    /// Inlined into the next frame (not the last line of its location).
    pub inlined: bool,
}

impl Frame<'_> {
    /// The frame's name as `go tool pprof` shows it at its default granularity: the
    /// function, else the object's base name in brackets (every unsymbolized address of
    /// one object is one node), else `<unknown>`.
    pub fn display_name(&self) -> String {
        if !self.function.is_empty() {
            self.function.to_owned()
        } else if !self.object.is_empty() {
            format!(
                "[{}]",
                self.object.rsplit('/').next().unwrap_or(self.object)
            )
        } else {
            "<unknown>".to_owned()
        }
    }
}

impl Profile {
    /// The string at index `i`, or "" when out of range.
    pub fn str(&self, i: i64) -> &str {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.string_table.get(i))
            .map_or("", String::as_str)
    }

    /// The position of the sample type named `name` among `sample_type`.
    pub fn sample_type_index(&self, name: &str) -> Option<usize> {
        self.sample_type
            .iter()
            .position(|t| self.str(t.r#type) == name)
    }

    /// Names of the sample types, in order.
    pub fn sample_type_names(&self) -> Vec<&str> {
        self.sample_type
            .iter()
            .map(|t| self.str(t.r#type))
            .collect()
    }

    pub fn location_by_id(&self) -> HashMap<u64, &Location> {
        self.location.iter().map(|l| (l.id, l)).collect()
    }

    pub fn function_by_id(&self) -> HashMap<u64, &Function> {
        self.function.iter().map(|f| (f.id, f)).collect()
    }

    /// The sample's stack, leaf first, inlined frames expanded (innermost first). A location
    /// with no lines yields one frame with an empty function name.
    pub fn frames<'a>(
        &'a self,
        sample: &Sample,
        locations: &HashMap<u64, &'a Location>,
        functions: &HashMap<u64, &'a Function>,
    ) -> Vec<Frame<'a>> {
        let mut out = Vec::new();
        for id in &sample.location_id {
            let Some(loc) = locations.get(id) else {
                continue;
            };
            let object = self
                .mapping
                .iter()
                .find(|m| m.id == loc.mapping_id)
                .map_or("", |m| self.str(m.filename));
            if loc.line.is_empty() {
                out.push(Frame {
                    function: "",
                    filename: "",
                    line: 0,
                    address: loc.address,
                    object,
                    inlined: false,
                });
            }
            for (k, line) in loc.line.iter().enumerate() {
                let f = functions.get(&line.function_id);
                out.push(Frame {
                    function: f.map_or("", |f| self.str(f.name)),
                    filename: f.map_or("", |f| self.str(f.filename)),
                    line: line.line,
                    address: loc.address,
                    object,
                    inlined: k + 1 < loc.line.len(),
                });
            }
        }
        out
    }

    /// The string value of the sample's label `key`.
    pub fn label_str<'a>(&'a self, sample: &Sample, key: &str) -> Option<&'a str> {
        sample
            .label
            .iter()
            .find(|l| self.str(l.key) == key && l.str != 0)
            .map(|l| self.str(l.str))
    }

    /// The numeric value of the sample's label `key`.
    pub fn label_num(&self, sample: &Sample, key: &str) -> Option<i64> {
        sample
            .label
            .iter()
            .find(|l| self.str(l.key) == key && l.str == 0)
            .map(|l| l.num)
    }

    /// The comments, as strings.
    pub fn comments(&self) -> Vec<&str> {
        self.comment.iter().map(|&i| self.str(i)).collect()
    }
}

/// Checks the structural rules of profile.proto: string 0 is "", every index is in range,
/// ids are non-zero and unique, every referenced id exists, each sample has one value per
/// sample type.
pub fn check_valid(p: &Profile) -> Result<(), String> {
    if p.string_table.first().map(String::as_str) != Some("") {
        return Err("string_table[0] is not \"\"".into());
    }
    let n = p.string_table.len() as i64;
    let str_ok = |i: i64, what: &str| -> Result<(), String> {
        if (0..n).contains(&i) {
            Ok(())
        } else {
            Err(format!("{what}: string index {i} out of range 0..{n}"))
        }
    };
    for t in p.sample_type.iter().chain(p.period_type.iter()) {
        str_ok(t.r#type, "value type")?;
        str_ok(t.unit, "value type unit")?;
    }
    for &c in &p.comment {
        str_ok(c, "comment")?;
    }
    str_ok(p.default_sample_type, "default_sample_type")?;
    let mut mappings = HashSet::new();
    for m in &p.mapping {
        if m.id == 0 || !mappings.insert(m.id) {
            return Err(format!("mapping id {} zero or repeated", m.id));
        }
        str_ok(m.filename, "mapping filename")?;
        str_ok(m.build_id, "mapping build_id")?;
    }
    let mut functions = HashSet::new();
    for f in &p.function {
        if f.id == 0 || !functions.insert(f.id) {
            return Err(format!("function id {} zero or repeated", f.id));
        }
        str_ok(f.name, "function name")?;
        str_ok(f.system_name, "function system_name")?;
        str_ok(f.filename, "function filename")?;
    }
    let mut locations = HashSet::new();
    for l in &p.location {
        if l.id == 0 || !locations.insert(l.id) {
            return Err(format!("location id {} zero or repeated", l.id));
        }
        if l.mapping_id != 0 && !mappings.contains(&l.mapping_id) {
            return Err(format!(
                "location {} names missing mapping {}",
                l.id, l.mapping_id
            ));
        }
        for line in &l.line {
            if !functions.contains(&line.function_id) {
                return Err(format!(
                    "location {} names missing function {}",
                    l.id, line.function_id
                ));
            }
        }
    }
    for (i, s) in p.sample.iter().enumerate() {
        if s.value.len() != p.sample_type.len() {
            return Err(format!(
                "sample {i} has {} values for {} sample types",
                s.value.len(),
                p.sample_type.len()
            ));
        }
        for id in &s.location_id {
            if !locations.contains(id) {
                return Err(format!("sample {i} names missing location {id}"));
            }
        }
        for l in &s.label {
            str_ok(l.key, "label key")?;
            str_ok(l.str, "label str")?;
            str_ok(l.num_unit, "label num_unit")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode_gzip, Builder, LineInfo, MappingInfo};

    #[test]
    fn builder_round_trips_and_is_valid() {
        let mut b = Builder::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            10_000_000,
        );
        let m = b.add_mapping(&MappingInfo {
            memory_start: 0x1000,
            memory_limit: 0x2000,
            filename: "/bin/x".into(),
            build_id: "abcd".into(),
            ..MappingInfo::default()
        });
        let inline = [
            LineInfo {
                function: "inner".into(),
                filename: "a.c".into(),
                line: 3,
                ..LineInfo::default()
            },
            LineInfo {
                function: "outer".into(),
                filename: "a.c".into(),
                line: 9,
                ..LineInfo::default()
            },
        ];
        let l1 = b.location(0x1234, m, &inline);
        assert_eq!(
            b.location(0x1234, m, &inline),
            l1,
            "locations are deduplicated"
        );
        let lost = b.synthetic_location(crate::names::LOST_SAMPLES_FRAME);
        b.add_sample(vec![l1], vec![2, 20], &[("thread", "main")], &[]);
        b.add_sample(vec![lost], vec![1, 10], &[], &[("bytes", 16, "bytes")]);
        b.add_comment("hello");
        let p = decode(&encode_gzip(&b.finish())).expect("decodes");
        check_valid(&p).expect("valid");
        assert_eq!(p.sample_type_names(), ["samples", "cpu"]);
        let (locs, funcs) = (p.location_by_id(), p.function_by_id());
        let names: Vec<_> = p
            .frames(&p.sample[0], &locs, &funcs)
            .iter()
            .map(|f| f.function)
            .collect();
        assert_eq!(names, ["inner", "outer"]);
        assert_eq!(p.label_str(&p.sample[0], "thread"), Some("main"));
        assert_eq!(p.label_num(&p.sample[1], "bytes"), Some(16));
        assert_eq!(p.comments(), ["hello"]);
        assert_eq!(p.function.len(), 3);
    }

    #[test]
    fn check_valid_rejects_dangling_ids() {
        let mut b = Builder::new(&[("samples", "count")], ("samples", "count"), 1);
        b.add_sample(vec![7], vec![1], &[], &[]);
        assert!(check_valid(&b.finish()).is_err());
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[0x1f, 0x8b, 1, 2, 3]).is_err());
        assert!(decode(b"\xff\xff\xff\xff").is_err());
    }
}
