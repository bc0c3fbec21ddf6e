//! Root patterns: `/home/*/public_html`, where `*` matches any one component and the last
//! `*` is the tenant (`/srv/www/*/*` for tenants two levels below `/srv/www`).
//!
//! A component in braces marks where the tenant directory ends instead, for panels whose
//! tenant is not the last `*`: `/home/{*}/domains/*/public_html` (DirectAdmin: the tenant is
//! `/home/USER`), `/var/www/clients/*/*/{web}` (ISPConfig: `webM` is root's, only `web/`
//! belongs to the site user). At most one component may be marked.

use crate::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Component {
    Literal(Vec<u8>),
    /// The tenant: any one component.
    Star,
}

/// A parsed `root` (or `map`) path: absolute, whole components, `*` for any one component.
#[derive(Debug, Clone)]
pub struct RootPattern {
    text: String,
    components: Vec<Component>,
    /// Index of the tenant component: the one in braces, else the last `*`.
    tenant: Option<usize>,
    /// Not exactly "one `*`, and it is the tenant" (several `*`, or a marked component that
    /// is not the only `*`): [`Self::match_clean`] walks components instead of comparing bytes.
    slow: bool,
    /// Normalised text before the tenant component, with its trailing `/`
    /// (`/home/` for `/home/*/public_html`; the whole root for a root without `*`).
    lit_prefix: Vec<u8>,
    /// Normalised text after the tenant component (`/public_html`; empty if none).
    lit_suffix: Vec<u8>,
}

impl PartialEq for RootPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.components == other.components && self.tenant == other.tenant
    }
}

impl Eq for RootPattern {}

impl RootPattern {
    /// Parse a pattern; the error is a message for the operator (the caller adds file:line).
    pub fn parse(text: &str, allow_star: bool) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err("the path is not absolute".into());
        }
        let mut components = Vec::new();
        let mut last_star = None;
        let mut marked = None;
        let mut stars = 0;
        for c in text.split('/').filter(|c| !c.is_empty()) {
            // `{X}`: X is the tenant component.
            let c = match c.strip_prefix('{').and_then(|c| c.strip_suffix('}')) {
                Some(_) if !allow_star => {
                    return Err("a tenant marker '{...}' is only allowed in 'root', not in 'map'".into());
                }
                Some("") => {
                    return Err("an empty tenant marker '{}' (write {*} or {NAME})".into());
                }
                Some(_) if marked.is_some() => {
                    return Err("more than one tenant marker '{...}' (mark one component)".into());
                }
                Some(inner) => {
                    marked = Some(components.len());
                    inner
                }
                None => c,
            };
            match c {
                "." | ".." => {
                    return Err("'.' and '..' are not allowed in a root".into());
                }
                "*" if !allow_star => {
                    return Err("'*' is only allowed in 'root', not in 'map'".into());
                }
                "*" => {
                    stars += 1;
                    last_star = Some(components.len());
                    components.push(Component::Star);
                }
                c if c.contains(['{', '}']) => {
                    return Err(
                        "braces must enclose one whole path component (as in /home/{*}/domains/*)".into(),
                    );
                }
                c if c.contains(['*', '?', '[']) => {
                    return Err("'*' must be a whole path component (as in /home/*/public_html)".into());
                }
                c => components.push(Component::Literal(c.as_bytes().to_vec())),
            }
        }
        // A marked last component without any `*` says what no marker says: the whole root.
        let tenant = match marked {
            Some(m) if stars == 0 && m + 1 == components.len() => None,
            m => m.or(last_star),
        };
        // The byte-comparison fast path knows two shapes: a single `*` that is the tenant, and
        // no `*` with the whole root as the tenant.
        let slow = match stars {
            0 => tenant.is_some(),
            1 => tenant != last_star,
            _ => true,
        };
        let join = |comps: &[Component]| {
            let mut out = Vec::new();
            for c in comps {
                out.push(b'/');
                if let Component::Literal(l) = c {
                    out.extend_from_slice(l);
                }
            }
            out
        };
        let first_star = components.iter().position(|c| *c == Component::Star);
        let (lit_prefix, lit_suffix) = match first_star {
            Some(i) => {
                let mut prefix = join(&components[..i]);
                prefix.push(b'/');
                (prefix, join(&components[i + 1..]))
            }
            None if components.is_empty() => (b"/".to_vec(), Vec::new()),
            None => (join(&components), Vec::new()),
        };
        Ok(RootPattern {
            text: text.to_string(),
            components,
            tenant,
            slow,
            lit_prefix,
            lit_suffix,
        })
    }

    /// The pattern as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The tree as one normalised string (`/home/*/public_html`), whatever its spelling:
    /// equal keys, same tree.
    pub fn key(&self) -> String {
        let mut k = String::new();
        for c in &self.components {
            k.push('/');
            match c {
                Component::Star => k.push('*'),
                Component::Literal(l) => k.push_str(&String::from_utf8_lossy(l)),
            }
        }
        if k.is_empty() {
            k.push('/');
        }
        k
    }

    /// Do both patterns describe the same tree (whatever their spelling)?
    pub fn same_tree(&self, other: &RootPattern) -> bool {
        self.components == other.components
    }

    /// The components in order: `Some(literal)`, or `None` for a `*`.
    pub(crate) fn parts(&self) -> impl Iterator<Item = Option<&[u8]>> {
        self.components.iter().map(|c| match c {
            Component::Literal(l) => Some(l.as_slice()),
            Component::Star => None,
        })
    }

    /// Number of components.
    pub fn depth(&self) -> usize {
        self.components.len()
    }

    /// Depth of the tenant directory: the component in braces, else the last `*`, else the
    /// whole root.
    pub fn tenant_depth(&self) -> usize {
        self.tenant.map_or(self.components.len(), |i| i + 1)
    }

    /// Was the tenant given with braces (`{*}`, `{web}`)?
    pub fn has_marker(&self) -> bool {
        self.text.contains('{')
    }

    /// Is the clean absolute `path` (see `Policy::classify_clean`) under this root? Returns
    /// the byte length of its tenant directory. Plain byte comparisons: the hot path.
    #[inline]
    pub fn match_clean(&self, path: &[u8]) -> Option<usize> {
        let rest = path.strip_prefix(self.lit_prefix.as_slice())?;
        if self.slow {
            return self.match_components(path);
        }
        let under = |rest: &[u8]| rest.is_empty() || rest[0] == b'/';
        if self.tenant.is_none() {
            // `/` itself matches everything; otherwise the root or something below it.
            return (self.components.is_empty() || under(rest)).then_some(path.len() - rest.len());
        }
        let name_len = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        if name_len == 0 {
            return None;
        }
        let after = rest[name_len..].strip_prefix(self.lit_suffix.as_slice())?;
        under(after).then_some(self.lit_prefix.len() + name_len)
    }

    /// [`Self::match_clean`] for the other shapes (several `*`, a marker): one component at a
    /// time.
    fn match_components(&self, path: &[u8]) -> Option<usize> {
        let mut end = 0; // byte length of the prefix matched so far
        let mut tenant_len = None;
        let mut parts = path[1..].split(|&b| b == b'/');
        for (i, p) in self.components.iter().enumerate() {
            let c = parts.next().filter(|c| !c.is_empty())?;
            if let Component::Literal(l) = p
                && l.as_slice() != c
            {
                return None;
            }
            end += 1 + c.len();
            if Some(i) == self.tenant {
                tenant_len = Some(end);
            }
        }
        tenant_len
    }

    /// Could a path matching this pattern lie strictly below the clean absolute directory
    /// `dir`? (Every component of `dir` matches the pattern's, and the pattern is deeper.)
    pub fn could_lie_below(&self, dir: &[u8]) -> bool {
        let mut n = 0;
        for c in dir.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            match self.components.get(n) {
                Some(Component::Star) => {}
                Some(Component::Literal(l)) if l.as_slice() == c => {}
                _ => return false,
            }
            n += 1;
        }
        self.components.len() > n
    }

    /// Does `path` (whose depth must equal [`Self::depth`]) match this pattern exactly?
    pub fn matches<const N: usize>(&self, path: &PathBuf<N>) -> bool {
        path.depth() == self.depth()
            && path.components().zip(&self.components).all(|(c, p)| match p {
                Component::Star => true,
                Component::Literal(l) => l.as_slice() == c,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::normalize;

    fn p(s: &str) -> PathBuf {
        let mut out = PathBuf::new();
        normalize(None, s.as_bytes(), &mut out).unwrap();
        out
    }

    #[test]
    fn star_matches_one_component() {
        let r = RootPattern::parse("/home/*/public_html", true).unwrap();
        assert_eq!(r.depth(), 3);
        assert_eq!(r.tenant_depth(), 2);
        assert!(r.matches(&p("/home/alice/public_html")));
        assert!(!r.matches(&p("/home/alice/private")));
        assert!(!r.matches(&p("/home/alice/public_html/x")));
        assert!(!r.matches(&p("/srv/alice/public_html")));
    }

    #[test]
    fn root_without_star_is_its_own_tenant() {
        let r = RootPattern::parse("/srv/www//site1/", true).unwrap();
        assert_eq!(r.tenant_depth(), 3);
        assert!(r.matches(&p("/srv/www/site1")));
    }

    #[test]
    fn match_clean_finds_the_tenant() {
        let r = RootPattern::parse("/home/*/public_html", true).unwrap();
        assert_eq!(r.match_clean(b"/home/alice/public_html"), Some(11));
        assert_eq!(r.match_clean(b"/home/alice/public_html/x/y"), Some(11));
        assert_eq!(r.match_clean(b"/home/alice/public_htmlx"), None);
        assert_eq!(r.match_clean(b"/home/alice"), None);
        assert_eq!(r.match_clean(b"/home/alice/private"), None);
        assert_eq!(r.match_clean(b"/homex/alice/public_html"), None);
        let r = RootPattern::parse("/srv/*", true).unwrap();
        assert_eq!(r.match_clean(b"/srv/a/b"), Some(6));
        assert_eq!(r.match_clean(b"/srv/a"), Some(6));
        assert_eq!(r.match_clean(b"/srv"), None);
        let r = RootPattern::parse("/var/www", true).unwrap();
        assert_eq!(r.match_clean(b"/var/www/x"), Some(8));
        assert_eq!(r.match_clean(b"/var/www"), Some(8));
        assert_eq!(r.match_clean(b"/var/wwwx"), None);
        let r = RootPattern::parse("/", true).unwrap();
        assert_eq!(r.match_clean(b"/etc/passwd"), Some(1));
    }

    #[test]
    fn several_stars_the_last_is_the_tenant() {
        let r = RootPattern::parse("/srv/*/*/web", true).unwrap();
        assert_eq!((r.depth(), r.tenant_depth()), (4, 3));
        assert!(r.matches(&p("/srv/c1/w2/web")));
        assert!(!r.matches(&p("/srv/c1/w2/x")));
        assert_eq!(r.match_clean(b"/srv/c1/w2/web/index.php"), Some(10));
        assert_eq!(r.match_clean(b"/srv/c1/w2/web"), Some(10));
        assert_eq!(r.match_clean(b"/srv/c1/w2/webx"), None);
        assert_eq!(r.match_clean(b"/srv/c1/w2"), None);
        assert_eq!(r.match_clean(b"/srvx/c1/w2/web"), None);
        let r = RootPattern::parse("/srv/*/*", true).unwrap();
        assert_eq!(r.match_clean(b"/srv/a/bb/c"), Some(9));
        assert_eq!(r.match_clean(b"/srv/a"), None);
    }

    #[test]
    fn a_marker_names_the_tenant() {
        // DirectAdmin / HestiaCP / Virtualmin: the user, above the domain.
        let r = RootPattern::parse("/home/{*}/domains/*/public_html", true).unwrap();
        assert_eq!((r.depth(), r.tenant_depth()), (5, 2));
        assert!(r.matches(&p("/home/u/domains/d.tld/public_html")));
        assert_eq!(r.match_clean(b"/home/u/domains/d.tld/public_html/i.php"), Some(7));
        assert_eq!(r.match_clean(b"/home/u/domains/d.tld"), None);
        assert_eq!(
            r.key(),
            "/home/*/domains/*/public_html",
            "the tree, not its tenant"
        );
        // ISPConfig: a literal component below two stars.
        let r = RootPattern::parse("/var/www/clients/*/*/{web}", true).unwrap();
        assert_eq!(r.tenant_depth(), 6);
        assert_eq!(
            r.match_clean(b"/var/www/clients/client1/web2/web/index.php"),
            Some(b"/var/www/clients/client1/web2/web".len())
        );
        assert_eq!(r.match_clean(b"/var/www/clients/client1/web2/private"), None);
        // A single `*` that is not the tenant, and a marker on a literal in the middle.
        let r = RootPattern::parse("/srv/{x}/*/htdocs", true).unwrap();
        assert_eq!(r.match_clean(b"/srv/x/site/htdocs/a"), Some(6));
        let r = RootPattern::parse("/srv/{x}/y", true).unwrap();
        assert_eq!((r.tenant_depth(), r.match_clean(b"/srv/x/y/z")), (2, Some(6)));
        // Marking what would be the tenant anyway changes nothing.
        let r = RootPattern::parse("/home/{*}/public_html", true).unwrap();
        assert_eq!(
            (r.tenant_depth(), r.match_clean(b"/home/a/public_html/x")),
            (2, Some(7))
        );
        let r = RootPattern::parse("/var/{www}", true).unwrap();
        assert_eq!((r.tenant_depth(), r.match_clean(b"/var/www/x")), (2, Some(8)));
    }

    #[test]
    fn rejects_bad_markers() {
        for (text, words) in [
            ("/home/{a*}/x", "whole path component"),
            ("/home/{*}/{*}", "more than one tenant marker"),
            ("/home/{}/x", "empty tenant marker"),
            ("/home/{*/x", "braces must enclose"),
            ("/home/a{b}/x", "braces must enclose"),
            ("/home/{{*}}/x", "braces must enclose"),
            ("/home/{..}/x", "'..'"),
        ] {
            let e = RootPattern::parse(text, true).unwrap_err();
            assert!(e.contains(words), "{text}: {e}");
        }
        assert!(
            RootPattern::parse("/srv/{x}", false)
                .unwrap_err()
                .contains("only allowed in 'root'")
        );
    }

    #[test]
    fn roots_below_a_directory() {
        let r = RootPattern::parse("/home/*/public_html", true).unwrap();
        assert!(r.could_lie_below(b"/"));
        assert!(r.could_lie_below(b"/home"));
        assert!(r.could_lie_below(b"/home/alice"));
        assert!(!r.could_lie_below(b"/home/alice/public_html"), "at it, not below");
        assert!(!r.could_lie_below(b"/homework"));
        assert!(!r.could_lie_below(b"/tmp/deep"));
        assert!(!RootPattern::parse("/", true).unwrap().could_lie_below(b"/"));
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(
            RootPattern::parse("home/*/x", true)
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            RootPattern::parse("/home/user*/x", true)
                .unwrap_err()
                .contains("whole path component")
        );
        assert!(
            RootPattern::parse("/home/../x", true)
                .unwrap_err()
                .contains("'..'")
        );
        assert!(RootPattern::parse("/srv/*", false).unwrap_err().contains("map"));
    }
}
