//! The open+read+close loop, bare vs guarded vs one-`fstat` limit, 1 vs 100,000 tenants,
//! measured in interleaved rounds so drift hits every variant alike, printed as ratios.
//!
//! `cargo run --release -p toctou-guard-bench --bin micro -- [--rounds R] [--iters N] [--tenants T]`

use std::path::PathBuf;
use std::time::Instant;

use toctou_attack::artefacts::{self, OPENLOOP, SHIM};
use toctou_guard_bench::child::{OpenLoop, Spec};
use toctou_guard_bench::fixture;
use toctou_guard_bench::stats::{fmt_ratio, median, range, ratios};

struct Variant {
    name: &'static str,
    /// `Err`: the shim B build did not start with this row's configuration (an older build
    /// may refuse a configuration it predates); the row says so and the others run.
    child: Result<OpenLoop, String>,
    ns_per_iter: Vec<f64>,
    rss_start: (u64, u64),
}

/// The named variant's per-round ns/iter (empty when that variant was not run). A function,
/// not a closure: `variants` is borrowed mutably between the two places that read it.
fn ns_per_iter(variants: &[Variant], name: &str) -> Vec<f64> {
    variants
        .iter()
        .find(|v| v.name == name)
        .map(|v| v.ns_per_iter.clone())
        .unwrap_or_default()
}

fn arg<T: std::str::FromStr>(args: &[String], flag: &str, default: T) -> T {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("micro: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "usage: micro [--rounds R (7)] [--iters N per round (200000)] [--tenants T (100000)] [--compare-so LIB] [--wall]\n\nTimes are the child's CPU time (user + system) unless --wall.\n--compare-so adds rows for a second build of the shim (e.g. a patched one), measured in the same rounds."
        );
        return Ok(());
    }
    let rounds: usize = arg(&args, "--rounds", 7).clamp(1, 1000);
    let iters: u64 = arg(&args, "--iters", 200_000).clamp(1, 100_000_000);
    let tenants: u64 = arg(&args, "--tenants", 100_000).clamp(1, 10_000_000);
    let use_wall = args.iter().any(|a| a == "--wall");

    let so = SHIM.locate()?;
    let so_b: Option<PathBuf> = args
        .iter()
        .position(|a| a == "--compare-so")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let openloop = OPENLOOP.locate()?;
    let t0 = Instant::now();
    let fx = fixture::micro(tenants).map_err(|e| format!("fixture: {e}"))?;
    eprintln!(
        "fixture: {} ({} tenants, ready in {:.1}s)",
        fx.base.display(),
        tenants,
        t0.elapsed().as_secs_f64()
    );
    eprintln!("shim: {}", artefacts::describe(&so));
    if let Some(b) = &so_b {
        eprintln!("shim B: {}", artefacts::describe(b));
    }

    let prefix = fx.tenant_prefix();
    let outside = fx.outside_prefix();
    let conf = fx.config();
    let big = fx.config_big_cache();
    let maps = fx.config_many_maps()?;
    let compiled = fx.config_many_maps_compiled()?;
    let slots4096 = fx.config_slots(4096)?;
    type Row<'a> = (&'static str, &'a str, &'a str, u64, bool, Option<&'a PathBuf>);
    let mut rows: Vec<Row<'_>> = vec![
        ("1t bare", &prefix, fixture::Micro::SUFFIX, 1, false, None),
        (
            "1t +fstat (limit)",
            &prefix,
            fixture::Micro::SUFFIX,
            1,
            true,
            None,
        ),
        ("1t +shim", &prefix, fixture::Micro::SUFFIX, 1, false, Some(&conf)),
        ("outside root +shim", &outside, "", 0, false, Some(&conf)),
        ("outside root bare", &outside, "", 0, false, None),
        (
            "1t +shim, 100k map lines",
            &prefix,
            fixture::Micro::SUFFIX,
            1,
            false,
            Some(&maps),
        ),
        (
            "outside root +shim, 100k map lines",
            &outside,
            "",
            0,
            false,
            Some(&maps),
        ),
        (
            "1t +shim, 100k maps compiled",
            &prefix,
            fixture::Micro::SUFFIX,
            1,
            false,
            Some(&compiled),
        ),
        (
            "outside root +shim, 100k maps compiled",
            &outside,
            "",
            0,
            false,
            Some(&compiled),
        ),
        (
            "outside root, relative +shim",
            "outside/i",
            "",
            0,
            false,
            Some(&conf),
        ),
        ("outside root, relative bare", "outside/i", "", 0, false, None),
        (
            "100kt bare",
            &prefix,
            fixture::Micro::SUFFIX,
            tenants,
            false,
            None,
        ),
        (
            "100kt +fstat (limit)",
            &prefix,
            fixture::Micro::SUFFIX,
            tenants,
            true,
            None,
        ),
        (
            "100kt +shim (default slots)",
            &prefix,
            fixture::Micro::SUFFIX,
            tenants,
            false,
            Some(&conf),
        ),
        (
            "100kt +shim (4096 slots)",
            &prefix,
            fixture::Micro::SUFFIX,
            tenants,
            false,
            Some(&slots4096),
        ),
        (
            "100kt +shim (131072 slots)",
            &prefix,
            fixture::Micro::SUFFIX,
            tenants,
            false,
            Some(&big),
        ),
        // The same tenants drawn Zipf(1): a few sites get most requests.
        (
            "100kt zipf bare",
            &prefix,
            fixture::Micro::SUFFIX,
            tenants,
            false,
            None,
        ),
        (
            "100kt zipf +fstat (limit)",
            &prefix,
            fixture::Micro::SUFFIX,
            tenants,
            true,
            None,
        ),
        (
            "100kt zipf +shim (default slots)",
            &prefix,
            fixture::Micro::SUFFIX,
            tenants,
            false,
            Some(&conf),
        ),
        (
            "100kt zipf +shim (4096 slots)",
            &prefix,
            fixture::Micro::SUFFIX,
            tenants,
            false,
            Some(&slots4096),
        ),
    ];
    if so_b.is_some() {
        rows.extend([
            (
                "1t +shim B",
                prefix.as_str(),
                fixture::Micro::SUFFIX,
                1,
                false,
                Some(&conf),
            ),
            (
                "outside root +shim B",
                outside.as_str(),
                "",
                0,
                false,
                Some(&conf),
            ),
            (
                "100kt +shim B (default slots)",
                prefix.as_str(),
                fixture::Micro::SUFFIX,
                tenants,
                false,
                Some(&conf),
            ),
            (
                "100kt zipf +shim B (default slots)",
                prefix.as_str(),
                fixture::Micro::SUFFIX,
                tenants,
                false,
                Some(&conf),
            ),
            (
                "100kt zipf +shim B (4096 slots)",
                prefix.as_str(),
                fixture::Micro::SUFFIX,
                tenants,
                false,
                Some(&slots4096),
            ),
            (
                "1t +shim B, 100k map lines",
                prefix.as_str(),
                fixture::Micro::SUFFIX,
                1,
                false,
                Some(&maps),
            ),
            (
                "outside root +shim B, 100k map lines",
                outside.as_str(),
                "",
                0,
                false,
                Some(&maps),
            ),
            (
                "outside root, relative +shim B",
                "outside/i",
                "",
                0,
                false,
                Some(&conf),
            ),
        ] as [Row<'_>; 8]);
    }
    let mut variants = Vec::new();
    for (name, prefix, suffix, count, extra_fstat, guard) in rows {
        let lib = match (&so_b, name.contains("shim B")) {
            (Some(b), true) => b.as_path(),
            _ => so.as_path(),
        };
        // The "outside" file is `{base}/outside/i0.html`: index 0 of a one-file pattern.
        let (prefix, suffix, count) = if count == 0 {
            (prefix.to_string(), ".html", 1)
        } else {
            (prefix.to_string(), suffix, count)
        };
        let spec = Spec {
            openloop: &openloop,
            prefix: &prefix,
            suffix,
            count,
            extra_fstat,
            zipf: name.contains("zipf"),
            guard: guard.map(|c| (lib, c.as_path())),
            // Relative prefixes are relative to the fixture's base directory.
            cwd: Some(fx.base.as_path()),
        };
        let started = OpenLoop::spawn(&spec).and_then(|mut c| Ok((c.rss()?, c)));
        let (child, rss_start) = match started {
            Ok((rss, c)) => (Ok(c), rss),
            Err(e) if name.contains("shim B") => {
                eprintln!("{name}: refused ({e}; the shim's message is above)");
                (Err(e), (0, 0))
            }
            Err(e) => return Err(format!("{name}: {e}")),
        };
        variants.push(Variant {
            name,
            child,
            ns_per_iter: Vec::new(),
            rss_start,
        });
    }

    // Warm-up: one full pass over the tenants for every child (dentries, page cache, shim
    // cache), then the timed rounds.
    for v in &mut variants {
        if let Ok(c) = &mut v.child {
            c.run(tenants.min(iters).max(10_000))?;
        }
    }
    for round in 0..rounds {
        // Rotate the starting variant so no one is always first after a pause.
        let n = variants.len();
        for k in 0..n {
            let v = &mut variants[(k + round) % n];
            let Ok(child) = &mut v.child else { continue };
            let (wall, cpu) = child.run_both(iters)?;
            let d = if use_wall { wall } else { cpu };
            v.ns_per_iter.push(d.as_nanos() as f64 / iters as f64);
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }

    let find = |name: &str| ns_per_iter(&variants, name);
    let bare1 = find("1t bare");
    let fstat1 = find("1t +fstat (limit)");
    let bare100k = find("100kt bare");
    let fstat100k = find("100kt +fstat (limit)");
    let bare_out = find("outside root bare");
    let bare_rel = find("outside root, relative bare");
    let shim1 = find("1t +shim");
    let shim1_b = find("1t +shim B");
    let bare_zipf = find("100kt zipf bare");
    let fstat_zipf = find("100kt zipf +fstat (limit)");

    println!(
        "\nopen+read+close of a {}-byte file, {rounds} rounds x {iters} iterations, interleaved; {} tenants; {} time",
        fixture::SMALL_FILE_BYTES,
        tenants,
        if use_wall { "wall" } else { "CPU" }
    );
    println!(
        "| variant | ns/iter median [min–max] | ratio to bare | ratio to +fstat limit | VmRSS start→end kB | VmHWM start→end kB |"
    );
    println!("|---|---|---|---|---|---|");
    for v in &mut variants {
        let (bare, limit) = if v.name.starts_with("100kt zipf") {
            (&bare_zipf, &fstat_zipf)
        } else if v.name.starts_with("100kt") {
            (&bare100k, &fstat100k)
        } else if v.name.starts_with("outside root, relative") {
            (&bare_rel, &bare_rel)
        } else if v.name.starts_with("outside") {
            (&bare_out, &bare_out)
        } else {
            (&bare1, &fstat1)
        };
        let child = match &mut v.child {
            Ok(c) => c,
            Err(e) => {
                println!(
                    "| {} | refused: shim B stopped the child at start ({e}; its reason is on stderr) | n/a | n/a | – | – |",
                    v.name
                );
                continue;
            }
        };
        let (lo, hi) = range(&v.ns_per_iter);
        let end = child.rss()?;
        println!(
            "| {} | {:.0} [{:.0}–{:.0}] | {} | {} | {}→{} | {}→{} |",
            v.name,
            median(&v.ns_per_iter),
            lo,
            hi,
            fmt_ratio(&ratios(&v.ns_per_iter, bare)),
            if v.name.starts_with("outside") {
                "–".to_string()
            } else {
                fmt_ratio(&ratios(&v.ns_per_iter, limit))
            },
            v.rss_start.0,
            end.0,
            v.rss_start.1,
            end.1
        );
    }
    let per_tenant_rows: Vec<(&str, Vec<f64>)> = variants
        .iter()
        .filter(|v| v.name.starts_with("100kt") && v.name.contains("shim"))
        .map(|v| (v.name, v.ns_per_iter.clone()))
        .collect();
    for (name, shim100k) in per_tenant_rows {
        let bare_t = if name.contains("zipf") {
            &bare_zipf
        } else {
            &bare100k
        };
        let shim1 = if name.contains("shim B") { &shim1_b } else { &shim1 };
        let per_open: Vec<f64> = ratios(&shim100k, shim1);
        let guard_cost =
            |shim: &[f64], bare: &[f64]| -> Vec<f64> { shim.iter().zip(bare).map(|(s, b)| s - b).collect() };
        let extra1 = guard_cost(shim1, &bare1);
        let extra100k = guard_cost(&shim100k, bare_t);
        println!(
            "\n{name} vs 1 tenant: per-open cost {}; guard's own ns per open: 1 tenant {:.0}, {tenants} tenants {:.0}; (shim/bare at {tenants}) / (shim/bare at 1) = {}",
            fmt_ratio(&per_open),
            median(&extra1),
            median(&extra100k),
            fmt_ratio(&ratios(&ratios(&shim100k, bare_t), &ratios(shim1, &bare1)))
        );
    }
    // Issue 13's goal: a 100,000-map configuration costs an open what a one-line one does.
    let find = |name: &str| ns_per_iter(&variants, name);
    let shim_out = find("outside root +shim");
    for (name, inside, outside) in [
        (
            "text",
            "1t +shim, 100k map lines",
            "outside root +shim, 100k map lines",
        ),
        (
            "compiled",
            "1t +shim, 100k maps compiled",
            "outside root +shim, 100k maps compiled",
        ),
    ] {
        println!(
            "\n100k map lines, {name}, vs a one-line config: inside a root {}, outside every root {}",
            fmt_ratio(&ratios(&find(inside), &shim1)),
            fmt_ratio(&ratios(&find(outside), &shim_out))
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nload average at the end: {}", load.trim());
    Ok(())
}
