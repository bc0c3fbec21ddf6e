//! The denial log line: `write_escaped` on any bytes and bound, and whole lines from
//! `write_header` + `write_denial` with any field values, checked by reading them back.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use toctou_guard_fuzz::{DENY_REASONS, LONGEST_TAG, check_denial, check_escaped};
use toctou_policy::Mode;
use toctou_policy::logline::{Denial, write_escaped};

#[derive(Arbitrary, Debug)]
struct Input {
    bytes: Vec<u8>,
    max: u16,
    audit: bool,
    reason: u8,
    audit_mode: bool,
    uid: Option<u32>,
    owner: Option<u32>,
    expected: Option<u32>,
    suppressed: u64,
    comm: Vec<u8>,
    tenant: Vec<u8>,
    path: Vec<u8>,
    pid: u32,
    fs_tag: bool,
}

fuzz_target!(|input: Input| {
    let max = usize::from(input.max % 1100);
    let mut out = String::new();
    write_escaped(&mut out, &input.bytes, max).expect("a String takes any text");
    if let Err(e) = check_escaped(&input.bytes, max, &out) {
        panic!("write_escaped(max {max}): {e}");
    }
    let d = Denial {
        audit: input.audit,
        reason: DENY_REASONS[usize::from(input.reason) % DENY_REASONS.len()],
        mode: if input.audit_mode {
            Mode::Audit
        } else {
            Mode::Enforce
        },
        uid: input.uid,
        owner: input.owner,
        expected: input.expected,
        suppressed: input.suppressed,
        comm: &input.comm,
        tenant: &input.tenant,
        path: &input.path,
    };
    let tag = if input.fs_tag { LONGEST_TAG } else { "toctou-guard" };
    if let Err(e) = check_denial(&d, tag, input.pid) {
        panic!("{e}");
    }
});
