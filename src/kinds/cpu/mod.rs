//! CPU profiling: one CPU-time timer per thread delivering SIGPROF to that thread.
//!
//! Why per-thread timers: a process-wide `setitimer(ITIMER_PROF)` saw 22 % of the CPU of 16
//! busy threads in a measurement (shared/design-notes.md); Go moved to per-thread timers
//! for the same reason (golang/go#35057). Each thread gets `timer_create(CLOCK_THREAD_CPUTIME_ID)`
//! with SIGEV_THREAD_ID, a random first expiry within one period (so short threads are
//! sampled fairly), and each signal counts 1 + its overrun (the kernel delivers at most one
//! per tick). `setitimer` is used only where timer_create fails.
//!
//! Threads started by `pthread_create` are armed by the interposed start routine; threads
//! alive at load are armed by thread id; a pthread key destructor deletes a thread's timer
//! when it exits. Timer ids live in a fixed table so that all can be deleted at exit or when
//! the program takes SIGPROF for itself.

mod sampler;

pub use sampler::*;

use std::sync::atomic::{AtomicBool, Ordering};

use rprof_profile::{names, Builder, Profile};

use super::{state, Context, Kind, Path, Shape, State};
use crate::config::Config;
use crate::symbols::encode::StackEncoder;
use crate::symbols::symbolize::Symbolizer;

pub struct Cpu;
pub static CPU: Cpu = Cpu;

/// CPU profiling runs (set at load).
static ON: AtomicBool = AtomicBool::new(false);

impl Kind for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }
    fn about(&self) -> &'static str {
        "CPU profile. You can specify the duration in the seconds GET parameter. After you get the profile file, use the go tool pprof command to investigate the profile."
    }
    fn shape(&self) -> Shape {
        Shape::Window
    }
    fn push_name(&self) -> Option<&'static str> {
        Some("process_cpu")
    }
    fn init(&self, cfg: &Config, on: bool) -> bool {
        let on = on && init(cfg.cpu_hz);
        ON.store(on, Ordering::Relaxed);
        on
    }
    fn enabled(&self) -> bool {
        ON.load(Ordering::Relaxed)
    }
    fn paths(&self) -> &'static [Path] {
        &[Path {
            name: "profile",
            default_sample_type: None,
            about: None,
        }]
    }
    fn snapshot(&self, _allocator_figures: bool) -> State {
        Box::new(snapshot())
    }
    fn window(&self, before: Option<&State>, after: &State) -> State {
        let empty = CpuSnapshot::default();
        let before = before.map_or(&empty, |b| state::<CpuSnapshot>(b));
        Box::new(window(before, state::<CpuSnapshot>(after)))
    }
    fn addresses(&self, s: &State, out: &mut Vec<u64>) {
        out.extend(
            state::<CpuData>(s)
                .counts
                .keys()
                .flat_map(|k| k.pcs.iter().copied()),
        );
    }
    fn profiles(
        &self,
        s: &State,
        cx: &Context,
        sym: &mut Symbolizer,
    ) -> Vec<(&'static str, Profile)> {
        let p = cpu_profile(
            state::<CpuData>(s),
            sym,
            period_ns(),
            cx.start_unix_ns,
            cx.duration_ns,
        );
        vec![("cpu", p)]
    }
    fn recorded(&self, s: &State) -> u64 {
        let w = state::<CpuData>(s);
        w.counts.values().sum::<u64>() + w.lost
    }
    fn is_empty(&self) -> bool {
        snapshot().is_empty()
    }
    fn count(&self) -> Option<usize> {
        None
    }
    fn pin_unloadable(&self, sym: &mut Symbolizer) {
        pin_unloadable(sym);
    }
    fn reset_after_fork(&self) {
        reset_after_fork();
        arm_current_thread();
    }
    fn summary(&self) -> Option<(crate::config::LogLevel, String)> {
        let (signals, samples) = signal_counts();
        self.enabled().then(|| {
            (
                crate::config::LogLevel::Info,
                format!("cpu: {signals} SIGPROF signals delivered, standing for {samples} samples"),
            )
        })
    }
}

/// The CPU profile in Go's shape: samples/count and cpu/nanoseconds, period 1e9/hz.
pub fn cpu_profile(
    data: &CpuData,
    symbolizer: &mut Symbolizer,
    period_ns: u64,
    start_unix_ns: i64,
    duration_ns: i64,
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
    let mut enc =
        StackEncoder::for_stacks(b, data.counts.keys().map(|k| k.pcs.as_slice()), symbolizer);
    enc.builder().set_time(start_unix_ns, duration_ns);
    let mut samples: Vec<_> = data.counts.iter().collect();
    samples.sort_by(|a, b| b.1.cmp(a.1));
    for (key, &n) in samples {
        let ids = enc.stack(&key.pcs, key.truncated);
        let n = n as i64;
        // As Go's `-tagfocus`-able numeric labels: the kernel thread id tells apart threads
        // that share a name.
        let tid = [("thread_id", i64::from(key.tid), "")];
        let nums: &[(&str, i64, &str)] = if key.tid > 0 { &tid } else { &[] };
        enc.builder()
            .add_sample(ids, vec![n, n * period], &[("thread", &key.thread)], nums);
    }
    let unsampled = crate::runtime::masks::unsampleable();
    if unsampled > 0 {
        enc.builder().add_comment(&format!(
            "rprof: {unsampled} thread(s) blocked the CPU timer signal with a raw system call and were not sampled"
        ));
    }
    let found = crate::kinds::cpu::threads_found_later();
    if found > 0 {
        enc.builder().add_comment(&format!(
            "rprof: {found} thread(s) were found running rather than seen starting (made through a pthread_create found past rprof's, or a raw clone): sampled from when they were found (within 200 ms, where rprof's thread runs), their stacks whole once they waited in a call rprof hooks or had an allocation sampled, their innermost frame alone before"
        ));
    }
    let leaf_only = crate::signal_safe::unwind::leaf_only_walks();
    if leaf_only > 0 {
        enc.builder().add_comment(&format!(
            "rprof: {leaf_only} stack(s) kept only their innermost frame (too little stack left below the interrupted code to walk it)"
        ));
    }
    let dropped = crate::runtime::log::dropped();
    if dropped > 0 {
        enc.builder().add_comment(&format!(
            "rprof: {dropped} diagnostic line(s) dropped: fd 2 was no longer the stderr found at load"
        ));
    }
    if data.lost > 0 {
        let lost = enc.builder().synthetic_location(names::LOST_SAMPLES_FRAME);
        let n = data.lost as i64;
        enc.builder()
            .add_sample(vec![lost], vec![n, n * period], &[], &[]);
    }
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples that find the store full are counted, read as `lost`, and written as a
    /// sample of the synthetic frame `rprof::lost_samples` standing for all of them.
    #[test]
    fn lost_samples_reach_the_written_profile() {
        let store = crate::signal_safe::trace_store::TraceStore::new();
        assert!(store.init());
        let before = snapshot_of(&store);
        let pushed = crate::signal_safe::trace_store::MAX_ENTRIES as u64 + 500;
        let pc = lost_samples_reach_the_written_profile as *const () as u64;
        for i in 0..pushed {
            store.record(2, [0; 16], 0, |pcs| {
                pcs[0] = pc;
                pcs[1] = i;
                (2, false)
            });
        }
        let data = window_of(&store, &before, &snapshot_of(&store));
        assert!(data.lost > 0, "more distinct stacks than the store holds");
        let kept: u64 = data.counts.values().sum();
        assert_eq!(kept + data.lost, 2 * pushed);
        let mut symbolizer = Symbolizer::new();
        let p = cpu_profile(&data, &mut symbolizer, 4_000_000, 0, 1);
        let bytes = rprof_profile::encode_gzip(&p);
        let p = rprof_profile::decode(&bytes).unwrap();
        rprof_profile::check_valid(&p).unwrap();
        let (locs, funcs) = (p.location_by_id(), p.function_by_id());
        let lost: Vec<_> = p
            .sample
            .iter()
            .filter(|s| {
                p.frames(s, &locs, &funcs)
                    .iter()
                    .any(|f| f.function == rprof_profile::names::LOST_SAMPLES_FRAME)
            })
            .collect();
        assert_eq!(lost.len(), 1);
        let n = data.lost as i64;
        assert_eq!(lost[0].value, vec![n, n * 4_000_000]);
    }
}
