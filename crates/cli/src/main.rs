//! `rprof`: run a program under librprof.so and read the profiles it writes, without Go.
//!
//!     rprof run [-o PREFIX] [--profiles LIST] [--cpu-hz N] [--heap-rate N]
//!               [--block-rate NS] [--mutex-fraction N] -- PROGRAM [ARGS...]
//!     rprof top FILE [-n N] [--sample-index NAME] [--cum]
//!     rprof flame FILE [-o OUT.svg] [--sample-index NAME]
//!     rprof inspect FILE
//!     rprof diff BASE NEW [--sample-index NAME] [-n N]
//!
//! Errors are one line on stderr starting `rprof:` and a non-zero exit status.

mod diff;
mod flame;
mod inspect;
mod run;
mod top;
mod units;

use std::process::ExitCode;

use rprof_profile::Profile;

const USAGE: &str = "usage:
  rprof run [-o PREFIX] [--profiles LIST] [--cpu-hz N] [--heap-rate N] [--block-rate NS] [--mutex-fraction N] -- PROGRAM [ARGS...]
  rprof top FILE [-n N] [--sample-index NAME] [--cum]
  rprof flame FILE [-o OUT.svg] [--sample-index NAME]
  rprof inspect FILE
  rprof diff BASE NEW [--sample-index NAME] [-n N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run::main(&args[1..]),
        Some("top") => top_main(&args[1..]),
        Some("inspect") => inspect_main(&args[1..]),
        Some("flame") => flame_main(&args[1..]),
        Some("diff") => diff_main(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => Err(format!(
            "unknown command {other:?} (commands: run, top, flame, inspect, diff; see rprof --help)"
        )),
        None => Err(
            "no command given (commands: run, top, flame, inspect, diff; see rprof --help)".into(),
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
}

fn top_main(args: &[String]) -> Result<ExitCode, String> {
    let a = parse_args(args, &["-n", "--sample-index"], &["--cum"])?;
    let file = a.one_file()?;
    let limit = match a.value("-n") {
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| format!("-n {n:?} is not a number"))?,
        ),
        None => None,
    };
    let p = load(file)?;
    let text = top::report(
        &p,
        file,
        &top::TopOptions {
            sample_index: a.value("--sample-index"),
            limit,
            by_cum: a.has("--cum"),
        },
    )?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn inspect_main(args: &[String]) -> Result<ExitCode, String> {
    let a = parse_args(args, &[], &[])?;
    let file = a.one_file()?;
    print!("{}", inspect::report(&load(file)?));
    Ok(ExitCode::SUCCESS)
}

fn flame_main(args: &[String]) -> Result<ExitCode, String> {
    let a = parse_args(args, &["-o", "--sample-index"], &[])?;
    let file = a.one_file()?;
    let p = load(file)?;
    let out = a.value("-o").map(str::to_owned).unwrap_or_else(|| {
        format!(
            "{}.svg",
            file.trim_end_matches(".gz").trim_end_matches(".pb")
        )
    });
    let svg = flame::svg(&p, a.value("--sample-index"), file)?;
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
    let a = parse_args(args, &["-n", "--sample-index"], &[])?;
    let [base, new] = a.positional.as_slice() else {
        return Err("give two profile files: rprof diff BASE NEW".into());
    };
    let text = diff::report(
        &load(base)?,
        &load(new)?,
        a.value("--sample-index"),
        limit(&a)?,
    )?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
