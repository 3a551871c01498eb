//! A synthetic NVR wall (a grid of downscaled photos, like a multi-camera monitor) with ground
//! truth, and VOC-style AP@0.5. Shared by `examples/wall_eval` and `tests/tiling.rs`.

use std::path::Path;

use retinaface::geometry::iou;
use retinaface::{DetectParams, Detector, Face, Frame, PixelLayout, Plane, YuvMatrix};

/// Tightly packed RGB pixels.
#[derive(Clone)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Rgb {
    pub fn new(width: usize, height: usize, grey: u8) -> Self {
        Self {
            width,
            height,
            data: vec![grey; width * height * 3],
        }
    }

    pub fn frame(&self) -> (PixelLayout, [Plane<'_>; 1]) {
        (
            PixelLayout::Rgb,
            [Plane {
                data: &self.data,
                stride: self.width * 3,
            }],
        )
    }

    /// The pixels of a packed-RGB sample (rows without their padding).
    pub fn of_sample(sample: &gst::Sample) -> Self {
        let info = gst_video::VideoInfo::from_caps(sample.caps().unwrap()).unwrap();
        let buffer = sample.buffer().unwrap().map_readable().unwrap();
        let (w, h, stride) = (
            info.width() as usize,
            info.height() as usize,
            info.stride()[0] as usize,
        );
        let mut data = Vec::with_capacity(w * h * 3);
        for row in 0..h {
            data.extend_from_slice(&buffer[row * stride..][..w * 3]);
        }
        Self {
            width: w,
            height: h,
            data,
        }
    }

    /// Runs `detector` on the image.
    pub fn detect(&self, detector: &mut Detector, params: &DetectParams) -> Vec<Face> {
        let (layout, planes) = self.frame();
        let frame = Frame {
            layout,
            width: self.width,
            height: self.height,
            planes: &planes,
            matrix: YuvMatrix::BT601,
        };
        detector.detect(&frame, params).expect("detection runs")
    }

    /// Copies `img` with its top-left corner at (`x`, `y`), clipped to this image.
    pub fn paste(&mut self, img: &Rgb, x: usize, y: usize) {
        let w = img.width.min(self.width.saturating_sub(x));
        for row in 0..img.height.min(self.height.saturating_sub(y)) {
            let src = &img.data[row * img.width * 3..][..w * 3];
            self.data[((y + row) * self.width + x) * 3..][..w * 3].copy_from_slice(src);
        }
    }
}

/// Decodes an image file with GStreamer, scaled to `size` (`None` = its own size).
pub fn decode(path: &Path, size: Option<(usize, usize)>) -> Rgb {
    gst::init().unwrap();
    let caps = match size {
        Some((w, h)) => {
            format!("video/x-raw,format=RGB,width={w},height={h},pixel-aspect-ratio=1/1")
        }
        None => "video/x-raw,format=RGB".into(),
    };
    let description = format!(
        "filesrc location={} ! decodebin ! videoconvert ! videoscale method=bilinear add-borders=false ! {caps} ! appsink name=sink sync=false",
        path.display()
    );
    Rgb::of_sample(&crate::first_sample(&description, None))
}

/// The photos the wall is built from (installed by scripts/setup.sh).
pub use crate::media::PHOTOS;

/// Size of one camera tile of the wall.
pub const CELL: (usize, usize) = (480, 270);
/// Ground-truth faces smaller than this (wall pixels, longer side) are "difficult": matching
/// one is neither a hit nor a false alarm (VOC's rule), as no detector is expected to see them.
pub const DIFFICULT_BELOW: f32 = 10.0;

/// A ground-truth face on the wall.
#[derive(Debug, Clone, Copy)]
pub struct Truth {
    pub bbox: [f32; 4],
    pub difficult: bool,
}

/// A photo of the wall: its file, its pixels at its own size and the faces on them.
pub struct Photo {
    pub path: std::path::PathBuf,
    pub image: Rgb,
    pub faces: Vec<Face>,
}

/// A `cols`×`rows` wall of [`CELL`]-sized cameras showing the photos in turn (aspect kept,
/// centred on mid grey), with ground truth: each photo's faces (on the original at its own
/// size) scaled and moved onto each cell.
pub fn build_wall(photos: &[Photo], cols: usize, rows: usize) -> (Rgb, Vec<Truth>) {
    let mut wall = Rgb::new(cols * CELL.0, rows * CELL.1, 128);
    let mut truth = Vec::new();
    let mut scaled: Vec<Option<Rgb>> = vec![None; photos.len()];
    for i in 0..cols * rows {
        let k = i % photos.len();
        let (original, faces) = (&photos[k].image, &photos[k].faces);
        let s = (CELL.0 as f32 / original.width as f32).min(CELL.1 as f32 / original.height as f32);
        let (w, h) = (
            (original.width as f32 * s).round() as usize,
            (original.height as f32 * s).round() as usize,
        );
        let small = scaled[k].get_or_insert_with(|| decode(&photos[k].path, Some((w, h))));
        let (x, y) = (
            (i % cols) * CELL.0 + (CELL.0 - w) / 2,
            (i / cols) * CELL.1 + (CELL.1 - h) / 2,
        );
        wall.paste(small, x, y);
        let (sx, sy) = (
            w as f32 / original.width as f32,
            h as f32 / original.height as f32,
        );
        for f in faces {
            let b = [
                x as f32 + f.bbox[0] * sx,
                y as f32 + f.bbox[1] * sy,
                x as f32 + f.bbox[2] * sx,
                y as f32 + f.bbox[3] * sy,
            ];
            let side = (b[2] - b[0]).max(b[3] - b[1]);
            truth.push(Truth {
                bbox: b,
                difficult: side < DIFFICULT_BELOW,
            });
        }
    }
    (wall, truth)
}

/// VOC-style average precision at IoU ≥ `threshold` over one image: detections best first, each
/// matched to the best-overlapping unmatched truth; a second detection of a face is a false
/// alarm; matches to difficult faces are ignored; AP is the area under the precision envelope
/// (VOC 2010+, all points).
pub fn average_precision(truth: &[Truth], faces: &[Face], threshold: f32) -> f64 {
    let positives = truth.iter().filter(|t| !t.difficult).count();
    if positives == 0 {
        return if faces.is_empty() { 1.0 } else { 0.0 };
    }
    let mut order: Vec<&Face> = faces.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut taken = vec![false; truth.len()];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut points = Vec::new();
    for f in order {
        let best = truth
            .iter()
            .enumerate()
            .map(|(i, t)| (i, iou(&t.bbox, &f.bbox)))
            .filter(|(_, o)| *o >= threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((i, _)) if truth[i].difficult => continue,
            Some((i, _)) if !taken[i] => {
                taken[i] = true;
                tp += 1;
            }
            _ => fp += 1,
        }
        points.push((tp as f64 / positives as f64, tp as f64 / (tp + fp) as f64));
    }
    // Area under the envelope: precision at recall r = the best precision at recall ≥ r.
    let mut ap = 0.0;
    let mut best = 0.0f64;
    let mut next_recall = points.last().map_or(0.0, |p| p.0);
    for &(recall, precision) in points.iter().rev() {
        ap += (next_recall - recall) * best;
        best = best.max(precision);
        next_recall = recall;
    }
    ap + next_recall * best
}
