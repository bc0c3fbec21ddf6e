//! Compiles `c/exec_variadic.c` and `c/clone_hook.c`: `execl`, `execlp`, `execle` and
//! `clone` are C variadic functions, which stable Rust cannot define.

fn main() {
    println!("cargo:rerun-if-changed=c/exec_variadic.c");
    println!("cargo:rerun-if-changed=c/clone_hook.c");
    cc::Build::new()
        .file("c/exec_variadic.c")
        .file("c/clone_hook.c")
        .warnings_into_errors(true)
        .compile("toctou_exec_variadic");
}
