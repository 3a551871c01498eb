//! Crops of faces nobody in the library matched, written to a folder of unknown faces so that a
//! user can move one into a person's folder (enrolment, the way Frigate users do it). The crop
//! is the aligned face the model saw, so it is also a good library photo: the detector finds
//! its face again and aligns it the same way.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::align::{AlignError, warp_into};
use crate::preprocess::{Frame, Normalisation};

use super::cache::private_file;

/// Side of an unknown-face crop: the 112-px template scaled ×2, so the detector finds the face
/// in it again when the crop is enrolled.
pub const CROP_SIDE: usize = 224;

/// The face with `landmarks` aligned onto the template in a `side`×`side` crop, as packed RGB
/// bytes.
pub fn aligned_rgb(
    frame: &Frame,
    landmarks: &[[f32; 2]; 5],
    side: usize,
) -> Result<Vec<u8>, AlignError> {
    let plain = Normalisation {
        color_of_channel: [0, 1, 2],
        mean: [0.0; 3],
        inv_std: [1.0; 3],
    };
    let mut planar = vec![0.0; 3 * side * side];
    warp_into(frame, landmarks, side, side, &plain, &mut planar)?;
    let plane = side * side;
    Ok((0..plane)
        .flat_map(|i| [0, 1, 2].map(|c| planar[c * plane + i].round().clamp(0.0, 255.0) as u8))
        .collect())
}

/// Writes `rgb` (`side`×`side`, from [`aligned_rgb`]) as `dir/<stem>.jpg`, mode 0600 (it is
/// biometric data), creating `dir` if needed. Returns the path.
pub fn write_unknown(dir: &Path, stem: &str, rgb: &[u8], side: usize) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let safe: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{safe}.jpg"));
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 92)
        .encode(
            rgb,
            side as u32,
            side as u32,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(io::Error::other)?;
    let mut file = private_file(&path)?;
    file.write_all(&jpeg)?;
    Ok(path)
}
