//! Path classification against the reference walk: a few trees (roots with any number of
//! `*`, maps), then paths and bases made of a small alphabet of components (`home`, `..`,
//! empty, ...) or any bytes. `Policy::classify` (fresh, reused and small buffers) and
//! `Policy::classify_clean` must give the reference's root, tenant, expected owner and
//! normalised path, or its refusal (`..` out of the tenant, too long).
#![no_main]

use std::path::Path;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use toctou_guard_fuzz::{RefRoot, check_classify, join_path, ref_parse_pattern, ref_roots};
use toctou_policy::{Config, OwnerRule, Policy, RootPattern, ScratchPath};

const WORDS: [&[u8]; 14] = [
    b"{*}",
    b"{x}",
    b"home",
    b"a",
    b"b",
    b"public_html",
    b"x",
    b"y",
    b"srv",
    b"shop",
    b".",
    b"..",
    b"",
    b"*",
];

#[derive(Arbitrary, Debug)]
enum Comp {
    Word(u8),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Tree {
    comps: Vec<Comp>,
    map: Option<u32>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    trees: Vec<Tree>,
    euid: bool,
    base: Option<Vec<Comp>>,
    paths: Vec<(bool, Vec<Comp>)>,
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
    let mut cfg = Config::empty(Path::new("fuzz.conf"));
    cfg.owner = if input.euid {
        OwnerRule::Euid
    } else {
        OwnerRule::Tenant
    };
    // The reference's own order: maps first, then roots, each in the order added.
    let (mut maps, mut roots) = (Vec::new(), Vec::new());
    for t in input.trees.iter().take(8) {
        let text = String::from_utf8_lossy(&path_of(&t.comps, true)).into_owned();
        let Ok(pattern) = RootPattern::parse(&text, t.map.is_none()) else {
            continue;
        };
        if cfg.add_root(pattern, t.map).is_ok() {
            let pat = ref_parse_pattern(&text, t.map.is_none()).expect("the reference parses it too");
            let r = RefRoot {
                pat,
                fixed_uid: t.map,
            };
            if t.map.is_some() {
                maps.push(r)
            } else {
                roots.push(r)
            }
        }
    }
    maps.append(&mut roots);
    let policy = Policy::new(cfg);
    let from_config = ref_roots(policy.config());
    assert!(
        maps.len() == from_config.len()
            && maps
                .iter()
                .zip(&from_config)
                .all(|(a, b)| a.pat == b.pat && a.fixed_uid == b.fixed_uid),
        "Config::roots is not maps first, then roots, in order"
    );
    let base = input.base.as_ref().map(|b| path_of(b, true));
    let mut scratch = ScratchPath::new();
    for (absolute, comps) in input.paths.iter().take(16) {
        let path = path_of(comps, *absolute);
        if let Err(e) = check_classify(&policy, &maps, base.as_deref(), &path, &mut scratch) {
            panic!("{e}");
        }
    }
});
