//! The tenant-owner cache shared by a server's workers (`cache_shared UID`): forked workers of
//! the configured uid share hits, a worker of another uid never uses (nor keeps mapped) the
//! shared table — not even after a worker of the configured uid forged it — and a writer
//! killed mid-update leaves it usable and correct. Needs root; the
//! helper is `tests/c/ownercache.c` (the master forks the workers and flips the tenant
//! directory's owner between them: a worker that still accepts the file used a cached entry).

use std::ffi::OsStr;

use toctou_guard_tests::shim_fixture::{ALICE, BOB, Fixture, SERVER, c_program};

/// Another server uid (a second php-fpm pool).
const OTHER: u32 = 42004;

fn run(f: &Fixture, mode: &str) -> Vec<String> {
    let tenant = f.base.join("home/alice");
    let ids = [SERVER, OTHER, ALICE, BOB].map(|u| u.to_string());
    let mut args: Vec<&OsStr> = vec![
        OsStr::new(mode),
        tenant.as_os_str(),
        f.alice("index.html").into_os_string().leak(),
        f.alice("link").into_os_string().leak(),
    ];
    args.extend(ids.iter().map(OsStr::new));
    // As root: the master, which drops to each worker's uid after fork.
    let out = f
        .command(&c_program("ownercache"))
        .args(&args)
        .output()
        .expect("run ownercache");
    assert!(
        out.stderr.is_empty(),
        "the shim must not write to fd 2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ownercache {mode}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Shared by [`SERVER`]'s workers.
fn conf() -> String {
    format!("cache_ttl_ms 60000\ncache_slots 64\ncache_shared {SERVER}\n")
}

#[test]
fn forked_workers_share_hits_and_another_uid_never_shares() {
    let Some(f) = Fixture::new("ownercache-share", &conf()) else {
        return;
    };
    assert_eq!(
        run(&f, "share"),
        [
            "first OK alice-own",
            // Cached by the first worker: alice's file is still accepted once her tenant
            // directory is bob's.
            "sibling OK alice-own",
            // Another uid looks the owner up itself (bob's now), with the shared table unmapped.
            "other-uid ERR EACCES",
            "other-uid shared-maps 0",
            "sibling shared-maps 1",
            // ...and did not disturb the table of the first uid.
            "sibling-after OK alice-own",
        ]
    );
}

#[test]
fn cache_shared_off_keeps_every_worker_to_itself() {
    let conf = "cache_ttl_ms 60000\ncache_slots 64\ncache_shared off\n";
    let Some(f) = Fixture::new("ownercache-off", conf) else {
        return;
    };
    assert_eq!(
        run(&f, "share"),
        [
            "first OK alice-own",
            "sibling ERR EACCES",
            "other-uid ERR EACCES",
            "other-uid shared-maps 0",
            "sibling shared-maps 0",
            "sibling-after ERR EACCES",
        ]
    );
}

#[test]
fn entries_forged_by_the_shared_uid_never_reach_another_uid() {
    let Some(f) = Fixture::new("ownercache-forge", &conf()) else {
        return;
    };
    assert_eq!(
        run(&f, "forge"),
        [
            "forger OK alice-own",
            // Alice's tenant now "owned" by bob, with a valid tag (the forger knows the seed).
            "forger rewrote 1 entry to bob",
            // The forgery works on its own uid (what such code can do anyway)...
            "sibling OK BOB-SECRET",
            // ...but a worker of another uid forked later dropped the table at its setuid,
            // whatever was written in it: it looks the owner up itself.
            "other-uid ERR EACCES",
            "other-uid OK alice-own",
            "other-uid shared-maps 0",
        ]
    );
}

#[test]
fn the_shared_cache_survives_a_writer_killed_mid_update() {
    let Some(f) = Fixture::new("ownercache-killed", &conf()) else {
        return;
    };
    assert_eq!(
        run(&f, "killed"),
        [
            "first OK alice-own",
            // Every slot left busy with bob as the half-written owner.
            "writer killed by KILL",
            // Busy is a miss: the symlink to bob's file is refused, alice's file served,
            // without waiting for the dead writer.
            "next ERR EACCES",
            "next OK alice-own",
            // Not the entry hidden under the busy lock: the owner is looked up (bob's now).
            "after-chown ERR EACCES",
            "busy slots cost no wait: yes",
            // Past RECLAIM_MS the slots are taken over and shared again.
            "reclaim OK alice-own",
            "shared-again OK alice-own",
        ]
    );
}
