//! Every `root` and `map` pattern compiled into one trie of path components, so that finding
//! the root a path enters costs O(its components), whether the configuration has one line or
//! 100,000 `map` lines (one per vhost), and whether the path is under a root or outside all.
//!
//! Each node has its literal children in a hash map (looked up with the borrowed component:
//! no allocation), at most one `*` child, and the lowest index of a pattern ending there
//! (the first line wins at a tie, as before). A walk keeps the set of nodes still possible
//! (one per way the `*`s can have matched) in a fixed array; a configuration whose `*`s make
//! more than [`MAX_ACTIVE`] of them possible at once answers [`Found::TooMany`], and the
//! caller falls back to trying each pattern.

use std::collections::HashMap;

use crate::pattern::RootPattern;

/// Nodes a walk may have active at once.
const MAX_ACTIVE: usize = 16;

#[derive(Debug, Clone, Default)]
struct Node {
    literal: HashMap<Box<[u8]>, u32>,
    star: Option<u32>,
    /// The lowest pattern index ending at this node.
    root: Option<u32>,
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
        for (i, p) in patterns.enumerate() {
            let mut at = 0usize;
            for part in p.parts() {
                let next = nodes.len() as u32;
                let child = match part {
                    Some(lit) => *nodes[at].literal.entry(lit.into()).or_insert(next),
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
        RootIndex { nodes }
    }

    /// One component down from every active node.
    fn step(&self, active: &Active, comp: &[u8]) -> Option<Active> {
        let mut next = Active {
            nodes: [0; MAX_ACTIVE],
            len: 0,
        };
        for &n in &active.nodes[..active.len] {
            let node = &self.nodes[n as usize];
            for child in [node.literal.get(comp).copied(), node.star].into_iter().flatten() {
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

    /// The shallowest pattern the path `comps` lies under (a walk down it enters that root
    /// first), the lowest index at that depth.
    pub(crate) fn first<'p>(&self, mut comps: impl Iterator<Item = &'p [u8]>) -> Found {
        let mut active = Self::start();
        let mut depth = 0;
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
    pub(crate) fn exact<'p>(&self, comps: impl Iterator<Item = &'p [u8]>) -> Found {
        let mut active = Self::start();
        let mut depth = 0;
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

    #[test]
    fn shallowest_then_lowest_index() {
        let i = index(&["/home/*/public_html", "/home/alice/public_html/shop", "/home/bob"]);
        assert_eq!(
            i.first(comps("/home/alice/public_html/shop/x")),
            Found::Root { depth: 3, root: 0 }
        );
        assert_eq!(
            i.first(comps("/home/bob/public_html/x")),
            Found::Root { depth: 2, root: 2 }
        );
        assert_eq!(i.first(comps("/home/carol/private")), Found::Nothing);
        assert_eq!(i.first(comps("/srv")), Found::Nothing);
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
        assert_eq!(i.first(comps("/etc/passwd")), Found::Root { depth: 0, root: 1 });
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
        assert_eq!(i.first(comps("/b/b/b/b/b/end")), Found::TooMany);
        assert_eq!(
            i.first(comps("/c/c/c/c/c/end")),
            Found::Root { depth: 6, root: 31 }
        );
    }
}
