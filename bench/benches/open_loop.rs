//! open + read + close of a 512-byte file in a child process: bare, bare + one `fstat`
//! (the physical limit of a check on the descriptor), and with the shim under `LD_PRELOAD`;
//! with 1 tenant and with 100,000 distinct tenant directories.
//!
//! Each child is started once per benchmark and asked for `iters` iterations at a time
//! (`iter_custom`); it times itself, so neither process start nor the pipe is measured.
//! For ratios taken in one interleaved run, and RSS, use the `micro` binary.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use toctou_guard_bench::child::{OpenLoop, Spec};
use toctou_guard_bench::fixture;

const TENANTS: u64 = 100_000;

fn bench(c: &mut Criterion) {
    let openloop = PathBuf::from(env!("CARGO_BIN_EXE_openloop"));
    let so = match toctou_attack::artefacts::SHIM.locate() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("open_loop: {e}");
            return;
        }
    };
    let fx = fixture::micro(TENANTS).expect("fixture");
    let prefix = fx.tenant_prefix();
    let conf = fx.config();
    for (group, count) in [
        ("open+read+close/1 tenant", 1),
        ("open+read+close/100,000 tenants", TENANTS),
    ] {
        let mut g = c.benchmark_group(group);
        g.sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        for (name, extra_fstat, guard) in [
            ("bare", false, None),
            ("bare + fstat (limit)", true, None),
            ("shim", false, Some((so.as_path(), conf.as_path()))),
        ] {
            let mut child = OpenLoop::spawn(&Spec {
                openloop: &openloop,
                prefix: &prefix,
                suffix: fixture::Micro::SUFFIX,
                count,
                extra_fstat,
                zipf: false,
                guard,
                cwd: None,
            })
            .expect("spawn openloop");
            child.run(count.max(10_000)).expect("warm-up pass");
            g.bench_function(name, |b| {
                b.iter_custom(|iters| child.run(iters).expect("openloop run"))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
