//! Every `root` and `map` pattern compiled into one trie of path components, so that finding
//! the root a path enters costs O(its components), whether the configuration has one line or
//! 100,000 `map` lines (one per vhost), and whether the path is under a root or outside all.
//!
//! Each node has its literal children (one compared directly, more in a hash map looked up
//! with the borrowed component: no allocation), at most one `*` child, and the lowest index of a pattern ending there
//! (the first line wins at a tie, as before). A walk keeps the set of nodes still possible
//! (one per way the `*`s can have matched) in a fixed array; a configuration whose `*`s make
//! more than [`MAX_ACTIVE`] of them possible at once answers [`Found::TooMany`], and the
//! caller falls back to trying each pattern.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

use crate::path::{Components, same};
use crate::pattern::RootPattern;

/// Nodes a walk may have active at once.
const MAX_ACTIVE: usize = 16;

/// A multiply-fold hash of 8-byte words (as foldhash's): a few instructions per component
/// where SipHash took ~170. Seeded once per index from `RandomState`, so a configuration
/// generated from names a tenant chose (vhosts) cannot be made to collide in advance and
/// turn the load quadratic; a lookup's bytes cannot degrade a table that is already built.
#[derive(Debug, Clone, Copy)]
struct FoldHash(u64);

impl FoldHash {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;

    #[inline(always)]
    fn mix(&mut self, w: u64) {
        let m = u128::from(self.0 ^ w) * u128::from(Self::K);
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

impl Hasher for FoldHash {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.mix(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut w = [0u8; 8];
            w[..tail.len()].copy_from_slice(tail);
            self.mix(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Seeded(u64);

impl BuildHasher for Seeded {
    type Hasher = FoldHash;

    #[inline]
    fn build_hasher(&self) -> FoldHash {
        FoldHash(self.0)
    }
}

/// A node's literal children: most levels of a configuration have one, compared directly.
#[derive(Debug, Clone, Default)]
enum Literals {
    #[default]
    None,
    One(Box<[u8]>, u32),
    Many(HashMap<Box<[u8]>, u32, Seeded>),
}

impl Literals {
    /// Inline in the walk; the hash map's lookup stays out of line so that it does not make
    /// the walk keep its state on the stack.
    #[inline(always)]
    fn get(&self, comp: &[u8]) -> Option<u32> {
        match self {
            Literals::None => None,
            Literals::One(lit, child) => same(lit, comp).then_some(*child),
            Literals::Many(map) => Self::lookup(map, comp),
        }
    }

    #[inline(never)]
    fn lookup(map: &HashMap<Box<[u8]>, u32, Seeded>, comp: &[u8]) -> Option<u32> {
        map.get(comp).copied()
    }

    /// The child named `lit`, made `next` if there is none.
    fn get_or_insert(&mut self, lit: &[u8], next: u32, seed: Seeded) -> u32 {
        match self {
            Literals::None => {
                *self = Literals::One(lit.into(), next);
                next
            }
            Literals::One(l, child) if **l == *lit => *child,
            Literals::One(l, child) => {
                let mut map = HashMap::with_hasher(seed);
                map.insert(std::mem::take(l), *child);
                map.insert(lit.into(), next);
                *self = Literals::Many(map);
                next
            }
            Literals::Many(map) => *map.entry(lit.into()).or_insert(next),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Literals::None)
    }
}

#[derive(Debug, Clone, Default)]
struct Node {
    literal: Literals,
    star: Option<u32>,
    /// The lowest pattern index ending at this node.
    root: Option<u32>,
    /// Where a run of levels with one literal child each (no `*`, no pattern ending) leads.
    chain: Option<Box<Chain>>,
}

/// A run of levels with one literal child each, taken in one compare of the path's bytes
/// (`/tmp/toctou-attack-…/www` of `root /tmp/toctou-attack-…/www/*/public_html`).
#[derive(Debug, Clone)]
struct Chain {
    /// The literals, joined by `/`.
    text: Box<[u8]>,
    /// The node after the last of them, and how many they are.
    to: u32,
    depth: u32,
}

impl Node {
    /// A level a chain passes through: one literal child, nothing else.
    fn one_way(&self) -> Option<(&[u8], u32)> {
        match (&self.literal, self.star, self.root) {
            (Literals::One(lit, child), None, None) => Some((lit, *child)),
            _ => None,
        }
    }
}

/// The patterns of a configuration, as a trie.
#[derive(Debug, Clone)]
pub(crate) struct RootIndex {
    nodes: Vec<Node>,
}

/// What a walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    Root {
        depth: usize,
        root: usize,
    },
    Nothing,
    /// Too many `*` ways at once: try each pattern instead.
    TooMany,
}

/// The nodes still possible after some components.
struct Active {
    nodes: [u32; MAX_ACTIVE],
    len: usize,
}

impl RootIndex {
    pub(crate) fn new<'a>(patterns: impl Iterator<Item = &'a RootPattern>) -> RootIndex {
        let mut nodes = vec![Node::default()];
        let seed = Seeded(RandomState::new().hash_one(0x746f_6374_6f75_u64));
        for (i, p) in patterns.enumerate() {
            let mut at = 0usize;
            for part in p.parts() {
                let next = nodes.len() as u32;
                let child = match part {
                    Some(lit) => nodes[at].literal.get_or_insert(lit, next, seed),
                    None => *nodes[at].star.get_or_insert(next),
                };
                if child == next {
                    nodes.push(Node::default());
                }
                at = child as usize;
            }
            let root = &mut nodes[at].root;
            *root = Some(root.map_or(i as u32, |r| r.min(i as u32)));
        }
        Self::chain(&mut nodes);
        RootIndex { nodes }
    }

    /// Give each run of two or more one-way levels a [`Chain`] at its top (only there: a
    /// walk enters a run at its top, so the texts add up to the patterns' bytes at most).
    fn chain(nodes: &mut [Node]) {
        let mut inner = vec![false; nodes.len()];
        for n in nodes.iter() {
            if let Some((_, child)) = n.one_way() {
                inner[child as usize] = true;
            }
        }
        for top in 0..nodes.len() {
            if inner[top] {
                continue;
            }
            let (mut text, mut at, mut depth) = (Vec::new(), top, 0);
            while let Some((lit, child)) = nodes[at].one_way() {
                if depth > 0 {
                    text.push(b'/');
                }
                text.extend_from_slice(lit);
                at = child as usize;
                depth += 1;
            }
            if depth >= 2 {
                nodes[top].chain = Some(Box::new(Chain {
                    text: text.into(),
                    to: at as u32,
                    depth,
                }));
            }
        }
    }

    /// One component down from every active node.
    fn step(&self, active: &Active, comp: &[u8]) -> Option<Active> {
        let mut next = Active {
            nodes: [0; MAX_ACTIVE],
            len: 0,
        };
        for &n in &active.nodes[..active.len] {
            let node = &self.nodes[n as usize];
            for child in [node.literal.get(comp), node.star].into_iter().flatten() {
                *next.nodes.get_mut(next.len)? = child;
                next.len += 1;
            }
        }
        Some(next)
    }

    /// The lowest pattern index ending at an active node.
    fn root_of(&self, active: &Active) -> Option<usize> {
        active.nodes[..active.len]
            .iter()
            .filter_map(|&n| self.nodes[n as usize].root)
            .min()
            .map(|r| r as usize)
    }

    fn start() -> Active {
        Active {
            nodes: [0; MAX_ACTIVE],
            len: 1,
        }
    }

    /// A literal child and the `*` child both continue: two nodes possible from here.
    fn pair(literal: u32, star: u32) -> Active {
        let mut nodes = [0; MAX_ACTIVE];
        nodes[0] = literal;
        nodes[1] = star;
        Active { nodes, len: 2 }
    }

    /// The shallowest pattern the path `comps` lies under (a walk down it enters that root
    /// first), the lowest index at that depth.
    pub(crate) fn first(&self, comps: &mut Components<'_, '_>) -> Found {
        let (mut at, mut depth) = (0, 0);
        // While one node at a time is possible (the usual configuration), no set to copy.
        let mut active = loop {
            let node = &self.nodes[at];
            if let Some(root) = node.root {
                return Found::Root {
                    depth,
                    root: root as usize,
                };
            }
            // A run of one-way levels: the path takes all of them, or it leaves every pattern.
            if let Some(chain) = &node.chain {
                if !comps.take(&chain.text, chain.depth as usize) {
                    return Found::Nothing;
                }
                at = chain.to as usize;
                depth += chain.depth as usize;
                continue;
            }
            let Some(c) = comps.next() else {
                return Found::Nothing;
            };
            depth += 1;
            match (node.literal.get(c), node.star) {
                (None, None) => return Found::Nothing,
                (Some(n), None) | (None, Some(n)) => at = n as usize,
                (Some(literal), Some(star)) => break Self::pair(literal, star),
            }
        };
        loop {
            if let Some(root) = self.root_of(&active) {
                return Found::Root { depth, root };
            }
            if active.len == 0 {
                return Found::Nothing;
            }
            let Some(c) = comps.next() else {
                return Found::Nothing;
            };
            match self.step(&active, c) {
                Some(next) => active = next,
                None => return Found::TooMany,
            }
            depth += 1;
        }
    }

    /// The lowest-index pattern matching exactly the path `comps` (as deep as it).
    pub(crate) fn exact<'p>(&self, mut comps: impl Iterator<Item = &'p [u8]>) -> Found {
        let (mut at, mut depth) = (0, 0);
        // One node at a time first, as in `first`.
        let mut active = loop {
            let node = &self.nodes[at];
            let Some(c) = comps.next() else {
                return node.root.map_or(Found::Nothing, |root| Found::Root {
                    depth,
                    root: root as usize,
                });
            };
            depth += 1;
            match (node.literal.get(c), node.star) {
                (None, None) => return Found::Nothing,
                (Some(n), None) | (None, Some(n)) => at = n as usize,
                (Some(literal), Some(star)) => break Self::pair(literal, star),
            }
        };
        for c in comps {
            match self.step(&active, c) {
                Some(next) if next.len == 0 => return Found::Nothing,
                Some(next) => active = next,
                None => return Found::TooMany,
            }
            depth += 1;
        }
        self.root_of(&active)
            .map_or(Found::Nothing, |root| Found::Root { depth, root })
    }

    /// Could a pattern lie strictly below the directory `comps`? (`None`: too many ways.)
    pub(crate) fn deeper_below<'p>(&self, comps: impl Iterator<Item = &'p [u8]>) -> Option<bool> {
        let mut active = Self::start();
        for c in comps {
            active = self.step(&active, c)?;
            if active.len == 0 {
                return Some(false);
            }
        }
        Some(active.nodes[..active.len].iter().any(|&n| {
            let node = &self.nodes[n as usize];
            node.star.is_some() || !node.literal.is_empty()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(patterns: &[&str]) -> RootIndex {
        let p: Vec<RootPattern> = patterns
            .iter()
            .map(|t| RootPattern::parse(t, true).unwrap())
            .collect();
        RootIndex::new(p.iter())
    }

    fn comps(path: &str) -> impl Iterator<Item = &[u8]> {
        path.split('/').filter(|c| !c.is_empty()).map(str::as_bytes)
    }

    /// `first` as `classify_clean` calls it, on a clean path.
    fn first(i: &RootIndex, path: &str) -> Found {
        let mut slashes = [0; crate::path::WORDS];
        assert!(
            crate::path::clean_slashes(path.as_bytes(), &mut slashes),
            "{path}"
        );
        i.first(&mut Components::new(path.as_bytes(), &slashes))
    }

    #[test]
    fn shallowest_then_lowest_index() {
        let i = index(&["/home/*/public_html", "/home/alice/public_html/shop", "/home/bob"]);
        assert_eq!(
            first(&i, "/home/alice/public_html/shop/x"),
            Found::Root { depth: 3, root: 0 }
        );
        assert_eq!(
            first(&i, "/home/bob/public_html/x"),
            Found::Root { depth: 2, root: 2 }
        );
        assert_eq!(first(&i, "/home/carol/private"), Found::Nothing);
        assert_eq!(first(&i, "/srv"), Found::Nothing);
        assert_eq!(
            i.exact(comps("/home/alice/public_html/shop")),
            Found::Root { depth: 4, root: 1 }
        );
        assert_eq!(i.exact(comps("/home/alice")), Found::Nothing);
        assert_eq!(i.deeper_below(comps("/home")), Some(true));
        assert_eq!(i.deeper_below(comps("/home/carol")), Some(true));
        assert_eq!(i.deeper_below(comps("/home/bob")), Some(true), "the * of line 1");
        assert_eq!(i.deeper_below(comps("/tmp")), Some(false));
    }

    #[test]
    fn the_root_of_everything_and_duplicates() {
        let i = index(&["/srv/x", "/", "/srv/x"]);
        assert_eq!(first(&i, "/etc/passwd"), Found::Root { depth: 0, root: 1 });
        assert_eq!(i.exact(comps("/srv/x")), Found::Root { depth: 2, root: 0 });
    }

    #[test]
    fn too_many_star_ways_fall_back() {
        // Every mix of `b` and `*` over five components: 32 ways live at once down /b/b/b/b/b.
        let many: Vec<String> = (0..32u32)
            .map(|m| {
                let parts: String = (0..5)
                    .map(|k| if m & (1 << k) != 0 { "/*" } else { "/b" })
                    .collect();
                format!("{parts}/end")
            })
            .collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let i = index(&refs);
        assert_eq!(first(&i, "/b/b/b/b/b/end"), Found::TooMany);
        assert_eq!(first(&i, "/c/c/c/c/c/end"), Found::Root { depth: 6, root: 31 });
    }
}
