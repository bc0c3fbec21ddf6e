//! Scale (issue "100,000 tenants and 100,000 vhosts at the cost of one"): a configuration of
//! 100,000 `map` lines, one per vhost, loads, and every line is honoured — sampled — by the
//! same lookup the guards use. (A test of results, not of time: the cost is in `bench/`.)

use std::path::Path;
use std::sync::Arc;

use toctou_policy::image;
use toctou_policy::{Config, Expected, PATH_MAX, Policy, ScratchPath, Target};

const VHOSTS: u32 = 100_000;

fn big() -> String {
    let mut text = String::from("root /home/*/public_html\nallow_uid 0\n");
    for i in 0..VHOSTS {
        text.push_str(&format!(
            "map /var/www/vhosts/d{i}.example/httpdocs {}\n",
            10_000 + i
        ));
    }
    text
}

#[test]
fn a_hundred_thousand_maps_load_and_each_is_honoured() {
    let text = big();
    assert!(text.len() > 4 << 20, "about 5 MB");
    let cfg = Config::parse(&text, Path::new("big.conf")).expect("parses");
    assert_eq!(cfg.roots.len(), VHOSTS as usize + 1);
    honours_every_map(&Policy::new(cfg));
}

#[test]
fn a_hundred_thousand_maps_compiled_are_honoured_in_place() {
    let cfg = Config::parse(&big(), Path::new("big.conf")).expect("parses");
    let bytes = image::compile(&cfg, image::Stamp::default()).expect("compiles");
    assert!(
        (bytes.len() as u64) < image::MAX_IMAGE_BYTES,
        "{} bytes",
        bytes.len()
    );
    let (img, settings) = image::Image::open(Arc::new(bytes), Path::new("big.conf.tgc")).expect("loads");
    let policy = Policy::from_image(settings, img);
    assert_eq!(policy.root_count(), VHOSTS as usize + 1);
    assert_eq!(policy.config().allow_uids, [0]);
    let last = policy.root(VHOSTS as usize - 1).unwrap();
    assert_eq!(
        (last.text.as_ref(), last.fixed_uid, last.line),
        (
            format!("/var/www/vhosts/d{}.example/httpdocs", VHOSTS - 1).as_str(),
            Some(10_000 + VHOSTS - 1),
            VHOSTS as usize + 2
        )
    );
    honours_every_map(&policy);
}

/// Every 97th vhost, the first and the last, near misses, and the `root` line.
fn honours_every_map(policy: &Policy) {
    // Every 97th vhost, the first and the last: the map's uid, through both lookups.
    for i in (0..VHOSTS).step_by(97).chain([0, VHOSTS - 1]) {
        let path = format!("/var/www/vhosts/d{i}.example/httpdocs/wp-config.php");
        let expected = Expected::Uid(10_000 + i);
        match policy.classify_clean(path.as_bytes()) {
            Some(Target::Guarded {
                expected: e,
                tenant_len,
                ..
            }) => {
                assert_eq!(e, expected, "{path}");
                assert_eq!(
                    &path[..tenant_len],
                    format!("/var/www/vhosts/d{i}.example/httpdocs")
                );
            }
            other => panic!("{path}: {other:?}"),
        }
        let mut out = ScratchPath::<PATH_MAX>::root();
        let messy = format!("/var/www//vhosts/./d{i}.example/httpdocs/x/../index.php");
        assert!(
            matches!(policy.classify(None, messy.as_bytes(), &mut out), Target::Guarded { expected: e, .. } if e == expected),
            "{messy}"
        );
    }
    // Near misses stay outside, and the root still applies.
    for path in [
        "/var/www/vhosts/d100000.example/httpdocs/x",
        "/var/www/vhosts/d5.example/private/x",
        "/var/www/x",
    ] {
        assert_eq!(
            policy.classify_clean(path.as_bytes()),
            Some(Target::Outside),
            "{path}"
        );
    }
    assert!(matches!(
        policy.classify_clean(b"/home/alice/public_html/x"),
        Some(Target::Guarded {
            expected: Expected::TenantOwner,
            ..
        })
    ));
}

#[test]
fn programs_are_decided_without_parsing_a_hundred_thousand_lines() {
    let text = format!("programs nginx php-fpm*\n{}", big());
    assert_eq!(
        toctou_policy::config::program_left_unguarded(text.as_bytes(), b"bash"),
        Some(false)
    );
    assert_eq!(
        toctou_policy::config::program_left_unguarded(text.as_bytes(), b"nginx"),
        None
    );
}
