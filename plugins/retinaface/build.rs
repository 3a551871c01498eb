fn main() {
    gst_plugin_version_helper::info();
    // With the libtorch backend (feature `torch`), an rpath to the libtorch it was built against
    // ($LIBTORCH/lib), so GStreamer can load the plugin without LD_LIBRARY_PATH on this machine;
    // elsewhere (e.g. PyTorch's torch/lib on a GPU machine) LD_LIBRARY_PATH names it.
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if std::env::var_os("CARGO_FEATURE_TORCH").is_some()
        && let Some(libtorch) = std::env::var_os("LIBTORCH")
    {
        let lib = std::path::Path::new(&libtorch).join("lib");
        println!("cargo:rustc-link-arg-cdylib=-Wl,-rpath,{}", lib.display());
    }
}
