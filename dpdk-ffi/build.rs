//! Generates bindings to the system DPDK (pkg-config `libdpdk`) and compiles the
//! wrappers that make its static-inline functions callable from Rust.
use std::env;
use std::path::PathBuf;
use std::process::exit;

/// One clear line naming what is missing, then stop the build.
fn missing(what: &str, detail: &str) -> ! {
    eprintln!(
        "error: dpdk-ffi: {what} is missing: {detail}\n\
         hint: on Debian bookworm run `apt-get install libdpdk-dev clang libclang-dev pkg-config` \
         (or `make deps` as root)"
    );
    exit(1);
}

fn main() {
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-changed=src/shim.c");

    if which("pkg-config").is_none() {
        missing("pkg-config", "the `pkg-config` program was not found on PATH (package pkg-config)");
    }
    let dpdk = match pkg_config::Config::new().atleast_version("22.11").probe("libdpdk") {
        Ok(lib) => lib,
        Err(err) => missing(
            "DPDK 22.11 (package libdpdk-dev)",
            err.to_string().lines().next().unwrap_or("pkg-config libdpdk failed"),
        ),
    };
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let wrappers = out.join("static_fns");
    let include_args: Vec<String> =
        dpdk.include_paths.iter().map(|p| format!("-I{}", p.display())).collect();
    // DPDK's headers use SSE4.2 intrinsics when built for the machine; match the
    // flags the distribution's pkg-config file gives (-include rte_config.h, -march).
    let cflags = pkg_config_cflags();

    let builder = bindgen::Builder::default()
        .header("src/shim.h")
        .clang_args(&cflags)
        .clang_args(&include_args)
        .allowlist_function("rte_.*|sy_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        // Packed structs with aligned members that bindgen cannot lay out: kept opaque.
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .layout_tests(false)
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrappers)
        .generate_comments(false);
    // bindgen panics (rather than returning an error) when libclang cannot be loaded.
    let bindings = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.generate())) {
        Ok(Ok(b)) => b,
        Ok(Err(err)) => missing("a usable libclang (packages clang, libclang-dev)", &err.to_string()),
        Err(_) => missing("libclang (packages clang, libclang-dev)", "bindgen could not load libclang"),
    };
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings.rs");

    let mut build = cc::Build::new();
    build
        .file(wrappers.with_extension("c"))
        .file("src/shim.c")
        .include("src")
        .include(env::current_dir().expect("cwd"))
        .warnings(false)
        .opt_level(3);
    for flag in &cflags {
        build.flag(flag);
    }
    for path in &dpdk.include_paths {
        build.include(path);
    }
    build.compile("dpdk_ffi_shim");

    // The wrappers call into DPDK; list the DPDK libraries again after them.
    for lib in &dpdk.libs {
        println!("cargo:rustc-link-lib={lib}");
    }
}

/// The raw `--cflags` of libdpdk (pkg_config::Library splits out include paths
/// but drops the other flags, such as `-include rte_config.h` and `-march`).
fn pkg_config_cflags() -> Vec<String> {
    let out = std::process::Command::new("pkg-config")
        .args(["--cflags-only-other", "libdpdk"])
        .output()
        .unwrap_or_else(|e| missing("pkg-config", &e.to_string()));
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
}

fn which(program: &str) -> Option<PathBuf> {
    env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|p| p.is_file())
}
