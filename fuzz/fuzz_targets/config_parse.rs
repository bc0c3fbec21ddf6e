//! The configuration parser on any bytes: `Config::parse_bytes` and `parse_settings_bytes`
//! never panic, agree, and every error names the file and a line of it, is the first
//! offending line, and quotes nothing of the text but the directive word.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = toctou_guard_fuzz::check_config(data, Path::new("/etc/toctou-guard.conf")) {
        panic!("{e}");
    }
});
