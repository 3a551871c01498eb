//! The library's cache: what each photo gave (an embedding, no face, several faces), keyed by
//! the SHA-256 of the photo's bytes, so that a library of a thousand photos starts in the time
//! it takes to read and hash them, and a photo that is replaced, renamed or moved between
//! people is never read from a stale entry. The cache also names the embedding model (SHA-256 of
//! the model file and the embedding length): another model starts a fresh cache.
//!
//! The file holds biometric data: it is created with mode 0600 (written to a temporary file of
//! that mode, then renamed over the old one, so a crash never leaves half a cache).
//!
//! Format (little-endian): `RFEMBED1`, model key (32 bytes), then records: photo key (32 bytes),
//! kind (1 byte: 0 = embedding, 1 = no face, 2 = several faces), u32 value (embedding length,
//! or the number of faces), then that many f32 for an embedding.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// What one photo gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The (normalised) embedding of its face.
    Face(Vec<f32>),
    NoFace,
    /// This many faces and none clearly the subject.
    SeveralFaces(u32),
}

pub type Key = [u8; 32];

const MAGIC: &[u8; 8] = b"RFEMBED1";

/// SHA-256 of `bytes`.
pub fn key_of(bytes: &[u8]) -> Key {
    Sha256::digest(bytes).into()
}

/// The cache of one library for one model.
#[derive(Debug, Default)]
pub struct Cache {
    model: Key,
    entries: HashMap<Key, Outcome>,
    /// Whether entries were added or dropped since it was read.
    changed: bool,
}

impl Cache {
    /// The cache in `path` for `model`, empty if the file is missing, unreadable, of another
    /// model or damaged (it is only a cache: everything in it can be computed again).
    pub fn read(path: &Path, model: Key) -> Self {
        let entries = fs::read(path)
            .ok()
            .and_then(|bytes| parse(&bytes, &model))
            .unwrap_or_default();
        Self {
            model,
            entries,
            changed: false,
        }
    }

    pub fn get(&self, key: &Key) -> Option<&Outcome> {
        self.entries.get(key)
    }

    pub fn insert(&mut self, key: Key, outcome: Outcome) {
        if self.entries.get(&key) != Some(&outcome) {
            self.entries.insert(key, outcome);
            self.changed = true;
        }
    }

    /// Drops the entries of photos no longer in the library (a deleted person's photos leave
    /// the cache at the next load).
    pub fn keep_only(&mut self, keys: &std::collections::HashSet<Key>) {
        let before = self.entries.len();
        self.entries.retain(|k, _| keys.contains(k));
        self.changed |= self.entries.len() != before;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the cache to `path` (mode 0600) if it changed.
    pub fn write(&mut self, path: &Path) -> io::Result<()> {
        if !self.changed && path.exists() {
            return Ok(());
        }
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.model);
        // Sorted so that equal caches are equal files.
        let mut keys: Vec<&Key> = self.entries.keys().collect();
        keys.sort();
        for key in keys {
            out.extend_from_slice(key);
            match &self.entries[key] {
                Outcome::Face(v) => {
                    out.push(0);
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    for x in v {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                }
                Outcome::NoFace => {
                    out.push(1);
                    out.extend_from_slice(&0u32.to_le_bytes());
                }
                Outcome::SeveralFaces(n) => {
                    out.push(2);
                    out.extend_from_slice(&n.to_le_bytes());
                }
            }
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let written = private_file(&tmp).and_then(|mut f| {
            f.write_all(&out)?;
            f.sync_all()
        });
        let result = written.and_then(|()| fs::rename(&tmp, path));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        } else {
            self.changed = false;
        }
        result
    }
}

/// A new file readable and writable by its owner only (biometric data), replacing any old one.
pub fn private_file(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        // `mode` applies only to a file it creates: an existing one is narrowed too.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        Ok(file)
    }
    #[cfg(not(unix))]
    options.open(path)
}

fn parse(bytes: &[u8], model: &Key) -> Option<HashMap<Key, Outcome>> {
    let mut r = bytes;
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).ok()?;
    let mut stored = [0u8; 32];
    r.read_exact(&mut stored).ok()?;
    if &magic != MAGIC || &stored != model {
        return None;
    }
    let mut entries = HashMap::new();
    while !r.is_empty() {
        let mut key = [0u8; 32];
        r.read_exact(&mut key).ok()?;
        let mut kind = [0u8; 1];
        r.read_exact(&mut kind).ok()?;
        let mut n = [0u8; 4];
        r.read_exact(&mut n).ok()?;
        let n = u32::from_le_bytes(n);
        let outcome = match kind[0] {
            0 => {
                // Bounded by what is left, so a damaged length cannot ask for gigabytes.
                if (n as usize).checked_mul(4)? > r.len() {
                    return None;
                }
                let v = (0..n)
                    .map(|_| {
                        let mut f = [0u8; 4];
                        r.read_exact(&mut f).map(|()| f32::from_le_bytes(f))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .ok()?;
                Outcome::Face(v)
            }
            1 => Outcome::NoFace,
            2 => Outcome::SeveralFaces(n),
            _ => return None,
        };
        entries.insert(key, outcome);
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_cache_reads_back_only_for_its_model() {
        let dir = std::env::temp_dir().join(format!("rf-cache-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cache");
        let model = key_of(b"model a");
        let mut c = Cache::read(&path, model);
        assert!(c.is_empty());
        c.insert(key_of(b"alice.jpg"), Outcome::Face(vec![0.6, -0.8]));
        c.insert(key_of(b"empty.jpg"), Outcome::NoFace);
        c.insert(key_of(b"group.jpg"), Outcome::SeveralFaces(4));
        c.write(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "owner only");
        }
        let back = Cache::read(&path, model);
        assert_eq!(back.len(), 3);
        assert_eq!(
            back.get(&key_of(b"alice.jpg")),
            Some(&Outcome::Face(vec![0.6, -0.8]))
        );
        assert_eq!(
            back.get(&key_of(b"group.jpg")),
            Some(&Outcome::SeveralFaces(4))
        );
        assert!(Cache::read(&path, key_of(b"model b")).is_empty());
        // A damaged file is an empty cache, not an error.
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(Cache::read(&path, model).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
