//! Compiles `c/exec_variadic.c`: `execl`, `execlp` and `execle` are C variadic functions,
//! which stable Rust cannot define.

fn main() {
    println!("cargo:rerun-if-changed=c/exec_variadic.c");
    cc::Build::new()
        .file("c/exec_variadic.c")
        .warnings_into_errors(true)
        .compile("toctou_exec_variadic");
}
