//! WIDER FACE label files in the RetinaFace landmark format (`label.txt`).
//!
//! ```text
//! # 0--Parade/0_Parade_marchingband_1_849.jpg
//! 449 330 122 149 488.906 373.643 0.0 542.089 376.442 0.0 515.031 412.83 0.0 485.03 425.893 0.0 538.357 431.491 0.0 0.82
//! 361 98 263 339 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1
//! ```
//!
//! A `#` line starts an image (path relative to the images directory). Each following line is one
//! face: `x y w h`, then five landmarks as `x y flag` (left eye, right eye, nose, left and right
//! mouth corner), then a score: 20 numbers. Landmark coordinates of −1 mean "not annotated".
//! Validation files carry only `x y w h` (4 numbers); those faces have no landmarks.
//!
//! Real label files contain the odd broken line; a training run should not die on line 80 000 of
//! a file it has already spent minutes reading, so bad lines are skipped, counted and reported.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// One annotated face, in pixels of the original image (or normalised 0..1 after augmentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceAnnotation {
    /// `[x_min, y_min, x_max, y_max]`.
    pub bbox: [f32; 4],
    /// Left eye, right eye, nose, left mouth corner, right mouth corner as `[x, y]`; `None` when the
    /// face has no landmark annotation (its landmark loss is then not computed).
    pub landmarks: Option<[[f32; 2]; 5]>,
}

/// One image and its faces.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `images_root` joined with the path from the label file.
    pub image: PathBuf,
    pub faces: Vec<FaceAnnotation>,
}

/// The result of reading a label file: the samples plus what had to be skipped, and why.
#[derive(Debug, Clone, Default)]
pub struct LabelSet {
    pub samples: Vec<Sample>,
    /// Lines that were not used (malformed, empty boxes, faces before any image line).
    pub skipped_lines: usize,
    /// One message per skipped line, naming `file:line`.
    pub warnings: Vec<String>,
}

impl LabelSet {
    /// Tells the user on stderr what was skipped: the first 20 lines by file:line, then the count.
    pub fn report_skipped(&self) {
        for w in self.warnings.iter().take(20) {
            eprintln!("warning: {w}");
        }
        if self.skipped_lines > 0 {
            eprintln!(
                "warning: {} malformed label lines skipped",
                self.skipped_lines
            );
        }
    }
}

/// Numbers on a face line with landmarks: box, 5 × (x, y, flag), score.
const FULL_FACE_NUMBERS: usize = 20;
/// Numbers on a box-only face line (validation files).
const BOX_ONLY_NUMBERS: usize = 4;

/// Reads `label_txt`; image paths are resolved against `images_root` (the `images/` directory
/// next to the label file in the usual layout).
///
/// Only a missing or unreadable file is an error; bad lines become warnings.
pub fn read_label_file(label_txt: &Path, images_root: &Path) -> anyhow::Result<LabelSet> {
    if !label_txt.is_file() {
        bail!(
            "label file {} not found; expected the RetinaFace WIDER FACE layout: \
             <root>/train/label.txt (and <root>/val/label.txt) with lines '# relative/path.jpg' \
             followed by one face per line, the images under <root>/train/images/ (resp. val/images/)",
            label_txt.display()
        );
    }
    // Bytes, not a string: one line that is not UTF-8 (a Latin-1 file name, a stray byte) is
    // one skipped line, not a failed run.
    let text = std::fs::read(label_txt)
        .with_context(|| format!("cannot read label file {}", label_txt.display()))?;
    Ok(parse_labels(
        &text,
        &label_txt.display().to_string(),
        images_root,
    ))
}

/// Parses label text; `source` names the file in warnings.
fn parse_labels(text: &[u8], source: &str, images_root: &Path) -> LabelSet {
    let mut set = LabelSet::default();
    let skip = |set: &mut LabelSet, line_no: usize, why: &str| {
        set.skipped_lines += 1;
        set.warnings
            .push(format!("{source}:{line_no}: {why}; line skipped"));
    };
    // Whether face lines currently belong to the last sample (false before the first `#` line or
    // after a `#` line without a path).
    let mut in_sample = false;
    for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
        let line_no = i + 1;
        let Ok(raw) = std::str::from_utf8(raw) else {
            // An unreadable image line must not hand its faces to the image before it.
            if raw.trim_ascii_start().starts_with(b"#") {
                in_sample = false;
            }
            skip(&mut set, line_no, "not valid UTF-8");
            continue;
        };
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rel = rest.trim().trim_start_matches('/');
            if rel.is_empty() {
                in_sample = false;
                skip(&mut set, line_no, "image line without a path");
                continue;
            }
            set.samples.push(Sample {
                image: images_root.join(rel),
                faces: Vec::new(),
            });
            in_sample = true;
            continue;
        }
        if !in_sample {
            skip(&mut set, line_no, "face line before any '# image' line");
            continue;
        }
        match parse_face(line) {
            Ok(face) => set
                .samples
                .last_mut()
                .expect("in_sample implies a sample")
                .faces
                .push(face),
            Err(why) => skip(&mut set, line_no, &why),
        }
    }
    set
}

/// One face line → annotation, or the reason it cannot be used.
fn parse_face(line: &str) -> Result<FaceAnnotation, String> {
    let numbers: Vec<f32> = line
        .split_whitespace()
        .map(|t| {
            t.parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("'{t}' is not a finite number"))
        })
        .collect::<Result<_, _>>()?;
    if numbers.len() != FULL_FACE_NUMBERS && numbers.len() != BOX_ONLY_NUMBERS {
        return Err(format!(
            "{} numbers, expected {FULL_FACE_NUMBERS} (box, 5 landmarks, score) or {BOX_ONLY_NUMBERS} (box)",
            numbers.len()
        ));
    }
    let [x, y, w, h] = [numbers[0], numbers[1], numbers[2], numbers[3]];
    if w <= 0.0 || h <= 0.0 {
        return Err(format!("empty face box (w={w}, h={h})"));
    }
    let landmarks = (numbers.len() == FULL_FACE_NUMBERS)
        .then(|| std::array::from_fn(|i| [numbers[4 + 3 * i], numbers[5 + 3 * i]]))
        // −1 marks a missing annotation; a set with any missing point cannot be regressed.
        .filter(|points: &[[f32; 2]; 5]| points.iter().flatten().all(|v| *v >= 0.0));
    Ok(FaceAnnotation {
        bbox: [x, y, x + w, y + h],
        landmarks,
    })
}

/// Writes `samples` in the same format [`read_label_file`] reads (landmark flags 0, score 1;
/// faces without landmarks get −1 for all of them). Every image must lie under `images_root`.
pub fn write_label_file(path: &Path, images_root: &Path, samples: &[Sample]) -> anyhow::Result<()> {
    let mut text = String::new();
    for sample in samples {
        let rel = sample.image.strip_prefix(images_root).with_context(|| {
            format!(
                "image {} is not under the images directory {}",
                sample.image.display(),
                images_root.display()
            )
        })?;
        // Label files always use '/', whatever the platform.
        let rel: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        writeln!(text, "# {}", rel.join("/"))?;
        for face in &sample.faces {
            let [x0, y0, x1, y1] = face.bbox;
            write!(text, "{x0} {y0} {} {}", x1 - x0, y1 - y0)?;
            match face.landmarks {
                Some(points) => {
                    for [lx, ly] in points {
                        write!(text, " {lx} {ly} 0.0")?;
                    }
                    writeln!(text, " 1.0")?;
                }
                None => writeln!(text, "{}", " -1".repeat(FULL_FACE_NUMBERS - 4))?,
            }
        }
    }
    std::fs::write(path, text)
        .with_context(|| format!("cannot write label file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# 0--Parade/a.jpg
10 20 30 40 12.5 25 0.0 30 25 1.0 20 35 0.0 14 50 0.0 28 50.5 0.0 0.82
5 5 8 9 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0
1 2 3
7 7 nan 4
7 7 x 4
3 3 0 4

#   /1--Handshaking/b.jpg
100 200 50 60
";

    fn parse(text: &str) -> LabelSet {
        parse_labels(text.as_bytes(), "label.txt", Path::new("/data/images"))
    }

    #[test]
    fn lines_that_are_not_utf8_are_skipped_with_their_faces() {
        // Line 3: a face line with a stray byte; line 4: an image line in Latin-1, whose face
        // (line 5) must not be given to a.jpg; line 6 starts a readable image again.
        let text =
            b"# a.jpg\n10 20 30 40\n11 21 \xff 41\n# caf\xe9.jpg\n1 2 3 4\n# b.jpg\n5 6 7 8\n";
        let set = parse_labels(text, "label.txt", Path::new("/data/images"));
        let images: Vec<_> = set.samples.iter().map(|s| s.image.clone()).collect();
        assert_eq!(
            images,
            [
                Path::new("/data/images/a.jpg"),
                Path::new("/data/images/b.jpg")
            ]
        );
        assert_eq!(set.samples[0].faces.len(), 1);
        assert_eq!(set.samples[1].faces.len(), 1);
        assert_eq!(set.skipped_lines, 3, "{:?}", set.warnings);
        assert!(set.warnings[0].starts_with("label.txt:3: not valid UTF-8"));
        assert!(set.warnings[1].starts_with("label.txt:4: not valid UTF-8"));
        assert!(set.warnings[2].starts_with("label.txt:5: face line before"));
    }

    #[test]
    fn good_lines_become_faces_in_pixels() {
        let set = parse(TEXT);
        assert_eq!(set.samples.len(), 2);
        let a = &set.samples[0];
        assert_eq!(a.image, Path::new("/data/images/0--Parade/a.jpg"));
        assert_eq!(a.faces.len(), 2);
        assert_eq!(a.faces[0].bbox, [10.0, 20.0, 40.0, 60.0]);
        assert_eq!(
            a.faces[0].landmarks,
            Some([
                [12.5, 25.0],
                [30.0, 25.0],
                [20.0, 35.0],
                [14.0, 50.0],
                [28.0, 50.5]
            ])
        );
        // All −1: box kept, landmarks absent.
        assert_eq!(a.faces[1].bbox, [5.0, 5.0, 13.0, 14.0]);
        assert_eq!(a.faces[1].landmarks, None);
        // Validation style (4 numbers), leading slash in the path dropped.
        let b = &set.samples[1];
        assert_eq!(b.image, Path::new("/data/images/1--Handshaking/b.jpg"));
        assert_eq!(
            b.faces,
            vec![FaceAnnotation {
                bbox: [100.0, 200.0, 150.0, 260.0],
                landmarks: None
            }]
        );
    }

    #[test]
    fn malformed_lines_are_skipped_with_file_and_line() {
        let set = parse(TEXT);
        assert_eq!(set.skipped_lines, 4, "{:?}", set.warnings);
        let w = &set.warnings;
        assert!(
            w[0].starts_with("label.txt:4:") && w[0].contains("3 numbers"),
            "{w:?}"
        );
        assert!(
            w[1].starts_with("label.txt:5:") && w[1].contains("'nan'"),
            "{w:?}"
        );
        assert!(
            w[2].starts_with("label.txt:6:") && w[2].contains("'x'"),
            "{w:?}"
        );
        assert!(
            w[3].starts_with("label.txt:7:") && w[3].contains("empty face box"),
            "{w:?}"
        );
    }

    #[test]
    fn face_before_any_image_is_skipped() {
        let set = parse("1 2 3 4\n# a.jpg\n1 2 3 4\n#\n5 6 7 8\n");
        assert_eq!(set.samples.len(), 1);
        assert_eq!(set.samples[0].faces.len(), 1);
        assert_eq!(set.skipped_lines, 3, "{:?}", set.warnings);
        assert!(
            set.warnings[0].contains(":1: face line before"),
            "{:?}",
            set.warnings
        );
        assert!(set.warnings[1].contains(":4: image line without a path"));
        assert!(set.warnings[2].contains(":5: face line before"));
    }

    #[test]
    fn partly_missing_landmarks_count_as_absent() {
        let set = parse("# a.jpg\n0 0 10 10 1 1 0 2 2 0 -1 -1 -1 4 4 0 5 5 0 0.5\n");
        assert_eq!(set.samples[0].faces[0].landmarks, None);
    }

    #[test]
    fn missing_file_explains_the_layout() {
        let err = read_label_file(Path::new("/nonexistent/train/label.txt"), Path::new("/x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/train/label.txt"), "{err}");
        assert!(err.contains("<root>/train/label.txt"), "{err}");
        assert!(err.contains("images"), "{err}");
    }

    #[test]
    fn written_file_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("images");
        let samples = vec![
            Sample {
                image: root.join("0--Parade/a.jpg"),
                faces: vec![
                    FaceAnnotation {
                        bbox: [10.0, 20.0, 40.5, 60.25],
                        landmarks: Some([
                            [1.0, 2.0],
                            [3.0, 4.0],
                            [5.0, 6.0],
                            [7.0, 8.0],
                            [9.5, 10.0],
                        ]),
                    },
                    FaceAnnotation {
                        bbox: [0.0, 0.0, 4.0, 4.0],
                        landmarks: None,
                    },
                ],
            },
            Sample {
                image: root.join("b.jpg"),
                faces: vec![],
            },
        ];
        let path = dir.path().join("label.txt");
        write_label_file(&path, &root, &samples).unwrap();
        let set = read_label_file(&path, &root).unwrap();
        assert_eq!(set.samples, samples);
        assert_eq!(set.skipped_lines, 0);
    }

    #[test]
    fn writing_an_image_outside_the_root_fails() {
        let dir = tempfile::tempdir().unwrap();
        let samples = [Sample {
            image: PathBuf::from("/elsewhere/a.jpg"),
            faces: vec![],
        }];
        let err = write_label_file(&dir.path().join("l.txt"), dir.path(), &samples).unwrap_err();
        assert!(err.to_string().contains("/elsewhere/a.jpg"), "{err}");
    }
}
