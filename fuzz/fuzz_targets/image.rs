//! The compiled configuration image (`CONFIG.tgc`) from any bytes: refused with an error
//! naming the file, or loaded and every lookup answered, never a crash. Half the inputs get a
//! good magic and version so the fuzzer reaches the section and record checks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use toctou_guard_fuzz::check_image_bytes;

fuzz_target!(|data: &[u8]| {
    let mut b = data.to_vec();
    if b.len() >= 16 && b[0] & 1 == 0 {
        b[..8].copy_from_slice(&toctou_policy::image::MAGIC);
        b[8..12].copy_from_slice(&toctou_policy::image::VERSION.to_le_bytes());
    }
    let paths: [&[u8]; 3] = [b"/home/a/public_html/x", b"/srv/shop/y", b"/"];
    if let Err(e) = check_image_bytes(b, &paths) {
        panic!("{e}");
    }
});
