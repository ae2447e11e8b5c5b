//! The messages profiles are pushed in, written out with prost's derive:
//! - Grafana Pyroscope's `push.v1.PushRequest` (api/push/v1/push.proto): series of labels,
//!   each with raw gzip pprof bodies;
//! - OpenTelemetry's `ExportProfilesServiceRequest` of the profiles signal, package
//!   `opentelemetry.proto.collector.profiles.v1development`: one profile per sample type,
//!   their frames in one dictionary shared by the request. The field numbers are those
//!   PyPI's `opentelemetry-proto` 1.45.2 decodes (the suite's receiver checks with it).

use std::collections::HashMap;

use prost::Message;

use crate::proto::Profile;

/// `push.v1.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<RawProfileSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RawProfileSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<RawSample>,
}

/// `types.v1.LabelPair`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RawSample {
    /// A pprof profile, gzip-compressed as Go writes them.
    #[prost(bytes = "vec", tag = "1")]
    pub raw_profile: Vec<u8>,
    #[prost(string, tag = "2")]
    pub id: String,
}

/// One series of a Pyroscope push: its labels, a gzip pprof, and the profile's id.
pub type Series = (Vec<(String, String)>, Vec<u8>, String);

/// A Pyroscope push of `series`.
pub fn pyroscope_request(series: Vec<Series>) -> Vec<u8> {
    PushRequest {
        series: series
            .into_iter()
            .map(|(labels, raw_profile, id)| RawProfileSeries {
                labels: labels
                    .into_iter()
                    .map(|(name, value)| LabelPair { name, value })
                    .collect(),
                samples: vec![RawSample { raw_profile, id }],
            })
            .collect(),
    }
    .encode_to_vec()
}

pub mod otlp {
    //! `opentelemetry.proto.{collector.profiles,profiles}.v1development` and the parts of
    //! `common.v1` and `resource.v1` they use.

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportProfilesServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_profiles: Vec<ResourceProfiles>,
        #[prost(message, optional, tag = "2")]
        pub dictionary: Option<ProfilesDictionary>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceProfiles {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_profiles: Vec<ScopeProfiles>,
        #[prost(string, tag = "3")]
        pub schema_url: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Resource {
        #[prost(message, repeated, tag = "1")]
        pub attributes: Vec<KeyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AnyValue {
        #[prost(oneof = "Value", tags = "1, 3")]
        pub value: Option<Value>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        String(String),
        #[prost(int64, tag = "3")]
        Int(i64),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InstrumentationScope {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeProfiles {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub profiles: Vec<Profile>,
        #[prost(string, tag = "3")]
        pub schema_url: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, optional, tag = "1")]
        pub sample_type: Option<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        #[prost(uint64, tag = "4")]
        pub duration_nano: u64,
        #[prost(message, optional, tag = "5")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "6")]
        pub period: i64,
        #[prost(bytes = "vec", tag = "7")]
        pub profile_id: Vec<u8>,
        #[prost(int32, repeated, tag = "11")]
        pub attribute_indices: Vec<i32>,
    }

    #[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
    pub struct ValueType {
        #[prost(int32, tag = "1")]
        pub type_strindex: i32,
        #[prost(int32, tag = "2")]
        pub unit_strindex: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(int32, tag = "1")]
        pub stack_index: i32,
        #[prost(int32, repeated, tag = "2")]
        pub attribute_indices: Vec<i32>,
        #[prost(int64, repeated, tag = "4")]
        pub values: Vec<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ProfilesDictionary {
        #[prost(message, repeated, tag = "1")]
        pub mapping_table: Vec<Mapping>,
        #[prost(message, repeated, tag = "2")]
        pub location_table: Vec<Location>,
        #[prost(message, repeated, tag = "3")]
        pub function_table: Vec<Function>,
        #[prost(message, repeated, tag = "4")]
        pub link_table: Vec<Link>,
        #[prost(string, repeated, tag = "5")]
        pub string_table: Vec<String>,
        #[prost(message, repeated, tag = "6")]
        pub attribute_table: Vec<KeyValueAndUnit>,
        #[prost(message, repeated, tag = "7")]
        pub stack_table: Vec<Stack>,
    }

    #[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub memory_start: u64,
        #[prost(uint64, tag = "2")]
        pub memory_limit: u64,
        #[prost(uint64, tag = "3")]
        pub file_offset: u64,
        #[prost(int32, tag = "4")]
        pub filename_strindex: i32,
    }

    #[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
    pub struct Location {
        #[prost(int32, tag = "1")]
        pub mapping_index: i32,
        #[prost(uint64, tag = "2")]
        pub address: u64,
        #[prost(message, repeated, tag = "3")]
        pub lines: Vec<Line>,
    }

    #[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
    pub struct Line {
        #[prost(int32, tag = "1")]
        pub function_index: i32,
        #[prost(int64, tag = "2")]
        pub line: i64,
        #[prost(int64, tag = "3")]
        pub column: i64,
    }

    #[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
    pub struct Function {
        #[prost(int32, tag = "1")]
        pub name_strindex: i32,
        #[prost(int32, tag = "2")]
        pub system_name_strindex: i32,
        #[prost(int32, tag = "3")]
        pub filename_strindex: i32,
        #[prost(int64, tag = "4")]
        pub start_line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Link {
        #[prost(bytes = "vec", tag = "1")]
        pub trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub span_id: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct KeyValueAndUnit {
        #[prost(int32, tag = "1")]
        pub key_strindex: i32,
        #[prost(message, optional, tag = "2")]
        pub value: Option<AnyValue>,
        #[prost(int32, tag = "3")]
        pub unit_strindex: i32,
    }

    #[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
    pub struct Stack {
        #[prost(int32, repeated, tag = "1")]
        pub location_indices: Vec<i32>,
    }
}

/// A pprof profile to send over OTLP, with attributes of its own (the profile's kind).
pub struct OtlpProfile<'a> {
    pub profile: &'a Profile,
    pub attributes: Vec<(String, String)>,
    /// 16 bytes, unique to the profile.
    pub id_seed: u64,
}

/// The tables of one request, each entry stored once; index 0 of each is the zero value,
/// as the profiles signal asks.
struct Dictionary {
    d: otlp::ProfilesDictionary,
    strings: HashMap<String, i32>,
    mappings: HashMap<otlp::Mapping, i32>,
    functions: HashMap<otlp::Function, i32>,
    locations: HashMap<otlp::Location, i32>,
    stacks: HashMap<otlp::Stack, i32>,
    attributes: HashMap<(i32, String, i64, i32), i32>,
}

impl Dictionary {
    fn new() -> Self {
        let mut d = Dictionary {
            d: otlp::ProfilesDictionary {
                mapping_table: vec![Default::default()],
                location_table: vec![Default::default()],
                function_table: vec![Default::default()],
                link_table: vec![Default::default()],
                string_table: Vec::new(),
                attribute_table: vec![Default::default()],
                stack_table: vec![Default::default()],
            },
            strings: HashMap::new(),
            mappings: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            stacks: HashMap::new(),
            attributes: HashMap::new(),
        };
        d.string("");
        d
    }

    fn string(&mut self, s: &str) -> i32 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.d.string_table.len() as i32;
        self.d.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    fn intern<T: Clone + Eq + std::hash::Hash>(
        map: &mut HashMap<T, i32>,
        table: &mut Vec<T>,
        v: T,
    ) -> i32 {
        *map.entry(v.clone()).or_insert_with(|| {
            table.push(v);
            table.len() as i32 - 1
        })
    }

    /// A string attribute (`num` None) or a number with its unit.
    fn attribute(&mut self, key: &str, s: Option<&str>, num: i64, unit: &str) -> i32 {
        let k = self.string(key);
        let u = self.string(unit);
        let key_t = (k, s.unwrap_or_default().to_owned(), num, u);
        if let Some(&i) = self.attributes.get(&key_t) {
            return i;
        }
        let value = match s {
            Some(s) => otlp::Value::String(s.to_owned()),
            None => otlp::Value::Int(num),
        };
        let i = self.d.attribute_table.len() as i32;
        self.d.attribute_table.push(otlp::KeyValueAndUnit {
            key_strindex: k,
            value: Some(otlp::AnyValue { value: Some(value) }),
            unit_strindex: u,
        });
        self.attributes.insert(key_t, i);
        i
    }
}

fn key_value(key: &str, v: otlp::Value) -> otlp::KeyValue {
    otlp::KeyValue {
        key: key.to_owned(),
        value: Some(otlp::AnyValue { value: Some(v) }),
    }
}

/// An OTLP push: one resource (`resource`: string attributes, `pid`), one scope (rprof and
/// its version), and each pprof profile given as one OTLP profile per sample type.
pub fn otlp_request(
    resource: &[(String, String)],
    pid: i64,
    version: &str,
    profiles: &[OtlpProfile<'_>],
) -> Vec<u8> {
    let mut dict = Dictionary::new();
    let mut out = Vec::new();
    for (n, op) in profiles.iter().enumerate() {
        let p = op.profile;
        // pprof ids to the dictionary's indices.
        let mut mapping_index = HashMap::new();
        for m in &p.mapping {
            let v = otlp::Mapping {
                memory_start: m.memory_start,
                memory_limit: m.memory_limit,
                file_offset: m.file_offset,
                filename_strindex: dict.string(p.str(m.filename)),
            };
            let i = Dictionary::intern(&mut dict.mappings, &mut dict.d.mapping_table, v);
            mapping_index.insert(m.id, i);
        }
        let mut function_index = HashMap::new();
        for f in &p.function {
            let v = otlp::Function {
                name_strindex: dict.string(p.str(f.name)),
                system_name_strindex: dict.string(p.str(f.system_name)),
                filename_strindex: dict.string(p.str(f.filename)),
                start_line: f.start_line,
            };
            let i = Dictionary::intern(&mut dict.functions, &mut dict.d.function_table, v);
            function_index.insert(f.id, i);
        }
        let mut location_index = HashMap::new();
        for l in &p.location {
            let v = otlp::Location {
                mapping_index: mapping_index.get(&l.mapping_id).copied().unwrap_or(0),
                address: l.address,
                lines: l
                    .line
                    .iter()
                    .map(|line| otlp::Line {
                        function_index: function_index.get(&line.function_id).copied().unwrap_or(0),
                        line: line.line,
                        column: line.column,
                    })
                    .collect(),
            };
            let i = Dictionary::intern(&mut dict.locations, &mut dict.d.location_table, v);
            location_index.insert(l.id, i);
        }
        let mut samples: Vec<(i32, Vec<i32>, &[i64])> = Vec::with_capacity(p.sample.len());
        for s in &p.sample {
            let stack = otlp::Stack {
                location_indices: s
                    .location_id
                    .iter()
                    .map(|id| location_index.get(id).copied().unwrap_or(0))
                    .collect(),
            };
            let stack_index = Dictionary::intern(&mut dict.stacks, &mut dict.d.stack_table, stack);
            let attrs = s
                .label
                .iter()
                .map(|l| {
                    let key = p.str(l.key).to_owned();
                    if l.str != 0 {
                        let v = p.str(l.str).to_owned();
                        dict.attribute(&key, Some(&v), 0, "")
                    } else {
                        let unit = p.str(l.num_unit).to_owned();
                        dict.attribute(&key, None, l.num, &unit)
                    }
                })
                .collect();
            samples.push((stack_index, attrs, &s.value));
        }
        let own: Vec<i32> = op
            .attributes
            .iter()
            .map(|(k, v)| dict.attribute(k, Some(v), 0, ""))
            .collect();
        let period_type = p.period_type.map(|t| otlp::ValueType {
            type_strindex: dict.string(p.str(t.r#type)),
            unit_strindex: dict.string(p.str(t.unit)),
        });
        for (ti, t) in p.sample_type.iter().enumerate() {
            let sample_type = otlp::ValueType {
                type_strindex: dict.string(p.str(t.r#type)),
                unit_strindex: dict.string(p.str(t.unit)),
            };
            let samples = samples
                .iter()
                .filter(|s| s.2.get(ti).is_some_and(|&v| v != 0))
                .map(|(stack, attrs, values)| otlp::Sample {
                    stack_index: *stack,
                    attribute_indices: attrs.clone(),
                    values: vec![values[ti]],
                })
                .collect();
            out.push(otlp::Profile {
                sample_type: Some(sample_type),
                samples,
                time_unix_nano: p.time_nanos.max(0) as u64,
                duration_nano: p.duration_nanos.max(0) as u64,
                period_type,
                period: p.period,
                profile_id: profile_id(op.id_seed, (n * 64 + ti) as u64),
                attribute_indices: own.clone(),
            });
        }
    }
    let mut attributes: Vec<otlp::KeyValue> = resource
        .iter()
        .map(|(k, v)| key_value(k, otlp::Value::String(v.clone())))
        .collect();
    attributes.push(key_value("process.pid", otlp::Value::Int(pid)));
    otlp::ExportProfilesServiceRequest {
        resource_profiles: vec![otlp::ResourceProfiles {
            resource: Some(otlp::Resource { attributes }),
            scope_profiles: vec![otlp::ScopeProfiles {
                scope: Some(otlp::InstrumentationScope {
                    name: "rprof".to_owned(),
                    version: version.to_owned(),
                }),
                profiles: out,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
        dictionary: Some(dict.d),
    }
    .encode_to_vec()
}

/// 16 bytes that differ between profiles (never all zero, which means "no id").
fn profile_id(seed: u64, n: u64) -> Vec<u8> {
    use std::hash::{Hash, Hasher};
    let mut out = Vec::with_capacity(16);
    for half in 0..2u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (seed, n, half).hash(&mut h);
        out.extend_from_slice(&(h.finish() | 1).to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{Builder, LineInfo};

    fn sample_profile() -> Profile {
        let mut b = Builder::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            10,
        );
        b.set_time(1_000, 2_000);
        let line = |f: &str| LineInfo {
            function: f.into(),
            system_name: f.into(),
            filename: "a.c".into(),
            line: 3,
        };
        let leaf = b.location(0x10, 0, &[line("leaf")]);
        let main = b.location(0x20, 0, &[line("main")]);
        b.add_sample(vec![leaf, main], vec![2, 20], &[("thread", "w")], &[]);
        b.add_sample(vec![main], vec![1, 10], &[], &[]);
        b.finish()
    }

    #[test]
    fn otlp_has_one_profile_per_type_and_shared_frames() {
        let p = sample_profile();
        let bytes = otlp_request(
            &[("service.name".into(), "svc".into())],
            42,
            "0.1.0",
            &[OtlpProfile {
                profile: &p,
                attributes: vec![("rprof.kind".into(), "cpu".into())],
                id_seed: 7,
            }],
        );
        let r = otlp::ExportProfilesServiceRequest::decode(&bytes[..]).unwrap();
        let d = r.dictionary.unwrap();
        assert_eq!(d.string_table[0], "");
        let profiles = &r.resource_profiles[0].scope_profiles[0].profiles;
        assert_eq!(profiles.len(), 2);
        let cpu = &profiles[1];
        assert_eq!(
            d.string_table[cpu.sample_type.unwrap().type_strindex as usize],
            "cpu"
        );
        let total: i64 = cpu.samples.iter().map(|s| s.values[0]).sum();
        assert_eq!(total, 30);
        let first = &cpu.samples[0];
        let stack = &d.stack_table[first.stack_index as usize];
        let leaf = &d.location_table[stack.location_indices[0] as usize];
        let f = &d.function_table[leaf.lines[0].function_index as usize];
        assert_eq!(d.string_table[f.name_strindex as usize], "leaf");
        assert_eq!(first.attribute_indices.len(), 1);
        assert_ne!(profiles[0].profile_id, profiles[1].profile_id);
        assert_eq!(cpu.time_unix_nano, 1_000);
    }

    #[test]
    fn pyroscope_request_round_trips() {
        let bytes = pyroscope_request(vec![(
            vec![("__name__".into(), "process_cpu".into())],
            vec![1, 2, 3],
            "id".into(),
        )]);
        let r = PushRequest::decode(&bytes[..]).unwrap();
        assert_eq!(r.series[0].labels[0].value, "process_cpu");
        assert_eq!(r.series[0].samples[0].raw_profile, vec![1, 2, 3]);
    }
}
