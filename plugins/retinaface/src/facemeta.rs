//! The face metadata schema shared by every element of the plugin.
//!
//! One `GstVideoRegionOfInterestMeta` per face, following Intel DL Streamer's conventions:
//!
//! - `roi_type` = `"face"`, rectangle = the box in buffer pixels (transformed by GStreamer when
//!   the frame is scaled, e.g. by `videoscale`);
//! - param `detection`: `x_min`, `y_min`, `x_max`, `y_max` (double, box normalised to the frame,
//!   0..1), `confidence` (double), `label_id` (int, 0), `label` (string, `"face"`);
//! - param `landmarks`: `format` = `"landmark_points"`, `points` = array of 10 doubles
//!   `x0, y0, … x4, y4` for left eye, right eye, nose, left mouth corner, right mouth corner,
//!   normalised to the ROI rectangle (0,0 = its top-left, 1,1 = its bottom-right) so they stay
//!   right when the rectangle is transformed.
//!
//! GStreamer 1.22 drops ROI params when it scales the meta (`videoscale`), keeping the rectangle
//! and the ROI `id`. So the same score and landmarks are also stored, keyed by ROI id, in one
//! tag-less custom meta [`BACKUP_META`] per buffer, which scaling elements copy unchanged;
//! [`read`] falls back to it when a ROI has lost its params.

use gst_video::VideoRegionOfInterestMeta;
use retinaface::Face;

pub const ROI_TYPE: &str = "face";
pub const DETECTION: &str = "detection";
pub const LANDMARKS: &str = "landmarks";
/// Name of the custom meta that backs up score and landmarks per ROI id.
pub const BACKUP_META: &str = "GstRetinaFaceBackupMeta";

/// Registers [`BACKUP_META`]; called once from plugin init.
pub fn register_backup_meta() {
    if !gst::meta::CustomMeta::is_registered(BACKUP_META) {
        gst::meta::CustomMeta::register(BACKUP_META, &[]);
    }
}

/// A face as read back from a buffer, in that buffer's pixels.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FaceRecord {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    /// `None` when the producer gave no `detection` param.
    pub score: Option<f64>,
    /// Left eye, right eye, nose, left and right mouth corner; empty when absent.
    pub landmarks: Vec<[f64; 2]>,
}

/// Integer ROI rectangle `(x, y, w, h)` covering `bbox` inside a `width`×`height` frame.
fn roi_rect(bbox: &[f32; 4], width: u32, height: u32) -> (u32, u32, u32, u32) {
    let clamp = |v: f32, max: u32| (v.round().max(0.0) as u32).min(max);
    let (x0, y0) = (
        clamp(bbox[0], width.saturating_sub(1)),
        clamp(bbox[1], height.saturating_sub(1)),
    );
    let (x1, y1) = (clamp(bbox[2], width), clamp(bbox[3], height));
    (
        x0,
        y0,
        x1.saturating_sub(x0).max(1),
        y1.saturating_sub(y0).max(1),
    )
}

/// Attaches one ROI meta per face to `buffer` (a `width`×`height` frame).
pub fn attach(buffer: &mut gst::BufferRef, faces: &[Face], width: u32, height: u32) {
    let (fw, fh) = (width as f64, height as f64);
    let (mut ids, mut scores, mut all_points) = (Vec::new(), Vec::new(), Vec::new());
    for (id, face) in faces.iter().enumerate() {
        let rect = roi_rect(&face.bbox, width, height);
        let b = face.bbox.map(f64::from);
        let detection = gst::Structure::builder(DETECTION)
            .field("x_min", b[0] / fw)
            .field("y_min", b[1] / fh)
            .field("x_max", b[2] / fw)
            .field("y_max", b[3] / fh)
            .field("confidence", face.score as f64)
            .field("label_id", 0i32)
            .field("label", "face")
            .build();
        let (rx, ry, rw, rh) = (rect.0 as f64, rect.1 as f64, rect.2 as f64, rect.3 as f64);
        let points: Vec<f64> = face
            .landmarks
            .iter()
            .flat_map(|[x, y]| [(*x as f64 - rx) / rw, (*y as f64 - ry) / rh])
            .collect();
        ids.push(id as i32);
        scores.push(face.score as f64);
        all_points.extend_from_slice(&points);
        let landmarks = gst::Structure::builder(LANDMARKS)
            .field("format", "landmark_points")
            .field("points", gst::Array::new(points))
            .build();
        let mut meta = VideoRegionOfInterestMeta::add(buffer, ROI_TYPE, rect);
        meta.set_id(id as i32);
        meta.add_param(detection);
        meta.add_param(landmarks);
    }
    if faces.is_empty() {
        return;
    }
    match gst::meta::CustomMeta::add(buffer, BACKUP_META) {
        Ok(mut backup) => {
            let s = backup.mut_structure();
            s.set("ids", gst::Array::new(ids));
            s.set("scores", gst::Array::new(scores));
            s.set("points", gst::Array::new(all_points));
        }
        // Only when the plugin was not initialised; the ROI params still carry everything.
        Err(_) => gst::warning!(gst::CAT_RUST, "{BACKUP_META} is not registered"),
    }
}

/// Score and ROI-relative landmark points of ROI `id` from the backup meta.
fn backup_for(buffer: &gst::BufferRef, id: i32) -> Option<(f64, Vec<f64>)> {
    let meta = gst::meta::CustomMeta::from_buffer(buffer, BACKUP_META).ok()?;
    let s = meta.structure();
    let ids = s.get::<gst::Array>("ids").ok()?;
    let index = ids.iter().position(|v| v.get::<i32>().ok() == Some(id))?;
    let score = s
        .get::<gst::Array>("scores")
        .ok()?
        .get(index)?
        .get::<f64>()
        .ok()?;
    let points = s.get::<gst::Array>("points").ok()?;
    let points = points
        .get(index * 10..index * 10 + 10)?
        .iter()
        .filter_map(|v| v.get::<f64>().ok())
        .collect();
    Some((score, points))
}

/// Reads every face ROI meta on `buffer`, in buffer pixels.
pub fn read(buffer: &gst::BufferRef) -> Vec<FaceRecord> {
    buffer
        .iter_meta::<VideoRegionOfInterestMeta>()
        .filter(|m| m.roi_type() == ROI_TYPE)
        .map(|m| {
            let (x, y, w, h) = m.rect();
            let (x, y, width, height) = (x as f64, y as f64, w as f64, h as f64);
            let backup = || backup_for(buffer, m.id());
            let score = m
                .param(DETECTION)
                .and_then(|s| s.get::<f64>("confidence").ok())
                .or_else(|| backup().map(|b| b.0));
            let landmarks = m
                .param(LANDMARKS)
                .and_then(|s| s.get::<gst::Array>("points").ok())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.get::<f64>().ok())
                        .collect::<Vec<_>>()
                })
                .or_else(|| backup().map(|b| b.1))
                .filter(|p| p.len() == 10)
                .map(|p| {
                    p.chunks_exact(2)
                        .map(|c| [x + c[0] * width, y + c[1] * height])
                        .collect()
                })
                .unwrap_or_default();
            FaceRecord {
                x,
                y,
                width,
                height,
                score,
                landmarks,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_then_read_round_trips() {
        gst::init().unwrap();
        register_backup_meta();
        let face = Face {
            bbox: [10.2, 20.0, 50.0, 70.4],
            score: 0.875,
            landmarks: [
                [20.0, 35.0],
                [40.0, 35.0],
                [30.0, 45.0],
                [22.0, 60.0],
                [38.0, 60.0],
            ],
        };
        let mut buffer = gst::Buffer::new();
        attach(buffer.get_mut().unwrap(), &[face], 100, 100);
        let faces = read(&buffer);
        assert_eq!(faces.len(), 1);
        let f = &faces[0];
        assert_eq!((f.x, f.y, f.width, f.height), (10.0, 20.0, 40.0, 50.0));
        assert_eq!(f.score, Some(0.875));
        assert!((f.landmarks[2][0] - 30.0).abs() < 1e-9 && (f.landmarks[2][1] - 45.0).abs() < 1e-9);
        let meta = buffer.meta::<VideoRegionOfInterestMeta>().unwrap();
        let det = meta.param(DETECTION).unwrap();
        assert_eq!(det.get::<&str>("label").unwrap(), "face");
        assert!((det.get::<f64>("x_min").unwrap() - 0.102).abs() < 1e-6);
    }

    #[test]
    fn rect_stays_inside_the_frame() {
        assert_eq!(roi_rect(&[-5.0, -5.0, 3.0, 2.0], 4, 4), (0, 0, 3, 2));
        assert_eq!(roi_rect(&[3.9, 3.9, 9.0, 9.0], 4, 4), (3, 3, 1, 1));
        assert_eq!(roi_rect(&[0.0, 0.0, 0.2, 0.2], 1, 1), (0, 0, 1, 1));
    }
}
