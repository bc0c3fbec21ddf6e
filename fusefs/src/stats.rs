//! Request counters: how many of each FUSE request the daemon answered. Written on SIGUSR1
//! (stderr and `--stats FILE`) to show what a warm request costs: in no-open mode a warm
//! `cat` or nginx request adds no OPEN, FLUSH or READ at all.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        #[derive(Default)]
        pub struct Stats { $(pub $name: AtomicU64,)* }
        impl Stats {
            pub fn render(&self) -> String {
                let mut s = String::new();
                $(
                    s.push_str(concat!(stringify!($name), "="));
                    s.push_str(&self.$name.load(Ordering::Relaxed).to_string());
                    s.push(' ');
                )*
                s.pop();
                s
            }
        }
    };
}

counters!(
    lookup, forget, getattr, setattr, open, opendir, read, write, flush, release, releasedir, readdir,
    statfs, create, mkdir, unlink, rmdir, rename, fsync, getxattr, other, denied, audited, nodes_live,
);

pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}
