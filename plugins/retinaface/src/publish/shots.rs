//! Best-shot pictures of the open tracks: kept small (long side at most `snapshot-size`),
//! encoded as JPEG when an event goes out, optionally written to `snapshot-dir`.

use std::collections::HashMap;
use std::path::PathBuf;

use image::ImageEncoder;
use retinaface::events::snapshot::RgbImage;

/// JPEG quality of snapshots.
const JPEG_QUALITY: u8 = 85;

#[derive(Default)]
pub struct Shots {
    pictures: HashMap<u64, RgbImage>,
}

/// One encoded snapshot.
pub struct Jpeg {
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

impl Shots {
    /// `picture` is now the best of track `id`; kept with its long side at most `max_side`.
    pub fn keep(&mut self, id: u64, picture: RgbImage, max_side: u32) {
        self.pictures.insert(id, shrink(picture, max_side));
    }

    pub fn forget(&mut self, id: u64) {
        self.pictures.remove(&id);
    }

    pub fn clear(&mut self) {
        self.pictures.clear();
    }

    /// The best shot of `id` as JPEG; `None` without a picture.
    pub fn jpeg(&self, id: u64) -> Option<Jpeg> {
        let p = self.pictures.get(&id)?;
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY)
            .write_image(
                &p.data,
                p.width as u32,
                p.height as u32,
                image::ExtendedColorType::Rgb8,
            )
            .ok()?;
        Some(Jpeg {
            width: p.width as u32,
            height: p.height as u32,
            bytes,
        })
    }
}

fn shrink(picture: RgbImage, max_side: u32) -> RgbImage {
    let long = picture.width.max(picture.height) as u32;
    if long <= max_side.max(1) {
        return picture;
    }
    let scale = max_side.max(1) as f64 / long as f64;
    let w = ((picture.width as f64 * scale).round() as u32).max(1);
    let h = ((picture.height as f64 * scale).round() as u32).max(1);
    let Some(image) =
        image::RgbImage::from_raw(picture.width as u32, picture.height as u32, picture.data)
    else {
        unreachable!("an RgbImage holds width × height × 3 bytes")
    };
    let small = image::imageops::resize(&image, w, h, image::imageops::FilterType::Triangle);
    RgbImage {
        width: w as usize,
        height: h as usize,
        data: small.into_raw(),
    }
}

/// `<dir>/<camera>/<id>.jpg`, written whole (to a temporary name, then renamed) so a reader
/// never sees half a picture.
pub fn write_file(dir: &str, camera: &str, id: u64, jpeg: &Jpeg) -> std::io::Result<PathBuf> {
    let folder = PathBuf::from(dir).join(camera);
    std::fs::create_dir_all(&folder)?;
    let path = folder.join(format!("{id}.jpg"));
    let partial = folder.join(format!(".{id}.jpg.part"));
    std::fs::write(&partial, &jpeg.bytes)?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_picture_is_shrunk_to_the_long_side_and_encodes_as_jpeg() {
        let picture = RgbImage {
            width: 400,
            height: 200,
            data: vec![90; 400 * 200 * 3],
        };
        let mut shots = Shots::default();
        shots.keep(3, picture, 100);
        let jpeg = shots.jpeg(3).unwrap();
        assert_eq!((jpeg.width, jpeg.height), (100, 50));
        let decoded =
            image::load_from_memory_with_format(&jpeg.bytes, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (100, 50));
        shots.forget(3);
        assert!(shots.jpeg(3).is_none());
    }
}
