//! The rule alone, in-process: path classification + decision, and the tenant owner cache
//! with 1 and 100,000 tenants.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use toctou_policy::{Config, OwnerCache, Policy, ScratchPath, Target};

fn policy() -> Policy {
    let text = "root /home/*/public_html\nallow_uid 0\n";
    Policy::new(Config::parse(text, Path::new("/etc/toctou-guard.conf")).expect("valid config"))
}

fn classify_decide(c: &mut Criterion) {
    let p = policy();
    let mut g = c.benchmark_group("policy/classify+decide");
    let mut out = ScratchPath::new();
    g.bench_function("guarded, depth 4", |b| {
        b.iter(|| {
            let t = p.classify(
                None,
                black_box(b"/home/alice/public_html/d1/d2/d3/small.html"),
                &mut out,
            );
            match t {
                Target::Guarded { .. } => black_box(p.decide(black_box(1001), black_box(1001))),
                _ => unreachable!("must be guarded"),
            }
        })
    });
    g.bench_function("outside every root", |b| {
        b.iter(|| black_box(p.classify(None, black_box(b"/usr/share/nginx/html/index.html"), &mut out)))
    });
    g.bench_function("relative, with dirfd base", |b| {
        b.iter(|| {
            black_box(p.classify(
                Some(black_box(b"/home/alice/public_html/d1")),
                black_box(b"d2/../d2/d3/small.html"),
                &mut out,
            ))
        })
    });
    g.bench_function("ScratchPath::new (4 KiB zeroed)", |b| {
        b.iter(|| black_box(ScratchPath::new()))
    });
    g.finish();
}

fn owner_cache(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy/owner cache");
    let one = OwnerCache::new(4096, 1000, [7, 11]);
    let k = one.key(b"/home/alice");
    one.put(k, 1001, 1);
    g.bench_function("1 tenant: key + get (hit)", |b| {
        b.iter(|| black_box(one.get(one.key(black_box(b"/home/alice")), 2)))
    });
    let names: Vec<String> = (0..100_000).map(|i| format!("/home/t{i}")).collect();
    for slots in [4096usize, 131_072] {
        let cache = OwnerCache::new(slots, 1000, [7, 11]);
        let mut i = 0usize;
        g.bench_function(
            format!("100,000 tenants round-robin, {slots} slots: key + get, put on miss"),
            |b| {
                b.iter(|| {
                    let name = names[i % names.len()].as_bytes();
                    i += 1;
                    let key = cache.key(name);
                    if cache.get(key, 2).is_none() {
                        cache.put(key, 1001, 1);
                    }
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, classify_decide, owner_cache);
criterion_main!(benches);
