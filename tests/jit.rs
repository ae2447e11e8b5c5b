//! Frames of JIT-compiled code: named from the perf map the runtime writes, walked by the
//! frame-pointer chain where the code has no unwind table.

mod common;

use std::process::Command;

use common::*;

/// A perf map (or jitdump) a test's program made, removed when the test ends.
struct PerfMapFile(std::path::PathBuf);

impl Drop for PerfMapFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn perf_map_of(r: &Run) -> PerfMapFile {
    PerfMapFile(format!("/tmp/perf-{}.map", r.pid()).into())
}

/// Whether `tool arg` runs and succeeds (the tool is installed).
fn runs(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The share of a profile's CPU whose innermost frame is `f`.
fn flat_share(p: &rprof_profile::Profile, f: &str) -> f64 {
    let s = summarize(p, "cpu");
    s.flat(f) as f64 / s.total.max(1) as f64
}

/// Generated code with a frame-pointer prologue and no unwind table, named in a perf map:
/// its name has the CPU, and its native caller and main are on its stacks.
#[test]
fn generated_code_is_named_and_walked_past() {
    let r = run(
        "jit-c",
        &build("jit_loop"),
        &["1.5"],
        &[("RPROF_PROFILES", "cpu")],
    );
    let _map = perf_map_of(&r);
    assert!(r.output.status.success(), "{}", r.stderr());
    let cpu = r.files_of("cpu");
    let p = load(&cpu[0]);
    let s = summarize(&p, "cpu");
    assert!(s.total >= 1_000_000_000, "{} ns of CPU in 1.5 s", s.total);
    let flat = s.flat("jit_hot_loop");
    assert!(
        flat * 10 >= s.total * 8,
        "jit_hot_loop has {flat} of {} flat",
        s.total
    );
    for f in ["run_jit", "main"] {
        assert!(
            s.cum(f) * 10 >= s.total * 8,
            "{f} is under {} of the stacks: {:?}",
            s.cum(f),
            s.functions()
        );
    }
    // The names are in a mapping of their own, the perf map's, and every location in it
    // is named.
    let m = p
        .mapping
        .iter()
        .find(|m| p.str(m.filename).starts_with("/tmp/perf-"))
        .expect("a mapping for the perf map's code");
    assert!(m.has_functions);
    for l in p.location.iter().filter(|l| l.mapping_id == m.id) {
        assert!(!l.line.is_empty(), "an unnamed location in the JIT mapping");
    }
}

/// Node with --perf-basic-prof: a hot JS function, its JS caller and node::Start.
#[test]
fn node_js_frames_are_named() {
    if !have_tool("node", runs("node", "--version"), "nodejs") {
        return;
    }
    let node = std::path::PathBuf::from("node");
    let r = run(
        "jit-node",
        &node,
        &[
            "--perf-basic-prof",
            root().join("c_tests/node_hot.js").to_str().unwrap(),
            "3",
        ],
        &[("RPROF_PROFILES", "cpu")],
    );
    let _map = perf_map_of(&r);
    assert!(r.output.status.success(), "{}", r.stderr());
    let p = r.final_profile(r.pid(), "cpu");
    let s = summarize(&p, "cpu");
    let named = |prefix: &str| -> i64 {
        s.cum
            .iter()
            .filter(|(k, _)| k.starts_with("JS:") && k.contains(prefix))
            .map(|(_, v)| *v)
            .max()
            .unwrap_or(0)
    };
    let hot = named("hotLoop");
    assert!(
        hot * 10 >= s.total * 6,
        "hotLoop has {hot} of {} cum: {:?}",
        s.total,
        s.functions()
    );
    assert!(
        named("callerOfHot") > 0,
        "the JS caller is missing: {:?}",
        s.functions()
    );
    assert!(
        s.cum("node::Start") * 10 >= s.total * 9,
        "node::Start is not below them: {:?}",
        s.functions()
    );
}

/// HotSpot with its perf map written at exit and frame pointers kept: a hot Java method,
/// its compiled Java caller, and the JVM's own frames (JavaMain) below them; without
/// frame pointers the walk stops at the first compiled frame, as the README says.
#[test]
fn jvm_frames_are_named() {
    let present = runs("java", "-version") && runs("javac", "-version");
    if !have_tool("java and javac", present, "default-jdk-headless") {
        return;
    }
    let classes = out_dir("jit-jvm-classes");
    let javac = Command::new("javac")
        .arg("-d")
        .arg(&classes)
        .arg(root().join("c_tests/JvmHot.java"))
        .output()
        .unwrap();
    assert!(javac.status.success(), "{javac:?}");
    let java = std::path::PathBuf::from("java");
    let profile_with = |fp: &str| {
        let cp = classes.to_str().unwrap().to_owned();
        let preserve = format!("-XX:{fp}PreserveFramePointer");
        let r = run(
            &format!("jit-jvm{fp}"),
            &java,
            &[
                "-XX:+UnlockDiagnosticVMOptions",
                "-XX:+DumpPerfMapAtExit",
                &preserve,
                "-XX:CompileCommand=quiet",
                "-XX:CompileCommand=dontinline,JvmHot::hotLoop",
                "-cp",
                &cp,
                "JvmHot",
                "2",
            ],
            &[("RPROF_PROFILES", "cpu")],
        );
        let _map = perf_map_of(&r);
        assert!(r.output.status.success(), "{}", r.stderr());
        summarize(&r.final_profile(r.pid(), "cpu"), "cpu")
    };
    let s = profile_with("+");
    let hot = s.cum("long JvmHot.hotLoop(long)");
    assert!(
        hot * 10 >= s.total * 6,
        "hotLoop has {hot} of {} cum: {:?}",
        s.total,
        s.functions()
    );
    assert!(
        s.cum("long JvmHot.callerOfHot(int)") * 2 >= hot,
        "the compiled Java caller is missing: {:?}",
        s.functions()
    );
    assert!(
        s.cum("JavaMain") * 10 >= s.total * 9,
        "JavaMain is not below them: {:?}",
        s.functions()
    );
    let s = profile_with("-");
    assert!(
        s.flat("long JvmHot.hotLoop(long)") * 10 >= s.total * 6 && s.cum("JavaMain") * 10 < s.total,
        "without frame pointers, a stack that goes on past compiled code: {:?}",
        s.functions()
    );
}

/// A perf map that grows after a dump: the next dump reads what was appended.
#[test]
fn a_grown_perf_map_is_read_again() {
    let r = run(
        "jit-late",
        &build("jit_loop"),
        &["1.6", "0", "late"],
        &[("RPROF_PROFILES", "cpu")],
    );
    let _map = perf_map_of(&r);
    assert!(r.output.status.success(), "{}", r.stderr());
    let pid = r.pid();
    let before = load(&r.dir.join(format!("rprof.{pid}.cpu.1.pb.gz")));
    assert_eq!(
        flat_share(&before, "jit_hot_loop"),
        0.0,
        "named before its line was written"
    );
    let after = r.final_profile(pid, "cpu");
    let share = flat_share(&after, "jit_hot_loop");
    assert!(
        share >= 0.8,
        "jit_hot_loop has {share} of the CPU after its line was appended"
    );
}

/// A jitdump file, mapped as JITs map it for perf, names the code.
#[test]
fn jitdump_names_the_code() {
    let r = run(
        "jit-dump",
        &build("jit_loop"),
        &["1", "0", "jitdump"],
        &[("RPROF_PROFILES", "cpu")],
    );
    let _dump = PerfMapFile(format!("/tmp/jit-{}.dump", r.pid()).into());
    assert!(r.output.status.success(), "{}", r.stderr());
    let p = r.final_profile(r.pid(), "cpu");
    let share = flat_share(&p, "jitdump_hot_loop");
    assert!(
        share >= 0.8,
        "jitdump_hot_loop has {share} of the CPU: {:?}",
        summarize(&p, "cpu").functions()
    );
    assert!(summarize(&p, "cpu").cum("run_jit") > 0);
}
