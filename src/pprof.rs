//! Turns recorded stacks into profile.proto: mappings from /proc/self/maps, locations
//! symbolized in-process (what cannot be symbolized keeps its address for pprof), and the
//! Go shape of each profile kind.

use std::collections::HashMap;

use rprof_profile::{names, Builder, MappingInfo, Profile};

use crate::cpu::CpuData;
use crate::maps::{self, MapEntry};
use crate::symbolize::Symbolizer;

/// What symbolization found for the locations of one mapping, to set its has_* flags.
#[derive(Default, Clone, Copy)]
struct Coverage {
    locations: u32,
    with_function: u32,
    with_file: u32,
    with_line: u32,
}

/// Adds stacks to a builder, sharing mappings, locations and symbolization.
pub struct StackEncoder<'a> {
    builder: Builder,
    maps: Vec<MapEntry>,
    coverage: Vec<Coverage>,
    locations: HashMap<u64, u64>,
    symbolizer: &'a mut Symbolizer,
}

impl<'a> StackEncoder<'a> {
    pub fn new(mut builder: Builder, symbolizer: &'a mut Symbolizer) -> Self {
        let maps = maps::executable_mappings();
        for m in &maps {
            builder.add_mapping(&MappingInfo {
                memory_start: m.start,
                memory_limit: m.end,
                file_offset: m.offset,
                filename: m.path.clone(),
                build_id: m.build_id.clone(),
                ..MappingInfo::default()
            });
        }
        let coverage = vec![Coverage::default(); maps.len()];
        StackEncoder {
            builder,
            maps,
            coverage,
            locations: HashMap::new(),
            symbolizer,
        }
    }

    pub fn builder(&mut self) -> &mut Builder {
        &mut self.builder
    }

    fn location(&mut self, addr: u64) -> u64 {
        if let Some(&id) = self.locations.get(&addr) {
            return id;
        }
        let mapping = self
            .maps
            .iter()
            .position(|m| (m.start..m.end).contains(&addr));
        let lines = self.symbolizer.lines(addr);
        if let Some(c) = mapping.and_then(|i| self.coverage.get_mut(i)) {
            c.locations += 1;
            c.with_function += u32::from(!lines.is_empty());
            c.with_file += u32::from(lines.iter().all(|l| !l.filename.is_empty()) && !lines.is_empty());
            c.with_line += u32::from(lines.iter().all(|l| l.line > 0) && !lines.is_empty());
        }
        let mapping_id = mapping.map_or(0, |i| i as u64 + 1);
        let id = self.builder.location(addr, mapping_id, lines);
        self.locations.insert(addr, id);
        id
    }

    /// Location ids for a stack (leaf first); a truncated stack ends in a synthetic frame.
    pub fn stack(&mut self, pcs: &[u64], truncated: bool) -> Vec<u64> {
        let mut ids: Vec<u64> = pcs.iter().map(|&pc| self.location(pc)).collect();
        if truncated {
            ids.push(self.builder.synthetic_location(names::TRUNCATED_FRAME));
        }
        ids
    }

    /// Finishes the profile, setting each mapping's has_* flags to what is true of all of
    /// its locations.
    pub fn finish(self) -> Profile {
        let mut p = self.builder.finish();
        for (m, c) in p.mapping.iter_mut().zip(&self.coverage) {
            let all = |n: u32| c.locations > 0 && n == c.locations;
            m.has_functions = all(c.with_function);
            m.has_filenames = all(c.with_file);
            m.has_line_numbers = all(c.with_line);
            m.has_inline_frames = all(c.with_line);
        }
        p
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch.
pub fn unix_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The CPU profile in Go's shape: samples/count and cpu/nanoseconds, period 1e9/hz.
pub fn cpu_profile(
    data: &CpuData,
    period_ns: u64,
    start_unix_ns: i64,
    duration_ns: i64,
    symbolizer: &mut Symbolizer,
) -> Profile {
    let period = period_ns as i64;
    let b = Builder::new(
        &[
            (names::SAMPLES, names::COUNT),
            (names::CPU, names::NANOSECONDS),
        ],
        (names::CPU, names::NANOSECONDS),
        period,
    );
    let mut enc = StackEncoder::new(b, symbolizer);
    enc.builder().set_time(start_unix_ns, duration_ns);
    let mut samples: Vec<_> = data.counts.iter().collect();
    samples.sort_by(|a, b| b.1.cmp(a.1));
    for (key, &n) in samples {
        let ids = enc.stack(&key.pcs, key.truncated);
        let n = n as i64;
        enc.builder()
            .add_sample(ids, vec![n, n * period], &[("thread", &key.thread)], &[]);
    }
    if data.lost > 0 {
        let lost = enc.builder().synthetic_location(names::LOST_SAMPLES_FRAME);
        let n = data.lost as i64;
        enc.builder().add_sample(vec![lost], vec![n, n * period], &[], &[]);
    }
    enc.finish()
}
