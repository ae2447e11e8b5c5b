//! Builds a [`Profile`] while deduplicating strings, functions, locations and mappings.
//! Ids are 1-based; string 0 is "". Mirrors Go's `profileBuilder` (runtime/pprof/proto.go).

use std::collections::HashMap;

use crate::proto::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};

/// One line of a location: a function (name, mangled name, file) and a line number.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LineInfo {
    pub function: String,
    pub system_name: String,
    pub filename: String,
    pub line: i64,
}

/// A mapping as found in /proc/self/maps, with what symbolization could resolve in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MappingInfo {
    pub memory_start: u64,
    pub memory_limit: u64,
    pub file_offset: u64,
    pub filename: String,
    pub build_id: String,
    pub has_functions: bool,
    pub has_filenames: bool,
    pub has_line_numbers: bool,
    pub has_inline_frames: bool,
}

#[derive(Default)]
pub struct Builder {
    profile: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(i64, i64, i64), u64>,
    locations: HashMap<(u64, u64), u64>,
}

impl Builder {
    /// `sample_types` are (type, unit) pairs; `period_type` likewise.
    pub fn new(sample_types: &[(&str, &str)], period_type: (&str, &str), period: i64) -> Self {
        let mut b = Builder::default();
        b.string("");
        let types: Vec<ValueType> = sample_types
            .iter()
            .map(|(t, u)| b.value_type(t, u))
            .collect();
        b.profile.sample_type = types;
        b.profile.period_type = Some(b.value_type(period_type.0, period_type.1));
        b.profile.period = period;
        b
    }

    fn value_type(&mut self, ty: &str, unit: &str) -> ValueType {
        ValueType {
            r#type: self.string(ty),
            unit: self.string(unit),
        }
    }

    /// The index of `s` in the string table, adding it if new.
    pub fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    pub fn set_time(&mut self, time_nanos: i64, duration_nanos: i64) {
        self.profile.time_nanos = time_nanos;
        self.profile.duration_nanos = duration_nanos;
    }

    pub fn add_comment(&mut self, comment: &str) {
        let i = self.string(comment);
        self.profile.comment.push(i);
    }

    /// Names the sample type pprof shows by default (Go sets this for heap profiles).
    pub fn set_default_sample_type(&mut self, ty: &str) {
        self.profile.default_sample_type = self.string(ty);
    }

    /// Adds a mapping and returns its id. Mappings are not deduplicated: callers add each once.
    pub fn add_mapping(&mut self, m: &MappingInfo) -> u64 {
        let id = self.profile.mapping.len() as u64 + 1;
        let filename = self.string(&m.filename);
        let build_id = self.string(&m.build_id);
        self.profile.mapping.push(Mapping {
            id,
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename,
            build_id,
            has_functions: m.has_functions,
            has_filenames: m.has_filenames,
            has_line_numbers: m.has_line_numbers,
            has_inline_frames: m.has_inline_frames,
        });
        id
    }

    fn function(&mut self, l: &LineInfo) -> u64 {
        let key = (
            self.string(&l.function),
            self.string(&l.system_name),
            self.string(&l.filename),
        );
        if let Some(&id) = self.functions.get(&key) {
            return id;
        }
        let id = self.profile.function.len() as u64 + 1;
        self.profile.function.push(Function {
            id,
            name: key.0,
            system_name: key.1,
            filename: key.2,
            start_line: 0,
        });
        self.functions.insert(key, id);
        id
    }

    /// The location for `address` in mapping `mapping_id` (0: none), created with `lines`
    /// (innermost inlined call first) the first time that address is seen.
    pub fn location(&mut self, address: u64, mapping_id: u64, lines: &[LineInfo]) -> u64 {
        if let Some(&id) = self.locations.get(&(address, mapping_id)) {
            return id;
        }
        let line = lines
            .iter()
            .map(|l| Line {
                function_id: self.function(l),
                line: l.line,
                column: 0,
            })
            .collect();
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(Location {
            id,
            mapping_id,
            address,
            line,
            is_folded: false,
        });
        self.locations.insert((address, mapping_id), id);
        id
    }

    /// A location with no address that stands for a synthetic frame such as
    /// `rprof::lost_samples`.
    pub fn synthetic_location(&mut self, name: &str) -> u64 {
        // Synthetic frames are keyed by their function's string index in an address space of
        // their own (mapping id u64::MAX never names a real mapping).
        let key = (self.string(name) as u64, u64::MAX);
        if let Some(&id) = self.locations.get(&key) {
            return id;
        }
        let function_id = self.function(&LineInfo {
            function: name.to_owned(),
            system_name: name.to_owned(),
            ..LineInfo::default()
        });
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(Location {
            id,
            mapping_id: 0,
            address: 0,
            line: vec![Line {
                function_id,
                line: 0,
                column: 0,
            }],
            is_folded: false,
        });
        self.locations.insert(key, id);
        id
    }

    /// Adds a sample; `location_ids` leaf first. Labels are (key, string value) and
    /// (key, number, unit).
    pub fn add_sample(
        &mut self,
        location_ids: Vec<u64>,
        values: Vec<i64>,
        str_labels: &[(&str, &str)],
        num_labels: &[(&str, i64, &str)],
    ) {
        let mut label = Vec::with_capacity(str_labels.len() + num_labels.len());
        for (k, v) in str_labels {
            label.push(Label {
                key: self.string(k),
                str: self.string(v),
                num: 0,
                num_unit: 0,
            });
        }
        for (k, n, unit) in num_labels {
            label.push(Label {
                key: self.string(k),
                str: 0,
                num: *n,
                num_unit: if unit.is_empty() {
                    0
                } else {
                    self.string(unit)
                },
            });
        }
        self.profile.sample.push(Sample {
            location_id: location_ids,
            value: values,
            label,
        });
    }

    pub fn finish(self) -> Profile {
        self.profile
    }
}
