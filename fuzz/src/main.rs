//! `lossgraph-fuzz`: runs the fuzz targets of [`lossgraph_fuzz::targets`].
//!
//! ```text
//! lossgraph-fuzz run TARGET [--iters N] [--seconds S] [--seed K] [--mem-mb M] [--timeout-ms T] [--out DIR]
//! lossgraph-fuzz replay TARGET FILE...
//! ```
//! `run` prints the executions and every unique finding and exits 1 when
//! there is one; `replay` runs saved inputs in-process and exits 1 if any
//! panics or fails. Targets: ir, keras_json, keras_archive, safetensors, jit.

use lossgraph_fuzz::harness::{self, Limits, Outcome};
use lossgraph_fuzz::targets::{Ctx, Target};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn target(name: Option<&String>) -> Result<Target, String> {
    let name = name.ok_or("missing TARGET")?;
    Target::from_name(name).ok_or_else(|| {
        let all: Vec<&str> = Target::ALL.iter().map(|t| t.name()).collect();
        format!("unknown target '{name}' (one of {})", all.join(", "))
    })
}

fn num<T: std::str::FromStr>(s: Option<&String>, what: &str) -> Result<T, String> {
    s.and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{what}: expected a number"))
}

fn real_main() -> Result<ExitCode, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("worker") => {
            let t = target(args.get(1))?;
            harness::worker(
                t,
                num(args.get(2), "seed")?,
                num(args.get(3), "iters")?,
                num(args.get(4), "deadline")?,
                num(args.get(5), "mem")?,
                Duration::from_millis(num(args.get(6), "timeout")?),
                &PathBuf::from(args.get(7).ok_or("missing state file")?),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Some("replay") => {
            let t = target(args.get(1))?;
            harness::quiet_panics();
            let mut ctx = Ctx::new(t, std::env::temp_dir().join("lossgraph-fuzz-replay.bin"))?;
            let mut bad = 0;
            for f in &args[2..] {
                let input = std::fs::read(f).map_err(|e| format!("{f}: {e}"))?;
                let out = harness::run_one(&mut ctx, &input);
                if out != Outcome::Ok {
                    bad += 1;
                }
                println!("{f}: {out:?}");
            }
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Some("run") => {
            let t = target(args.get(1))?;
            let mut limits = Limits {
                iters: u64::MAX,
                time: Duration::from_secs(60),
                mem: 2 << 30,
                timeout: Duration::from_secs(if t == Target::Jit { 20 } else { 5 }),
            };
            let (mut seed, mut out) = (1u64, PathBuf::from("fuzz-out"));
            let mut it = args[2..].iter();
            while let Some(flag) = it.next() {
                let v = it.next();
                match flag.as_str() {
                    "--iters" => limits.iters = num(v, flag)?,
                    "--seconds" => limits.time = Duration::from_secs(num(v, flag)?),
                    "--seed" => seed = num(v, flag)?,
                    "--mem-mb" => limits.mem = num::<u64>(v, flag)? << 20,
                    "--timeout-ms" => limits.timeout = Duration::from_millis(num(v, flag)?),
                    "--out" => out = PathBuf::from(v.ok_or("--out: missing DIR")?),
                    other => return Err(format!("unknown flag {other}")),
                }
            }
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let t0 = Instant::now();
            let r = harness::campaign(&exe, t, seed, &limits, &out)?;
            let secs = t0.elapsed().as_secs_f64();
            println!(
                "target {}: {} executions in {secs:.1} s ({:.0}/s), {} worker restarts, {} unique findings",
                t.name(),
                r.execs,
                r.execs as f64 / secs.max(1e-9),
                r.restarts,
                r.findings.len()
            );
            for (key, (kind, n, file, msg)) in &r.findings {
                println!(
                    "  {kind} ×{n}: {key}\n    input {}\n    {msg}",
                    file.display()
                );
            }
            Ok(if r.findings.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        _ => Err("usage: lossgraph-fuzz run TARGET [flags] | replay TARGET FILE...".into()),
    }
}
