//! The scan helpers stay exported (global) functions, so the kernel's
//! verifier checks each once on its own rather than once per path into it;
//! bpf-linker would otherwise make them static.
fn main() {
    println!("cargo:rustc-link-arg-bins=--export=lb_least_conn,lb_shortest_response");
}
