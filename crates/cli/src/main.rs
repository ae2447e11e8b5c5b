//! `rprof`: run a program under librprof.so and read the profiles it writes, without Go.
//!
//!     rprof run [OPTIONS] [--] PROGRAM [ARGS...]
//!     rprof top FILE... [-n N] [--sample-index NAME] [--cum]
//!     rprof flame FILE... [-o OUT.svg] [--sample-index NAME]
//!     rprof inspect FILE
//!     rprof lib | rprof --version
//!     rprof diff BASE NEW | rprof diff --base FILE... FILE... [--sample-index NAME] [-n N]
//!
//! Several files are merged as pprof merges them. Errors are one line on stderr starting
//! `rprof:` and a non-zero exit status.

mod diff;
mod flame;
mod inspect;
mod library;
mod run;
mod top;
mod units;

use std::process::ExitCode;

use rprof_profile::Profile;

const USAGE: &str = "usage:
  rprof run [OPTIONS] [--] PROGRAM [ARGS...]   run PROGRAM with profiling; see rprof run --help
  rprof top FILE... [-n N] [--sample-index NAME] [--cum]
  rprof flame FILE... [-o OUT.svg] [--sample-index NAME]
  rprof inspect FILE
  rprof lib                                    the path of the librprof.so rprof run preloads
  rprof --version
  rprof diff BASE NEW [--sample-index NAME] [-n N]
  rprof diff --base FILE [--base FILE]... FILE... [--sample-index NAME] [-n N]
Several FILEs are merged, as go tool pprof merges them. rprof COMMAND --help says more.";

const TOP_HELP: &str = "usage: rprof top FILE... [-n N] [--sample-index NAME] [--cum]
The functions of the profile(s) as `go tool pprof -top` lists them: flat (samples whose
innermost frame is the function) and cum (samples with it anywhere on the stack), sorted by
flat, or by cum with --cum. Several files (say a run's snapshots and its exit file) are
merged first; they must be of one kind.
  -n N                  show the first N rows
  --sample-index NAME   the value to show (cpu, samples; alloc_space, inuse_space, ...;
                        contentions, delay); the default is pprof's
  --cum                 sort by cum";

const FLAME_HELP: &str = "usage: rprof flame FILE... [-o OUT.svg] [--sample-index NAME]
Draws an interactive SVG flame graph (root at the bottom) of the profile(s), merged.
  -o OUT.svg            where to write it (default: the first file's name with .svg)
  --sample-index NAME   the value to draw (default: pprof's)";

const INSPECT_HELP: &str = "usage: rprof inspect FILE
What a profile file holds: sample types, period, time, counts, lost samples, mappings and
their symbol flags, comments, and for a heap-peak file when the peak was and its size.";

const DIFF_HELP: &str = "usage: rprof diff BASE NEW [--sample-index NAME] [-n N]
       rprof diff --base FILE [--base FILE]... FILE... [--sample-index NAME] [-n N]
The top table of NEW minus BASE, as `go tool pprof -top -diff_base BASE NEW` prints it;
percentages are of BASE's total. Several base or new files are merged first.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run::main(&args[1..]),
        Some("top") => top_main(&args[1..]),
        Some("inspect") => inspect_main(&args[1..]),
        Some("flame") => flame_main(&args[1..]),
        Some("diff") => diff_main(&args[1..]),
        Some("lib") => run::find_library().map(|p| {
            println!("{}", p.display());
            ExitCode::SUCCESS
        }),
        Some("-V" | "--version" | "version") => {
            println!("rprof {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => Err(format!(
            "unknown command {other:?} (commands: run, top, flame, inspect, diff, lib; see rprof --help)"
        )),
        None => Err(
            "no command given (commands: run, top, flame, inspect, diff, lib; see rprof --help)".into(),
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rprof: {e}");
            ExitCode::from(2)
        }
    }
}

/// `-h`/`--help` among a subcommand's arguments: its usage on stdout.
fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "-h" || a == "--help")
}

/// Reads and decodes a profile file (gzip or raw), with errors that name the file.
pub fn load(path: &str) -> Result<Profile, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let p = rprof_profile::decode(&bytes).map_err(|e| format!("{path}: {e}"))?;
    if p.sample_type.is_empty() {
        return Err(format!("{path}: not a profile (no sample types)"));
    }
    Ok(p)
}

/// Splits `args` into one positional argument and `--flag value` / `--switch` options.
struct Args<'a> {
    positional: Vec<&'a str>,
    options: Vec<(&'a str, Option<&'a str>)>,
}

fn parse_args<'a>(
    args: &'a [String],
    with_value: &[&str],
    switches: &[&str],
) -> Result<Args<'a>, String> {
    let mut out = Args {
        positional: Vec::new(),
        options: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if with_value.contains(&a.as_str()) {
            let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
            out.options.push((a, Some(v)));
        } else if switches.contains(&a.as_str()) {
            out.options.push((a, None));
        } else if a.starts_with('-') && a.len() > 1 {
            return Err(format!("unknown option {a}"));
        } else {
            out.positional.push(a);
        }
    }
    Ok(out)
}

impl<'a> Args<'a> {
    fn value(&self, name: &str) -> Option<&'a str> {
        self.options
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| *v)
    }
    fn values(&self, name: &str) -> Vec<&'a str> {
        self.options
            .iter()
            .filter(|(n, _)| *n == name)
            .filter_map(|(_, v)| *v)
            .collect()
    }
    fn has(&self, name: &str) -> bool {
        self.options.iter().any(|(n, _)| *n == name)
    }
    fn one_file(&self) -> Result<&'a str, String> {
        match self.positional.as_slice() {
            [f] => Ok(f),
            [] => Err("no profile file given".into()),
            _ => Err("give exactly one profile file".into()),
        }
    }
    fn some_files(&self) -> Result<&[&'a str], String> {
        if self.positional.is_empty() {
            Err("no profile file given".into())
        } else {
            Ok(&self.positional)
        }
    }
}

/// Loads `files` and merges them into one profile, as pprof does.
pub fn load_merged(files: &[&str]) -> Result<Profile, String> {
    let profiles = files
        .iter()
        .map(|f| load(f))
        .collect::<Result<Vec<_>, _>>()?;
    rprof_profile::merge(profiles, files)
}

fn top_main(args: &[String]) -> Result<ExitCode, String> {
    if wants_help(args) {
        println!("{TOP_HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let a = parse_args(args, &["-n", "--sample-index"], &["--cum"])?;
    let files = a.some_files()?;
    let limit = limit(&a)?;
    let p = load_merged(files)?;
    let text = top::report(
        &p,
        files[0],
        &top::TopOptions {
            sample_index: a.value("--sample-index"),
            limit,
            by_cum: a.has("--cum"),
        },
    )?;
    print!("{text}");
    if let Some(hint) = top::empty_view_hint(&p, a.value("--sample-index"), files)? {
        eprintln!("rprof: {hint}");
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect_main(args: &[String]) -> Result<ExitCode, String> {
    if wants_help(args) {
        println!("{INSPECT_HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let a = parse_args(args, &[], &[])?;
    let file = a.one_file()?;
    print!("{}", inspect::report(&load(file)?));
    Ok(ExitCode::SUCCESS)
}

fn flame_main(args: &[String]) -> Result<ExitCode, String> {
    if wants_help(args) {
        println!("{FLAME_HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let a = parse_args(args, &["-o", "--sample-index"], &[])?;
    let files = a.some_files()?;
    let p = load_merged(files)?;
    let out = a.value("-o").map(str::to_owned).unwrap_or_else(|| {
        format!(
            "{}.svg",
            files[0].trim_end_matches(".gz").trim_end_matches(".pb")
        )
    });
    if let Some(hint) = top::empty_view_hint(&p, a.value("--sample-index"), files)? {
        return Err(hint);
    }
    let svg = flame::svg(&p, a.value("--sample-index"), &files.join(" "))?;
    std::fs::write(&out, svg).map_err(|e| format!("{out}: {e}"))?;
    eprintln!("rprof: wrote {out}");
    Ok(ExitCode::SUCCESS)
}

fn limit(a: &Args<'_>) -> Result<Option<usize>, String> {
    a.value("-n")
        .map(|n| {
            n.parse::<usize>()
                .map_err(|_| format!("-n {n:?} is not a number"))
        })
        .transpose()
}

fn diff_main(args: &[String]) -> Result<ExitCode, String> {
    if wants_help(args) {
        println!("{DIFF_HELP}");
        return Ok(ExitCode::SUCCESS);
    }
    let a = parse_args(args, &["-n", "--sample-index", "--base"], &[])?;
    let bases = a.values("--base");
    let (base, new): (Vec<&str>, Vec<&str>) =
        match (bases.is_empty(), a.positional.as_slice()) {
            (true, [base, new]) => (vec![base], vec![new]),
            (true, _) => return Err(
                "give two profile files (rprof diff BASE NEW), or --base FILE and the new files"
                    .into(),
            ),
            (false, []) => return Err("no new profile file given after the --base files".into()),
            (false, new) => (bases, new.to_vec()),
        };
    let text = diff::report(
        &load_merged(&base)?,
        &load_merged(&new)?,
        a.value("--sample-index"),
        limit(&a)?,
    )?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
