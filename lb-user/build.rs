//! Builds `lb-ebpf` for the BPF target and leaves the object in OUT_DIR, where
//! `src/ebpf.rs` embeds it. The toolchain is Debian's rustc-web (see
//! README "Building"), linked into rustup as `debian-1.96` by `cargo xtask`.

use std::env;

fn main() -> anyhow::Result<()> {
    // Debian's stable rustc needs this for `-Z build-std=core`; it is the same
    // switch the kernel uses to build its Rust code.
    // SAFETY: build scripts are single-threaded.
    unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    let toolchain = env::var("LB_EBPF_TOOLCHAIN").unwrap_or_else(|_| "debian-1.96".into());
    println!("cargo:rerun-if-env-changed=LB_EBPF_TOOLCHAIN");
    // aya-build watches lb-ebpf; the shared types live next door.
    println!(
        "cargo:rerun-if-changed={}/../lb-common",
        env!("CARGO_MANIFEST_DIR")
    );
    // The upgrade test's build: the XDP program gets the same layout change.
    let features: &[&str] = if env::var_os("CARGO_FEATURE_LAYOUT_TEST").is_some() {
        &["layout-test"]
    } else {
        &[]
    };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "lb-ebpf",
            root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../lb-ebpf"),
            features,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}
