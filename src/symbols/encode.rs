//! Turns recorded stacks into profile.proto: the mappings seen while profiling, locations
//! symbolized in-process (what could not be symbolized keeps its address and mapping so
//! that pprof can symbolize it from the binary); and the text forms of stacks that Go's
//! debug=1 pages print. Each kind gives its profile its shape (kinds/).

use std::collections::HashMap;

use rprof_profile::{names, Builder, MappingInfo, Profile};

use crate::symbols::maps::MapEntry;
use crate::symbols::symbolize::{Frame, Symbolizer};

/// What symbolization found for the locations of one mapping, to set its has_* flags.
#[derive(Default, Clone, Copy)]
struct Coverage {
    locations: u32,
    with_function: u32,
    with_file: u32,
    with_line: u32,
}

/// Adds stacks of resolved frames to a builder, one location per frame.
pub struct StackEncoder {
    builder: Builder,
    pub frames: HashMap<u64, Frame>,
    /// Profile mapping id of each of the symbolizer's mappings (1-based; the main program first).
    mapping_ids: Vec<u64>,
    coverage: Vec<Coverage>,
    locations: HashMap<u64, u64>,
}

impl StackEncoder {
    /// `frames` resolves every stack entry that will be added; `mappings` are the ones
    /// the frames refer to.
    pub fn new(mut builder: Builder, frames: HashMap<u64, Frame>, mappings: &[MapEntry]) -> Self {
        // Which rprof wrote it (`rprof inspect` shows the comments).
        builder.add_comment(concat!("rprof ", env!("CARGO_PKG_VERSION")));
        let mut order: Vec<usize> = (0..mappings.len()).collect();
        let exe = std::fs::read_link(crate::symbols::maps::proc_path("exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        order.sort_by_key(|&i| mappings[i].path != exe);
        let mut mapping_ids = vec![0; mappings.len()];
        for i in order {
            let m = &mappings[i];
            mapping_ids[i] = builder.add_mapping(&MappingInfo {
                memory_start: m.start,
                memory_limit: m.end,
                file_offset: m.offset,
                filename: m.path.clone(),
                build_id: m.build_id.clone(),
                ..MappingInfo::default()
            });
        }
        StackEncoder {
            builder,
            frames,
            coverage: vec![Coverage::default(); mapping_ids.len()],
            mapping_ids,
            locations: HashMap::new(),
        }
    }

    /// An encoder for profiles whose stacks are `stacks`: resolves all their entries in
    /// one batch and stamps the profile with the current time.
    pub fn for_stacks<'s>(
        builder: Builder,
        stacks: impl Iterator<Item = &'s [u64]>,
        symbolizer: &mut Symbolizer,
    ) -> Self {
        let entries: std::collections::HashSet<u64> = stacks.flatten().copied().collect();
        let frames = symbolizer.resolve_all(entries);
        let mut enc = StackEncoder::new(builder, frames, &symbolizer.mappings);
        enc.builder.set_time(unix_now_ns(), 0);
        enc
    }

    pub fn builder(&mut self) -> &mut Builder {
        &mut self.builder
    }

    fn location(&mut self, entry: u64) -> Option<u64> {
        if let Some(&loc) = self.locations.get(&entry) {
            return Some(loc);
        }
        let frame = self.frames.get(&entry)?;
        let lines = &frame.lines;
        let known = |ok: bool| u32::from(ok && !lines.is_empty());
        if let Some(c) = frame.mapping.and_then(|m| self.coverage.get_mut(m)) {
            c.locations += 1;
            c.with_function += known(true);
            c.with_file += known(lines.iter().all(|l| !l.filename.is_empty()));
            c.with_line += known(lines.iter().all(|l| l.line > 0));
        }
        let mapping_id = frame
            .mapping
            .and_then(|m| self.mapping_ids.get(m).copied())
            .unwrap_or(0);
        let loc = self.builder.location(frame.address, mapping_id, lines);
        self.locations.insert(entry, loc);
        Some(loc)
    }

    /// Location ids for a stack (leaf first); a truncated stack ends in a synthetic frame.
    /// An empty stack (an overflow bucket) becomes the synthetic lost-samples frame.
    /// rprof's own frames are left out, except at the leaf end, where they are real time
    /// spent in rprof (its pthread_create trampoline sits under every thread otherwise).
    pub fn stack(&mut self, entries: &[u64], truncated: bool) -> Vec<u64> {
        if entries.is_empty() {
            return vec![self.builder.synthetic_location(names::LOST_SAMPLES_FRAME)];
        }
        let mut ids = Vec::with_capacity(entries.len() + 1);
        for e in shown(entries, &self.frames) {
            ids.extend(self.location(e));
        }
        if truncated {
            ids.push(self.builder.synthetic_location(names::TRUNCATED_FRAME));
        }
        ids
    }

    /// Finishes the profile, setting each mapping's has_* flags to what holds for all of
    /// its locations.
    pub fn finish(self) -> Profile {
        let mut p = self.builder.finish();
        for (i, c) in self.coverage.iter().enumerate() {
            let Some(m) = self
                .mapping_ids
                .get(i)
                .and_then(|&id| p.mapping.get_mut(id as usize - 1))
            else {
                continue;
            };
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

/// The entries of a stack that profiles show: rprof's own frames are left out, except at
/// the leaf end, where they are real time spent in rprof (its pthread_create trampoline
/// and lock hooks sit under the program's frames otherwise).
pub fn shown(stack: &[u64], frames: &HashMap<u64, Frame>) -> Vec<u64> {
    let mut at_leaf = true;
    stack
        .iter()
        .copied()
        .filter(|e| {
            let own = frames.get(e).is_some_and(|f| f.own);
            at_leaf &= own;
            !own || at_leaf
        })
        .collect()
}

/// A count profile in Go's shape (goroutine, threadcreate): `<kind>/count` samples,
/// period type `<kind>/count`, period 1; records of (stack, thread name, count), the name
/// as a `thread` label when there is one.
pub fn count_profile(
    kind: &str,
    records: &[(Vec<u64>, String, u64)],
    symbolizer: &mut Symbolizer,
) -> Profile {
    let b = Builder::new(&[(kind, names::COUNT)], (kind, names::COUNT), 1);
    let mut enc = StackEncoder::for_stacks(b, records.iter().map(|r| r.0.as_slice()), symbolizer);
    for (stack, label, n) in records {
        let ids = enc.stack(stack, false);
        let labels: Vec<(&str, &str)> = if label.is_empty() {
            Vec::new()
        } else {
            vec![("thread", label.as_str())]
        };
        enc.builder().add_sample(ids, vec![*n as i64], &labels, &[]);
    }
    enc.finish()
}

/// One line of a text stack: a frame's address, the (inlined) call it names if known, and
/// its offset into its symbol.
pub struct TextFrame<'a> {
    pub address: u64,
    pub line: Option<&'a rprof_profile::LineInfo>,
    pub offset: u64,
}

/// The lines the text formats print for a stack: the frames profiles show (`shown`), one
/// per inlined call, innermost first.
pub fn text_frames<'a>(stack: &[u64], frames: &'a HashMap<u64, Frame>) -> Vec<TextFrame<'a>> {
    let mut out = Vec::new();
    for pc in shown(stack, frames) {
        let f = frames.get(&pc);
        let address = f.map_or(pc, |f| f.address);
        let offset = f.and_then(|f| f.symbol_offset).unwrap_or(0);
        match f.filter(|f| !f.lines.is_empty()) {
            Some(f) => out.extend(f.lines.iter().map(|l| TextFrame {
                address,
                line: Some(l),
                offset,
            })),
            None => out.push(TextFrame {
                address,
                line: None,
                offset,
            }),
        }
    }
    out
}

/// `#` lines naming the frames of a stack, as Go's printStackRecord writes them:
/// `#\t<pc>\t<function>+<offset into its symbol>\t<file>:<line>`, one per inlined call,
/// or `#\t<pc>` alone where nothing is known; a blank line after.
pub fn frame_lines(out: &mut String, stack: &[u64], frames: &HashMap<u64, Frame>) {
    use std::fmt::Write as _;
    for t in text_frames(stack, frames) {
        let _ = match t.line {
            Some(l) => writeln!(
                out,
                "#\t{:#x}\t{}+{:#x}\t{}:{}",
                t.address, l.function, t.offset, l.filename, l.line
            ),
            None => writeln!(out, "#\t{:#x}", t.address),
        };
    }
    out.push('\n');
}

pub fn addresses(stack: &[u64], frames: &HashMap<u64, Frame>) -> String {
    shown(stack, frames)
        .iter()
        .map(|pc| format!(" {:#x}", frames.get(pc).map_or(*pc, |f| f.address)))
        .collect()
}

/// Counts of identical (stack, label) records, largest first, as Go's count profiles.
pub fn grouped<'a>(
    records: impl Iterator<Item = (&'a [u64], &'a str, u64)>,
) -> Vec<(Vec<u64>, String, u64)> {
    let mut counts: HashMap<(Vec<u64>, String), u64> = HashMap::new();
    for (stack, label, n) in records {
        *counts
            .entry((stack.to_vec(), label.to_string()))
            .or_insert(0) += n;
    }
    let mut out: Vec<_> = counts.into_iter().map(|((s, l), n)| (s, l, n)).collect();
    out.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    out
}

/// A count profile's debug=1 text, as Go's: `<kind> profile: total N`, then per record
/// `<n> @ 0x…`, its `# labels:` and its `#` frame lines.
pub fn count_text(
    kind: &str,
    records: &[(Vec<u64>, String, u64)],
    symbolizer: &mut Symbolizer,
) -> String {
    use std::fmt::Write as _;
    let frames = symbolizer.resolve_all(records.iter().flat_map(|r| r.0.iter().copied()));
    let total: u64 = records.iter().map(|r| r.2).sum();
    let mut out = format!("{kind} profile: total {total}\n");
    for (stack, label, n) in records {
        let _ = writeln!(out, "{n} @{}", addresses(stack, &frames));
        if !label.is_empty() {
            let _ = writeln!(out, "# labels: {{\"thread\":{}}}", json_string(label));
        }
        frame_lines(&mut out, stack, &frames);
    }
    out
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = std::fmt::Write::write_fmt(&mut out, format_args!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
