//! The face library: a folder with one sub-folder per person holding photos of them
//! (`library/Alice/1.jpg`, `library/Bob/passport.png`, …), and matching an embedding against it.
//!
//! [`Library::load`] takes each photo (JPEG or PNG; other files are ignored), finds its faces
//! with the detector, keeps the subject (the largest face, unless another face is nearly as
//! large: then the photo is ambiguous), aligns and embeds it. What each photo gave is kept in a
//! cache inside the library folder ([`CACHE_FILE`], mode 0600, keyed by the photo's content:
//! `cache.rs`), so a restart embeds only new or changed photos. Photos that give nothing
//! usable come back as [`Skipped`] entries naming the file, for the caller to warn about.
//!
//! A person is matched by the best cosine similarity between the query and any of their
//! photos' embeddings (several photos cover several poses, lighting, glasses; a mean would
//! blur them), and named only at or above a threshold ([`Library::identify`]).
//!
//! `tracks.rs` keeps who each track of a stream is (embedded per track, never per frame).
//! `unknown.rs` writes the crops of faces nobody matched, ready to be moved into a person's
//! folder (enrolment).

mod cache;
mod people;
mod tracks;
mod unknown;

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

pub use cache::{Cache, Outcome, private_file};
pub use people::{DEFAULT_THRESHOLD, Library, Match, Person};
pub use tracks::{TrackConfig, Tracks};
pub use unknown::{CROP_SIDE, aligned_rgb, write_unknown};

use crate::detector::{DetectParams, Detector};
use crate::embedding::{Embedder, Embedding};
use crate::pixfmt::{PixelLayout, YuvMatrix};
use crate::preprocess::{Frame, Plane};

/// The cache file inside the library folder (hidden, so it is not taken for a person).
pub const CACHE_FILE: &str = ".retinaface-embeddings";

/// A photo whose second largest face is at least this fraction of the largest face's width is
/// ambiguous (which of them is the person?) and skipped; a much smaller face in the background
/// does not stop the subject from being enrolled.
pub const AMBIGUOUS_WIDTH_RATIO: f32 = 0.5;

/// Why a photo was not used.
#[derive(Debug, Clone, PartialEq)]
pub enum SkipReason {
    NoFace,
    SeveralFaces(u32),
    /// Not readable or not decodable.
    Unreadable(String),
    /// The face was found but could not be embedded.
    Embedding(String),
}

/// A photo that gave nothing usable: the caller warns, naming it.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: SkipReason,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.reason {
            SkipReason::NoFace => write!(
                f,
                "face library photo '{p}' shows no face: skipped (use a photo where the face is clearly visible)"
            ),
            SkipReason::SeveralFaces(n) => write!(
                f,
                "face library photo '{p}' shows {n} faces of similar size: skipped (crop it to the one person)"
            ),
            SkipReason::Unreadable(e) => {
                write!(f, "face library photo '{p}' cannot be read: {e}: skipped")
            }
            SkipReason::Embedding(e) => {
                write!(
                    f,
                    "face library photo '{p}' could not be embedded: {e}: skipped"
                )
            }
        }
    }
}

/// Why a library could not be loaded at all.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error(
        "face library '{path}' cannot be read: {source} (give a folder with one sub-folder of photos per person)"
    )]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What [`Library::load`] found.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub skipped: Vec<Skipped>,
    /// Photos whose result came from the cache / that were detected and embedded now.
    pub cached: usize,
    pub computed: usize,
    /// Set when the cache could not be written (the library still works; the next start is
    /// slower).
    pub cache_error: Option<String>,
}

impl Library {
    /// Loads the library in `dir` (see the module documentation), detecting with `detector`
    /// at `params` and embedding with `embedder`.
    pub fn load(
        dir: &Path,
        detector: &mut Detector,
        params: &DetectParams,
        embedder: &Embedder,
    ) -> Result<(Self, LoadReport), LibraryError> {
        let folder_error = |source| LibraryError::Folder {
            path: dir.to_path_buf(),
            source,
        };
        let model_key = fs::read(&embedder.client().engine().key().model)
            .map(|bytes| cache::key_of(&bytes))
            .unwrap_or_default();
        let cache_path = dir.join(CACHE_FILE);
        let mut cache = Cache::read(&cache_path, model_key);
        let mut report = LoadReport::default();
        let mut people = Vec::new();
        let mut seen = HashSet::new();
        for (name, photos) in people_in(dir).map_err(folder_error)? {
            let mut person = Person {
                name,
                embeddings: Vec::new(),
                photos: Vec::new(),
            };
            for path in photos {
                let bytes = match fs::read(&path) {
                    Ok(b) => b,
                    Err(e) => {
                        report.skipped.push(Skipped {
                            path,
                            reason: SkipReason::Unreadable(e.to_string()),
                        });
                        continue;
                    }
                };
                let key = cache::key_of(&bytes);
                seen.insert(key);
                let outcome = match cache.get(&key) {
                    Some(o) => {
                        report.cached += 1;
                        o.clone()
                    }
                    None => match embed_photo(&bytes, detector, params, embedder) {
                        Ok(o) => {
                            report.computed += 1;
                            cache.insert(key, o.clone());
                            o
                        }
                        Err(reason) => {
                            report.skipped.push(Skipped { path, reason });
                            continue;
                        }
                    },
                };
                let reason = match outcome {
                    Outcome::Face(v) => match Embedding::new(v) {
                        Some(e) => {
                            person.embeddings.push(e);
                            person.photos.push(path);
                            continue;
                        }
                        None => SkipReason::Embedding("zero embedding".into()),
                    },
                    Outcome::NoFace => SkipReason::NoFace,
                    Outcome::SeveralFaces(n) => SkipReason::SeveralFaces(n),
                };
                report.skipped.push(Skipped { path, reason });
            }
            if !person.embeddings.is_empty() {
                people.push(person);
            }
        }
        cache.keep_only(&seen);
        if let Err(e) = cache.write(&cache_path) {
            report.cache_error = Some(format!("{}: {e}", cache_path.display()));
        }
        Ok((Self { people }, report))
    }
}

/// What the library folder `dir` holds, from the names, sizes and modification times of the
/// photos a load would read ([`people_in`]): adding, removing or replacing a person or a photo
/// changes it. No photo is read, so it is cheap enough to check every few seconds. `None` when
/// the folder cannot be listed.
pub fn fingerprint(dir: &Path) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    for (name, photos) in people_in(dir).ok()? {
        name.hash(&mut hasher);
        for path in photos {
            let meta = fs::metadata(&path).ok();
            (path, meta.map(|m| (m.len(), m.modified().ok()))).hash(&mut hasher);
        }
    }
    Some(hasher.finish())
}

/// The people of a library folder: each sub-folder (not hidden) with its photos, both sorted by
/// name so that loads are reproducible.
fn people_in(dir: &Path) -> std::io::Result<Vec<(String, Vec<PathBuf>)>> {
    let mut people = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let mut photos: Vec<PathBuf> = fs::read_dir(entry.path())?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && is_photo(p))
            .collect();
        photos.sort();
        people.push((name, photos));
    }
    people.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(people)
}

fn is_photo(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

/// Decodes a photo, finds its subject and embeds it.
fn embed_photo(
    bytes: &[u8],
    detector: &mut Detector,
    params: &DetectParams,
    embedder: &Embedder,
) -> Result<Outcome, SkipReason> {
    let image = image::load_from_memory(bytes)
        .map_err(|e| SkipReason::Unreadable(e.to_string()))?
        .to_rgb8();
    let (width, height) = (image.width() as usize, image.height() as usize);
    let planes = [Plane {
        data: image.as_raw(),
        stride: width * 3,
    }];
    let frame = Frame {
        layout: PixelLayout::Rgb,
        width,
        height,
        planes: &planes,
        matrix: YuvMatrix::BT601,
    };
    let faces = detector
        .detect(&frame, params)
        .map_err(|e| SkipReason::Embedding(e.to_string()))?;
    let mut by_width: Vec<_> = faces.iter().collect();
    by_width.sort_by(|a, b| b.width().total_cmp(&a.width()));
    let Some(subject) = by_width.first() else {
        return Ok(Outcome::NoFace);
    };
    if by_width
        .get(1)
        .is_some_and(|f| f.width() >= AMBIGUOUS_WIDTH_RATIO * subject.width())
    {
        return Ok(Outcome::SeveralFaces(faces.len() as u32));
    }
    let embedding = embedder
        .embed(&frame, &[subject.landmarks])
        .map_err(|e| SkipReason::Embedding(e.to_string()))?
        .pop()
        .ok_or_else(|| SkipReason::Embedding("no answer".into()))?;
    Ok(Outcome::Face(embedding.values().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(name: &str, vectors: &[&[f32]]) -> Person {
        Person {
            name: name.into(),
            embeddings: vectors
                .iter()
                .map(|v| Embedding::new(v.to_vec()).unwrap())
                .collect(),
            photos: Vec::new(),
        }
    }

    #[test]
    fn the_best_photo_of_anyone_decides_and_the_threshold_names() {
        let library = Library {
            people: vec![
                person("Alice", &[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0]]),
                person("Bob", &[&[0.0, 0.0, 1.0]]),
            ],
        };
        // Close to Alice's second photo: cos = 0.8 / 1 = 0.8 (vector (0.6, 0.8, 0) is unit).
        let q = Embedding::new(vec![0.0, 0.8, 0.6]).unwrap();
        let m = library.nearest(&q).unwrap();
        assert_eq!(m.name, "Alice");
        assert!((m.similarity - 0.8).abs() < 1e-6);
        assert_eq!(
            library.identify(&q, 0.8).map(|m| m.name),
            Some("Alice".into())
        );
        assert_eq!(
            library.identify(&q, 0.81),
            None,
            "below the threshold: unknown"
        );
        assert_eq!(Library::default().nearest(&q), None);
    }

    #[test]
    fn people_are_the_sub_folders_and_photos_their_images() {
        let dir = std::env::temp_dir().join(format!("rf-lib-scan-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (f, body) in [
            ("Bob/b.PNG", "x"),
            ("Alice/2.jpg", "x"),
            ("Alice/1.jpeg", "x"),
            ("Alice/notes.txt", "x"),
            (".hidden/1.jpg", "x"),
            (CACHE_FILE, "x"),
        ] {
            let p = dir.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, body).unwrap();
        }
        let people = people_in(&dir).unwrap();
        let names: Vec<_> = people.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Alice", "Bob"]);
        let alice: Vec<_> = people[0]
            .1
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(alice, ["1.jpeg", "2.jpg"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_fingerprint_follows_the_photos_a_load_reads_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let write = |f: &str, body: &str| {
            let p = dir.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, body).unwrap();
        };
        write("Alice/1.jpg", "x");
        let first = fingerprint(dir.path()).unwrap();
        write("Alice/notes.txt", "not a photo");
        write(CACHE_FILE, "cache");
        assert_eq!(fingerprint(dir.path()), Some(first));
        write("Bob/1.png", "y");
        let second = fingerprint(dir.path()).unwrap();
        assert_ne!(second, first, "a person added");
        write("Bob/1.png", "yy");
        assert_ne!(fingerprint(dir.path()), Some(second), "a photo replaced");
        assert_eq!(fingerprint(&dir.path().join("missing")), None);
    }

    #[test]
    fn skipped_photos_are_named_in_their_message() {
        let s = Skipped {
            path: "lib/Alice/group.jpg".into(),
            reason: SkipReason::SeveralFaces(3),
        };
        let text = s.to_string();
        assert!(
            text.contains("lib/Alice/group.jpg") && text.contains("3 faces"),
            "{text}"
        );
    }
}
