//! Path → tenant → expected owner → decision.

use crate::config::{Config, Mode, OwnerRule};
use crate::image::{self, Image};
use crate::index::{Found, RootIndex};
use crate::meta::Meta;
use crate::path::{Components, PathBuf, TooLong, WORDS, clean_prefix_len, clean_slashes, components};

/// The tenant rule's expected owner: the owner of the tenant directory, from what `lstat`
/// (never following it) said of it (`None`: it could not be read). A symlinked tenant
/// directory says nothing about the files behind it, so it is refused, like a missing one.
pub fn tenant_owner(tenant_dir: Option<Meta>) -> Result<u32, DenyReason> {
    match tenant_dir {
        Some(m) if m.is_dir() => Ok(m.uid),
        Some(m) if m.is_symlink() => Err(DenyReason::TenantIsSymlink),
        _ => Err(DenyReason::TenantMissing),
    }
}

/// Why an open is (or, in audit mode, would be) refused. `as_str` is the word in log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The opened file's owner is neither the tenant's owner nor an `allow_uid`.
    OwnerMismatch,
    /// The tenant directory is a symlink: its owner says nothing about the files behind it.
    TenantIsSymlink,
    /// The tenant directory does not exist (or cannot be `lstat`ed).
    TenantMissing,
    /// The path entered a tenant's tree and left it through `..`.
    EscapesTenant,
    /// The path is longer than the guard can hold.
    PathTooLong,
    /// The directory an `openat` is relative to could not be named.
    UnresolvedDirfd,
    /// A file to be created kept turning out to exist (a dangling symlink in its place).
    DanglingSymlink,
    /// A program start that runs the dynamic loader with an option that lets it load past
    /// the guard (`ld.so --audit LIST PROGRAM`); the shim's exec hooks only.
    LoaderOptions,
}

impl DenyReason {
    /// Every reason, in declaration order.
    pub const ALL: [DenyReason; 8] = [
        DenyReason::OwnerMismatch,
        DenyReason::TenantIsSymlink,
        DenyReason::TenantMissing,
        DenyReason::EscapesTenant,
        DenyReason::PathTooLong,
        DenyReason::UnresolvedDirfd,
        DenyReason::DanglingSymlink,
        DenyReason::LoaderOptions,
    ];

    /// The reason a log line's word names (the inverse of [`DenyReason::as_str`]).
    pub fn from_word(word: &str) -> Option<DenyReason> {
        DenyReason::ALL.into_iter().find(|r| r.as_str() == word)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::OwnerMismatch => "owner-mismatch",
            DenyReason::TenantIsSymlink => "tenant-is-symlink",
            DenyReason::TenantMissing => "tenant-missing",
            DenyReason::EscapesTenant => "escapes-tenant",
            DenyReason::PathTooLong => "path-too-long",
            DenyReason::UnresolvedDirfd => "unresolved-dirfd",
            DenyReason::DanglingSymlink => "dangling-symlink",
            DenyReason::LoaderOptions => "loader-options",
        }
    }
}

/// Where the expected owner of a guarded path comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// A fixed uid (`map`).
    Uid(u32),
    /// The owner of the tenant directory, to be read with `lstat` (never following it).
    TenantOwner,
    /// The process's effective uid at the time of the open (`owner euid`).
    Euid,
}

/// What a path means to the guard, before anything is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Outside every root: open it untouched.
    Outside,
    /// Under a root: open it, then check the opened file's owner.
    Guarded {
        /// Index into [`Config::roots`].
        root: usize,
        /// Byte length of the tenant directory prefix of the normalised path
        /// (valid until the path is normalised again).
        tenant_len: usize,
        expected: Expected,
    },
    /// Refuse without opening.
    Deny(DenyReason),
}

/// The answer for one opened file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(DenyReason),
    /// Would be denied; allowed because of `mode audit`. Log it.
    Audit(DenyReason),
}

/// The validated configuration, ready for the hot path.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The settings; with a compiled image its `roots` are empty (the image holds them).
    config: Config,
    /// Depths at which some root can match, as a bit set (depth < 64), to skip most checks.
    depth_mask: u64,
    max_depth: usize,
    /// Every pattern in one trie: a lookup costs the path's components, not the lines.
    rules: Rules,
}

/// Where the trees are: parsed from the text, or in a compiled image walked in place.
#[derive(Debug, Clone)]
enum Rules {
    Parsed(RootIndex),
    Compiled(Image),
}

/// One configured tree, as [`Policy::root`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootInfo<'a> {
    /// The pattern as written.
    pub text: std::borrow::Cow<'a, str>,
    /// `Some` for a `map`.
    pub fixed_uid: Option<u32>,
    /// Line of the configuration it came from.
    pub line: usize,
}

impl Policy {
    pub fn new(config: Config) -> Self {
        let mut depth_mask = 0u64;
        let mut max_depth = 0;
        for r in &config.roots {
            let d = r.pattern.depth();
            max_depth = max_depth.max(d);
            if d < 64 {
                depth_mask |= 1 << d;
            }
        }
        Policy {
            rules: Rules::Parsed(RootIndex::new(config.roots.iter().map(|r| &r.pattern))),
            config,
            depth_mask,
            max_depth,
        }
    }

    /// The policy of a compiled image and the settings [`Image::open`] read from it.
    pub fn from_image(config: Config, image: Image) -> Self {
        Policy {
            depth_mask: image.depth_mask,
            max_depth: image.max_depth,
            rules: Rules::Compiled(image),
            config,
        }
    }

    /// Was this policy loaded from a compiled image?
    pub fn is_compiled(&self) -> bool {
        matches!(self.rules, Rules::Compiled(_))
    }

    /// Number of configured trees (indices of [`Target::Guarded`] are below it).
    pub fn root_count(&self) -> usize {
        match &self.rules {
            Rules::Parsed(_) => self.config.roots.len(),
            Rules::Compiled(img) => img.root_count(),
        }
    }

    /// The tree at index `i` (`None` past [`Self::root_count`]).
    pub fn root(&self, i: usize) -> Option<RootInfo<'_>> {
        match &self.rules {
            Rules::Parsed(_) => self.config.roots.get(i).map(|r| RootInfo {
                text: r.pattern.as_str().into(),
                fixed_uid: r.fixed_uid,
                line: r.line,
            }),
            Rules::Compiled(img) => (i < img.root_count()).then(|| {
                let r = img.root(i);
                RootInfo {
                    text: String::from_utf8_lossy(r.text),
                    fixed_uid: r.fixed_uid,
                    line: r.line,
                }
            }),
        }
    }

    /// Tenant depth and fixed uid of root `i`.
    #[inline]
    fn root_facts(&self, i: usize) -> (usize, Option<u32>) {
        match &self.rules {
            Rules::Parsed(_) => {
                let r = &self.config.roots[i];
                (r.pattern.tenant_depth(), r.fixed_uid)
            }
            Rules::Compiled(img) => img.tenant_and_uid(i),
        }
    }

    fn index_first(&self, comps: &mut Components<'_, '_>) -> Found {
        match &self.rules {
            Rules::Parsed(i) => i.first(comps),
            Rules::Compiled(img) => img.first(comps),
        }
    }

    fn index_exact<'p>(&self, comps: impl Iterator<Item = &'p [u8]>) -> Found {
        match &self.rules {
            Rules::Parsed(i) => i.exact(comps),
            Rules::Compiled(img) => img.exact(comps),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    /// Normalise `path` (relative paths are joined to `base`, the directory they are relative
    /// to) into `out` and say whether, and under which tenant, it is guarded.
    ///
    /// The tenant is the *first* root the path enters, walking it as written: a path that
    /// enters `/home/alice/public_html` and then climbs out with `..` stays alice's, and is
    /// refused outright if it climbs out of alice's tenant directory.
    /// Does not allocate and makes no system call.
    pub fn classify<const N: usize>(&self, base: Option<&[u8]>, path: &[u8], out: &mut PathBuf<N>) -> Target {
        match self.walk(base, path, out) {
            Ok(t) => t,
            Err(TooLong) => Target::Deny(DenyReason::PathTooLong),
        }
    }

    /// The fast path: an absolute path that is already clean (no `//`, `.` or `..`
    /// component, no trailing `/`) is matched in place, with no copy: one pass over its
    /// bytes checks it and finds its `/`s ([`clean_slashes`]), then the trie walks the
    /// components so found. `None` means "not clean: use [`Self::classify`]". Tenant
    /// lengths index into `path` itself.
    #[inline]
    pub fn classify_clean(&self, path: &[u8]) -> Option<Target> {
        let mut slashes = [0; WORDS];
        if !clean_slashes(path, &mut slashes) {
            return None;
        }
        let mut comps = Components::new(path, &slashes);
        // The first root a walk would enter is the shallowest match (the first line at a tie).
        let best = match self.index_first(&mut comps) {
            Found::Nothing => None,
            Found::Root { root, .. } => Some((root, comps.prefix_len(self.root_facts(root).0))),
            Found::TooMany => self.scan_clean(path),
        };
        Some(match best {
            None => Target::Outside,
            Some((root, tenant_len)) => self.target_for(Some(root), |_| tenant_len),
        })
    }

    /// [`Self::classify_clean`] by trying every pattern (`*`s too entangled for the index).
    fn scan_clean(&self, path: &[u8]) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize, usize)> = None; // (depth, root, tenant_len)
        match &self.rules {
            Rules::Parsed(_) => {
                for (i, r) in self.config.roots.iter().enumerate() {
                    if let Some(tenant_len) = r.pattern.match_clean(path)
                        && best.is_none_or(|(d, _, _)| r.pattern.depth() < d)
                    {
                        best = Some((r.pattern.depth(), i, tenant_len));
                    }
                }
            }
            Rules::Compiled(img) => {
                for i in 0..img.root_count() {
                    let r = img.root(i);
                    if image::key_under(r.key, components(path)) && best.is_none_or(|(d, _, _)| r.depth < d) {
                        best = Some((r.depth, i, clean_prefix_len(path, r.tenant_depth)));
                    }
                }
            }
        }
        best.map(|(_, root, tenant_len)| (root, tenant_len))
    }

    fn target_for(&self, root: Option<usize>, tenant_len: impl FnOnce(usize) -> usize) -> Target {
        match root {
            None => Target::Outside,
            Some(root) => {
                let (tenant_depth, fixed_uid) = self.root_facts(root);
                let expected = match (fixed_uid, self.config.owner) {
                    (Some(uid), _) => Expected::Uid(uid),
                    (None, OwnerRule::Euid) => Expected::Euid,
                    (None, OwnerRule::Tenant) => Expected::TenantOwner,
                };
                Target::Guarded {
                    root,
                    tenant_len: tenant_len(tenant_depth),
                    expected,
                }
            }
        }
    }

    fn walk<const N: usize>(
        &self,
        base: Option<&[u8]>,
        path: &[u8],
        out: &mut PathBuf<N>,
    ) -> Result<Target, TooLong> {
        out.clear();
        let relative = path.first() != Some(&b'/');
        let base_iter = base.filter(|_| relative).into_iter().flat_map(components);
        // (root index, tenant depth) once the walk has entered a root.
        let mut entered: Option<(usize, usize)> = self.root_at(out).map(|i| (i, 0)); // `root /`
        for c in base_iter.chain(components(path)) {
            if c == b".." {
                if let Some((_, tenant_depth)) = entered
                    && out.depth() <= tenant_depth
                    && tenant_depth > 0
                {
                    return Ok(Target::Deny(DenyReason::EscapesTenant));
                }
                out.pop();
                continue;
            }
            out.push(c)?;
            if entered.is_none() {
                entered = self.root_at(out).map(|i| (i, self.root_facts(i).0));
            }
        }
        Ok(self.target_for(entered.map(|(i, _)| i), |tenant_depth| {
            out.prefix_len(tenant_depth)
        }))
    }

    /// Index of the first root matching `out` exactly at its current depth.
    fn root_at<const N: usize>(&self, out: &PathBuf<N>) -> Option<usize> {
        let d = out.depth();
        if d > self.max_depth || (d < 64 && self.depth_mask & (1 << d) == 0) {
            return None;
        }
        match self.index_exact(out.components()) {
            Found::Root { root, .. } => Some(root),
            Found::Nothing => None,
            Found::TooMany => match &self.rules {
                Rules::Parsed(_) => self.config.roots.iter().position(|r| r.pattern.matches(out)),
                Rules::Compiled(img) => {
                    (0..img.root_count()).find(|&i| image::key_matches(img.root(i).key, out.components()))
                }
            },
        }
    }

    /// May anything at or below the clean absolute directory `dir` be guarded? False only
    /// when `dir` is outside every root and no root can lie below it: then every path that
    /// starts there is outside every root, whatever its length or depth (the guard passes
    /// such opens through even when it cannot name the full path).
    pub fn may_guard_below(&self, dir: &[u8]) -> bool {
        match self.classify_clean(dir) {
            Some(Target::Outside) => {}
            _ => return true,
        }
        // `classify_clean` found `dir` clean: its components are cut in the same one pass.
        let mut slashes = [0; WORDS];
        if !clean_slashes(dir, &mut slashes) {
            return true;
        }
        let found = match &self.rules {
            Rules::Parsed(i) => i.deeper_below(Components::new(dir, &slashes)),
            Rules::Compiled(img) => img.deeper_below(Components::new(dir, &slashes)),
        };
        found.unwrap_or_else(|| match &self.rules {
            Rules::Parsed(_) => self.config.roots.iter().any(|r| r.pattern.could_lie_below(dir)),
            Rules::Compiled(img) => (0..img.root_count())
                .any(|i| image::key_could_lie_below(img.root(i).key, Components::new(dir, &slashes))),
        })
    }

    /// Trees no path can ever be judged by: a tree (typically a `map`) lying inside another
    /// tree that every path to it enters first. Pairs of (shadowed entry, the entry that
    /// decides instead), as indices into [`Config::roots`].
    pub fn shadowed(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for i in 0..self.root_count() {
            // A pattern's own literal spelling (stars as any name) is a path inside it.
            let key = match &self.rules {
                Rules::Parsed(_) => self.config.roots[i].pattern.key(),
                Rules::Compiled(img) => String::from_utf8_lossy(img.root(i).key).into_owned(),
            };
            let probe = key.replace('*', "x");
            if let Some(Target::Guarded { root, .. }) = self.classify_clean(probe.as_bytes())
                && root != i
            {
                out.push((i, root));
            }
        }
        out
    }

    /// The rule itself: is a file owned by `file_uid` acceptable where `expected_uid` owns?
    pub fn decide(&self, file_uid: u32, expected_uid: u32) -> Decision {
        if file_uid == expected_uid || self.config.allow_uids.contains(&file_uid) {
            Decision::Allow
        } else {
            self.refuse(DenyReason::OwnerMismatch)
        }
    }

    /// A refusal, softened to [`Decision::Audit`] in audit mode.
    pub fn refuse(&self, reason: DenyReason) -> Decision {
        match self.config.mode {
            Mode::Enforce => Decision::Deny(reason),
            Mode::Audit => Decision::Audit(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn policy(text: &str) -> Policy {
        Policy::new(Config::parse(text, Path::new("test.conf")).unwrap())
    }

    fn classify(p: &Policy, base: Option<&str>, path: &str) -> (Target, String) {
        let mut out = PathBuf::new();
        let t = p.classify(base.map(str::as_bytes), path.as_bytes(), &mut out);
        let tenant = match t {
            Target::Guarded { tenant_len, .. } => {
                String::from_utf8(out.as_bytes()[..tenant_len].to_vec()).unwrap()
            }
            _ => String::new(),
        };
        (t, tenant)
    }

    const HOSTING: &str = "root /home/*/public_html\nmap /srv/shop 1005\n";

    #[test]
    fn outside_every_root_is_untouched() {
        let p = policy(HOSTING);
        assert_eq!(classify(&p, None, "/etc/passwd").0, Target::Outside);
        assert_eq!(classify(&p, None, "/home/alice/private/x").0, Target::Outside);
        assert_eq!(classify(&p, None, "/home/alice").0, Target::Outside);
        assert_eq!(classify(&p, None, "/srv/shopping").0, Target::Outside);
    }

    #[test]
    fn tenant_is_the_star_component() {
        let p = policy(HOSTING);
        let (t, tenant) = classify(&p, None, "/home/alice/public_html/a/b.html");
        assert!(matches!(
            t,
            Target::Guarded {
                expected: Expected::TenantOwner,
                ..
            }
        ));
        assert_eq!(tenant, "/home/alice");
        let (t, tenant) = classify(&p, None, "//home/./bob/public_html");
        assert!(
            matches!(t, Target::Guarded { .. }),
            "the document root itself is guarded"
        );
        assert_eq!(tenant, "/home/bob");
    }

    #[test]
    fn map_gives_a_fixed_owner() {
        let p = policy(HOSTING);
        let (t, tenant) = classify(&p, None, "/srv/shop/index.html");
        assert!(matches!(
            t,
            Target::Guarded {
                expected: Expected::Uid(1005),
                ..
            }
        ));
        assert_eq!(tenant, "/srv/shop");
    }

    #[test]
    fn owner_euid() {
        let p = policy("root /home/*/public_html\nowner euid\n");
        assert!(matches!(
            classify(&p, None, "/home/a/public_html/x").0,
            Target::Guarded {
                expected: Expected::Euid,
                ..
            }
        ));
    }

    #[test]
    fn relative_paths_and_dot_dot() {
        let p = policy(HOSTING);
        let (t, tenant) = classify(&p, Some("/home/alice/public_html"), "img/../x.png");
        assert!(matches!(t, Target::Guarded { .. }));
        assert_eq!(tenant, "/home/alice");
        // Climbing out of the document root but staying in alice's tree: still alice's rule.
        let (t, tenant) = classify(&p, None, "/home/alice/public_html/../private/wp-config.php");
        assert!(matches!(t, Target::Guarded { .. }));
        assert_eq!(tenant, "/home/alice");
        // Climbing out of alice's tenant directory into bob's: refused before any open.
        assert_eq!(
            classify(
                &p,
                Some("/home/alice/public_html"),
                "../../bob/public_html/secret"
            )
            .0,
            Target::Deny(DenyReason::EscapesTenant)
        );
        assert_eq!(
            classify(&p, None, "/home/alice/public_html/../../../etc/passwd").0,
            Target::Deny(DenyReason::EscapesTenant)
        );
        // Entering a root only after `..`: the root it ends in decides.
        let (_, tenant) = classify(&p, None, "/home/alice/../bob/public_html/x");
        assert_eq!(tenant, "/home/bob");
    }

    #[test]
    fn a_marked_tenant_above_the_last_star() {
        let p = policy("root /home/{*}/domains/*/public_html\nroot /var/www/clients/*/*/{web}\n");
        let (t, tenant) = classify(&p, None, "/home/u/domains/d.tld/public_html/i.php");
        assert!(matches!(t, Target::Guarded { root: 0, .. }));
        assert_eq!(tenant, "/home/u");
        assert_eq!(
            p.classify_clean(b"/home/u/domains/d.tld/public_html/i.php"),
            Some(t)
        );
        // Another of the user's domains is still the user's tree; another user's is not.
        let (t, tenant) = classify(&p, None, "/home/u/domains/d.tld/public_html/../../e.tld/x");
        assert!(matches!(t, Target::Guarded { .. }));
        assert_eq!(tenant, "/home/u");
        assert_eq!(
            classify(
                &p,
                None,
                "/home/u/domains/d.tld/public_html/../../../../v/domains/e/public_html/x"
            )
            .0,
            Target::Deny(DenyReason::EscapesTenant)
        );
        let (_, tenant) = classify(&p, None, "/var/www/clients/client1/web2/web/index.php");
        assert_eq!(tenant, "/var/www/clients/client1/web2/web");
        assert_eq!(
            classify(&p, None, "/var/www/clients/client1/web2/web/../private/x").0,
            Target::Deny(DenyReason::EscapesTenant),
            "webM is root's, not the tenant's"
        );
        assert_eq!(
            classify(&p, None, "/var/www/clients/client1/web2/log").0,
            Target::Outside
        );
    }

    #[test]
    fn clean_fast_path_agrees_with_the_full_walk() {
        let p = policy("root /home/*/public_html\nmap /srv/shop 1005\nroot /var/www\n");
        let cases = [
            "/",
            "/etc/passwd",
            "/home",
            "/home/alice",
            "/home/alice/public_html",
            "/home/alice/public_html/a/b.html",
            "/home/alice/private/x",
            "/srv/shop",
            "/srv/shop/x/y",
            "/srv/shopping",
            "/var/www",
            "/var/www/index.html",
            "/var/wwwx/a",
        ];
        for c in cases {
            let fast = p
                .classify_clean(c.as_bytes())
                .unwrap_or_else(|| panic!("{c} is clean"));
            assert_eq!(fast, classify(&p, None, c).0, "{c}");
        }
        for unclean in [
            "/home//alice",
            "/home/./a",
            "/home/a/..",
            "/home/a/",
            "relative",
            "/a/../b",
        ] {
            assert_eq!(p.classify_clean(unclean.as_bytes()), None, "{unclean}");
        }
        let p = policy("root /\nowner euid\n");
        assert_eq!(p.classify_clean(b"/etc/x"), Some(classify(&p, None, "/etc/x").0));
        assert_eq!(p.classify_clean(b"/"), Some(classify(&p, None, "/").0));
    }

    #[test]
    fn a_run_of_literals_is_matched_whole() {
        // `srv/www/shop` is one compare in the trie; near misses stay outside.
        let p = policy("root /srv/www/shop/*/public_html\nroot /var/{www}/html/site\n");
        for outside in [
            "/srv/www/shopping/a/public_html/x",
            "/srv/www/shop",
            "/srv/www/sho",
            "/srv/wwwx/shop/a/public_html",
            "/srv/www",
            "/var/www/html",
            "/var/www/html/sitex",
        ] {
            assert_eq!(
                p.classify_clean(outside.as_bytes()),
                Some(Target::Outside),
                "{outside}"
            );
        }
        for (path, tenant) in [
            ("/srv/www/shop/a/public_html/x", "/srv/www/shop/a"),
            ("/srv/www/shop/a/public_html", "/srv/www/shop/a"),
            // The tenant ends inside the run: its length is counted again.
            ("/var/www/html/site/index.php", "/var/www"),
        ] {
            let fast = p.classify_clean(path.as_bytes());
            let (slow, want) = classify(&p, None, path);
            assert_eq!(fast, Some(slow), "{path}");
            assert_eq!(want, tenant, "{path}");
            let Some(Target::Guarded { tenant_len, .. }) = fast else {
                panic!("{path}: {fast:?}");
            };
            assert_eq!(&path[..tenant_len], tenant, "{path}");
        }
    }

    #[test]
    fn decisions() {
        let p = policy("root /home/*/public_html\nallow_uid 0\n");
        assert_eq!(p.decide(1001, 1001), Decision::Allow);
        assert_eq!(p.decide(0, 1001), Decision::Allow, "allow_uid");
        assert_eq!(p.decide(1002, 1001), Decision::Deny(DenyReason::OwnerMismatch));
        let p = policy("root /home/*/public_html\n");
        assert_eq!(
            p.decide(0, 1001),
            Decision::Deny(DenyReason::OwnerMismatch),
            "root not allowed by default"
        );
        let p = policy("mode audit\nroot /home/*/public_html\n");
        assert_eq!(p.decide(1002, 1001), Decision::Audit(DenyReason::OwnerMismatch));
    }

    #[test]
    fn what_may_be_guarded_below_a_directory() {
        let p = policy(HOSTING);
        assert!(p.may_guard_below(b"/"));
        assert!(p.may_guard_below(b"/home/alice"));
        assert!(p.may_guard_below(b"/home/alice/public_html/deep"), "under a root");
        assert!(p.may_guard_below(b"/srv"), "the map lies below");
        assert!(!p.may_guard_below(b"/tmp/deep"));
        assert!(!p.may_guard_below(b"/home/alice/private"));
        assert!(p.may_guard_below(b"/home//x"), "not clean: assume it may");
    }

    #[test]
    fn a_map_inside_a_root_is_shadowed() {
        let p = policy("root /home/*/public_html\nmap /home/alice/public_html/shop 1005\nmap /srv/x 7\n");
        let c = p.config();
        let shadowed: Vec<(usize, usize)> = p.shadowed();
        assert_eq!(shadowed.len(), 1, "{shadowed:?}");
        let (map, by) = shadowed[0];
        assert_eq!(c.roots[map].pattern.as_str(), "/home/alice/public_html/shop");
        assert_eq!(c.roots[by].pattern.as_str(), "/home/*/public_html");
        assert!(policy(HOSTING).shadowed().is_empty());
    }

    #[test]
    fn tenant_owner_from_lstat() {
        let m = |mode| Some(Meta { uid: 1001, mode });
        assert_eq!(tenant_owner(m(0o040755)), Ok(1001));
        assert_eq!(tenant_owner(m(0o120777)), Err(DenyReason::TenantIsSymlink));
        assert_eq!(tenant_owner(m(0o100644)), Err(DenyReason::TenantMissing));
        assert_eq!(tenant_owner(None), Err(DenyReason::TenantMissing));
    }

    #[test]
    fn root_slash_guards_everything() {
        let p = policy("root /\nowner euid\n");
        assert!(matches!(
            classify(&p, None, "/etc/passwd").0,
            Target::Guarded { .. }
        ));
        assert!(matches!(classify(&p, None, "/").0, Target::Guarded { .. }));
    }

    #[test]
    fn long_paths_are_refused_not_crashed() {
        let p = policy(HOSTING);
        let long = format!("/home/a/public_html/{}", "x/".repeat(3000));
        assert_eq!(classify(&p, None, &long).0, Target::Deny(DenyReason::PathTooLong));
    }
}
