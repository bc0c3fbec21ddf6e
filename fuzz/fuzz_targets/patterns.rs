//! Root patterns: `RootPattern::parse` (root and map flavours, any number of `*`, tenant
//! markers `{...}`) against the reference parser, `matches`, `match_clean` and
//! `could_lie_below` against the reference matchers on probe paths, and
//! `Policy::may_guard_below` on each probe as a directory.
#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use toctou_guard_fuzz::{check_may_guard_below, check_pattern, join_path, ref_roots};
use toctou_policy::{Config, Policy, RootPattern};

const WORDS: [&[u8]; 19] = [
    b"{*}",
    b"{x}",
    b"{}",
    b"{a*}",
    b"a{",
    b"home",
    b"a",
    b"b",
    b"public_html",
    b"x",
    b"srv",
    b"shop",
    b".",
    b"..",
    b"",
    b"*",
    b"a*",
    b"?",
    b"[",
];

#[derive(Arbitrary, Debug)]
enum Comp {
    Word(u8),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Text {
    Comps(bool, Vec<Comp>),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    trees: Vec<(Text, bool)>,
    probes: Vec<(bool, Vec<Comp>)>,
}

fn bytes(c: &Comp) -> &[u8] {
    match c {
        Comp::Word(i) => WORDS[usize::from(*i) % WORDS.len()],
        Comp::Raw(v) => v,
    }
}

fn path_of(comps: &[Comp], absolute: bool) -> Vec<u8> {
    join_path(comps.iter().map(bytes), absolute)
}

fuzz_target!(|input: Input| {
    let probes: Vec<Vec<u8>> = input
        .probes
        .iter()
        .take(12)
        .map(|(a, c)| path_of(c, *a))
        .collect();
    let mut cfg = Config::empty(Path::new("fuzz.conf"));
    for (text, is_root) in input.trees.iter().take(6) {
        let text = match text {
            Text::Comps(absolute, comps) => String::from_utf8_lossy(&path_of(comps, *absolute)).into_owned(),
            Text::Raw(s) => s.clone(),
        };
        if let Err(e) = check_pattern(&text, *is_root, &probes) {
            panic!("{e}");
        }
        if let Ok(p) = RootPattern::parse(&text, *is_root) {
            let _ = cfg.add_root(p, if *is_root { None } else { Some(1000) });
        }
    }
    let policy = Policy::new(cfg);
    let roots = ref_roots(policy.config());
    let suffixes: Vec<Vec<&[u8]>> = input
        .probes
        .iter()
        .take(12)
        .map(|(_, c)| c.iter().map(bytes).filter(|b| !b.contains(&b'/')).collect())
        .collect();
    for dir in &probes {
        if let Err(e) = check_may_guard_below(&policy, &roots, dir, &suffixes) {
            panic!("{e}");
        }
    }
});
