//! Compiles the vendored ONNX schema (proto/onnx.proto) into Rust types with prost, using protox so
//! no `protoc` binary is needed, and gives the binaries an rpath to libtorch.

fn main() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let descriptors =
        protox::compile(["proto/onnx.proto"], ["proto"]).expect("proto/onnx.proto compiles");
    prost_build::Config::new()
        .compile_fds(descriptors)
        .expect("prost generates the ONNX types");

    // tch links libtorch found through $LIBTORCH (scripts/setup.sh installs it); the rpath lets the
    // trainer and its tests start without LD_LIBRARY_PATH. The CUDA runtime wheel sits beside it.
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        let torch = std::path::Path::new(&libtorch);
        println!(
            "cargo:rustc-link-arg=-Wl,-rpath,{}",
            torch.join("lib").display()
        );
        if let Some(site) = torch.parent() {
            println!(
                "cargo:rustc-link-arg=-Wl,-rpath,{}",
                site.join("nvidia/cu13/lib").display()
            );
        }
    }
}
