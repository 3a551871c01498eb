//! Small file-system helpers.

use std::path::Path;

use anyhow::Context;

/// Writes `bytes` to `path` via a temporary file in the same directory and a rename, so readers
/// (and a resumed run after a crash) see either the old or the new file, never a partial one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}
