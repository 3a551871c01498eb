//! With the `torch` feature only: an rpath to libtorch ($LIBTORCH/lib, and the CUDA runtime the
//! PyPI wheel keeps beside it) for this package's tests and examples, which link libtorch, so
//! they start without LD_LIBRARY_PATH. A default build does nothing here.

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    if let Some(libtorch) = std::env::var_os("LIBTORCH") {
        let torch = std::path::Path::new(&libtorch);
        println!(
            "cargo:rustc-link-arg=-Wl,-rpath,{}",
            torch.join("lib").display()
        );
        if let Some(site) = torch.parent() {
            let cuda = site.join("nvidia/cu13/lib");
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", cuda.display());
        }
    }
}
