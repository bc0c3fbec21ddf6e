//! Root patterns: `/home/*/public_html`, where `*` matches any one component and the last
//! `*` is the tenant (`/srv/www/*/*` for tenants two levels below `/srv/www`).

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
    /// Index of the last `*`: the tenant component.
    star: Option<usize>,
    /// More than one `*`: [`Self::match_clean`] walks components instead of comparing bytes.
    multi_star: bool,
    /// Normalised text before the tenant component, with its trailing `/`
    /// (`/home/` for `/home/*/public_html`; the whole root for a root without `*`).
    lit_prefix: Vec<u8>,
    /// Normalised text after the tenant component (`/public_html`; empty if none).
    lit_suffix: Vec<u8>,
}

impl PartialEq for RootPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.components == other.components
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
        let mut star = None;
        let mut stars = 0;
        for c in text.split('/').filter(|c| !c.is_empty()) {
            match c {
                "." | ".." => {
                    return Err("'.' and '..' are not allowed in a root".into());
                }
                "*" if !allow_star => {
                    return Err("'*' is only allowed in 'root', not in 'map'".into());
                }
                "*" => {
                    stars += 1;
                    star = Some(components.len());
                    components.push(Component::Star);
                }
                c if c.contains(['*', '?', '[']) => {
                    return Err("'*' must be a whole path component (as in /home/*/public_html)".into());
                }
                c => components.push(Component::Literal(c.as_bytes().to_vec())),
            }
        }
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
            star,
            multi_star: stars > 1,
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

    /// Depth of the tenant directory: the last `*` component, or the whole root when it has none.
    pub fn tenant_depth(&self) -> usize {
        self.star.map_or(self.components.len(), |i| i + 1)
    }

    /// Is the clean absolute `path` (see `Policy::classify_clean`) under this root? Returns
    /// the byte length of its tenant directory. Plain byte comparisons: the hot path.
    #[inline]
    pub fn match_clean(&self, path: &[u8]) -> Option<usize> {
        let rest = path.strip_prefix(self.lit_prefix.as_slice())?;
        if self.multi_star {
            return self.match_components(path);
        }
        let under = |rest: &[u8]| rest.is_empty() || rest[0] == b'/';
        if self.star.is_none() {
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

    /// [`Self::match_clean`] for patterns with several `*`: one component at a time.
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
            if Some(i) == self.star {
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
