//! Where scripts/setup.sh put the models and sample media, and where the plugin was built.

use std::path::PathBuf;

/// Where scripts/setup.sh puts models and media (`RETINAFACE_DATA` overrides).
pub fn data_dir() -> PathBuf {
    std::env::var_os("RETINAFACE_DATA").map_or_else(
        || PathBuf::from("/usr/local/share/retinaface"),
        PathBuf::from,
    )
}

/// Every sample photo scripts/setup.sh installs (under `media/`).
pub const PHOTOS: [&str; 11] = [
    "sample1.jpg",
    "sample2.jpg",
    "sample3.jpg",
    "sample4.jpg",
    "sample5.jpg",
    "sample6.jpg",
    "test.jpg",
    "test2.jpg",
    "test3.jpg",
    "test4.jpg",
    "test5.jpg",
];

/// A sample file installed by scripts/setup.sh, as a path string for pipeline descriptions.
pub fn media(name: &str) -> String {
    installed(data_dir().join("media").join(name))
}

/// A model installed by scripts/setup.sh (e.g. `retinaface-mv025.onnx`).
pub fn model(name: &str) -> String {
    installed(data_dir().join("models").join(name))
}

fn installed(path: PathBuf) -> String {
    assert!(
        path.is_file(),
        "{} missing: run scripts/setup.sh",
        path.display()
    );
    path.to_str().unwrap().to_string()
}

/// Directory of the plugin's `libgstretinaface.so` built for these tests: the target directory,
/// parent of the test binary's `deps/` folder (scripts/test.sh builds it before the tests).
pub fn plugin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("libgstretinaface.so").is_file(),
        "no plugin in {}",
        dir.display()
    );
    dir
}
