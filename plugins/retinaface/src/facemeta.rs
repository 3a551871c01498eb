//! The face metadata schema shared by every element of the plugin: [`attach_detections`] /
//! [`attach_tracked`] are the one writer, [`read`] / [`provenance`] the one reader.
//!
//! One `GstVideoRegionOfInterestMeta` per face, following Intel DL Streamer's conventions:
//!
//! - `roi_type` = `"face"`, rectangle = the box in buffer pixels (transformed by GStreamer when
//!   the frame is scaled, e.g. by `videoscale`);
//! - ROI `id` = index of the face in this buffer (0, 1, …; the detector lists the best score
//!   first, the tracker by track ID). It is **not** an identity across frames: it is the key
//!   into the backup meta below, and the only per-face value `videoscale` keeps besides the
//!   rectangle. Identity is `object_id`;
//! - param `detection`: `x_min`, `y_min`, `x_max`, `y_max` (double, box normalised to the frame,
//!   0..1), `confidence` (double), `label_id` (int, 0), `label` (string, `"face"`);
//! - param `landmarks`: `format` = `"landmark_points"`, `points` = array of 10 doubles
//!   `x0, y0, … x4, y4` for left eye, right eye, nose, left mouth corner, right mouth corner,
//!   normalised to the ROI rectangle (0,0 = its top-left, 1,1 = its bottom-right) so they stay
//!   right when the rectangle is transformed;
//! - param `object_id`, only on tracked faces (`retinafacetrack`): field `id` = the track ID, the
//!   same face on every frame it is tracked. IDs start at 1 and are never reused within a
//!   stream (a seek or flush ends every track; the new ones get new IDs). `id` is a GStreamer
//!   `int` (gint), the type DL Streamer writes (`set_object_id` in its `gst/common/gva_utils`,
//!   used by `gvatrack`) and reads (`gst_structure_get_int`); an ID beyond 2³¹−1 (2³¹
//!   confirmed faces in one stream) is written as `int64` rather than wrapped. [`read`] accepts
//!   `int`, `int64`, `uint` and `uint64`, so IDs from DL Streamer's tracker are read too.
//! - param `identity`, only on faces `retinafaceidentify` looked at: `confidence` (double) = the
//!   cosine similarity of the face's embedding to the nearest person of the face library, and
//!   `label` (string) = that person's name, present only when the similarity reached the
//!   element's threshold (no `label`: an unknown face). This is DL Streamer's convention for a
//!   classification result (`gvaclassify` adds one param structure per attribute with `label`
//!   and `confidence`, and `gvawatermark` draws its `label`), so DL Streamer's tools show the
//!   name; the structure is named for the attribute, `identity`.
//!
//! GStreamer 1.22 drops ROI params when it scales the meta (`videoscale`), keeping the rectangle
//! and the ROI `id`. So the same values are also stored, keyed by ROI id, in one tag-less
//! custom meta [`BACKUP_META`] per buffer, which scaling elements copy unchanged; [`read`] falls
//! back to it when a ROI has lost its params. Its structure: `ids` (int array, ROI ids),
//! `scores` (double array), `points` (double array, 10 per ROI id, ROI-relative as above; empty
//! when the producer had no landmarks), `object_ids` (uint64 array, the track ID per ROI id,
//! 0 = none), `since_detection` (uint64 array, per ROI id: frames since the frame its box was
//! measured on, 0 = this one), `names` (string array, per ROI id: the `identity` label, empty
//! when none) and `similarities` (double array, per ROI id: the `identity` confidence, NaN when
//! the face was not identified; both absent when no identify element ran), and the frame-level
//! fields below.
//!
//! **Which result a buffer carries** ([`Provenance`]). Frame-level facts, so they live in the
//! backup meta, which the writer attaches to *every* buffer it handles, faces or not (an
//! analysed frame without faces is what ends a track):
//! - `analysed` (boolean): the detector ran the model on this very frame. False when the frame
//!   carries faces found on an earlier one: `interval` > 1 repeats the last faces, and in `async`
//!   mode a result comes back while later buffers pass, so it is attached to a later buffer.
//! - `new_result` (boolean): this buffer is the first to carry its detection result. True on
//!   every analysed buffer, and in `async` mode on the buffer a result arrives with; false on
//!   the buffers after it that carry the same result again.
//! - `detected_pts` (uint64, ns; absent when that frame had none): the pts of the frame the
//!   result was found on.
//! - `result_age` (uint64; absent before the first result): buffers the detector passed since
//!   that frame (0 = this one).
//!
//! The tracker takes a new result as detections of the frame it was found on (see
//! `retinafacetrack`), and passes these fields on unchanged. Any consumer can read them: the
//! custom meta named [`BACKUP_META`] (`gst_buffer_get_custom_meta`); here [`provenance`] and
//! [`analysed`]. A buffer without the backup meta (another producer) reads as unknown (`None`);
//! the tracker treats it as a new result found on that frame.

use gst::prelude::*;
use gst_base::prelude::*;
use gst_video::VideoRegionOfInterestMeta;
use retinaface::{Face, TrackedFace};

pub const ROI_TYPE: &str = "face";
pub const DETECTION: &str = "detection";
pub const LANDMARKS: &str = "landmarks";
/// Param structure holding the track ID in field `id` (DL Streamer's name).
pub const OBJECT_ID: &str = "object_id";
/// Param structure of who a face is: `label` (name) and `confidence` (similarity).
pub const IDENTITY: &str = "identity";
/// Name of the custom meta that backs up score, landmarks and track ID per ROI id, and holds
/// the frame's `analysed` flag.
pub const BACKUP_META: &str = "GstRetinaFaceBackupMeta";

/// Registers [`BACKUP_META`]; called once from plugin init.
pub fn register_backup_meta() {
    if !gst::meta::CustomMeta::is_registered(BACKUP_META) {
        gst::meta::CustomMeta::register(BACKUP_META, &[]);
    }
}

/// A face as read back from a buffer, in that buffer's pixels: the core's record, which is also
/// the JSON schema of one face (`retinafacejson`, the trainer's `detect`).
pub use retinaface::FaceRecord;

/// Which detection result a buffer carries, and how old it is (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provenance {
    /// The detector ran the model on this very frame.
    pub analysed: bool,
    /// This buffer is the first to carry its result.
    pub new_result: bool,
    /// pts of the frame the result was found on.
    pub detected_pts: Option<gst::ClockTime>,
    /// Buffers the detector passed since that frame (0 = this one); `None` before any result.
    pub result_age: Option<u64>,
}

impl Provenance {
    /// Faces found on this very frame, whose pts is `pts`.
    pub fn analysed(pts: Option<gst::ClockTime>) -> Self {
        Self {
            analysed: true,
            new_result: true,
            detected_pts: pts,
            result_age: Some(0),
        }
    }
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

/// Attaches faces found by analysing this very frame (no track IDs): the short form of
/// [`attach_detections`].
pub fn attach(buffer: &mut gst::BufferRef, faces: &[Face], width: u32, height: u32) {
    let provenance = Provenance::analysed(buffer.pts());
    attach_detections(buffer, faces, provenance, width, height);
}

/// Attaches the detector's faces to `buffer` (a `width`×`height` frame): one ROI meta per face
/// and the backup meta, which also records which result they are and how old
/// (`provenance`); every face is as old as the result.
pub fn attach_detections(
    buffer: &mut gst::BufferRef,
    faces: &[Face],
    provenance: Provenance,
    width: u32,
    height: u32,
) {
    let since = vec![provenance.result_age.unwrap_or(0); faces.len()];
    attach_found(buffer, faces, &since, provenance, width, height);
}

/// [`attach_detections`] with each face's own age, `since[i]` frames since `faces[i]` was
/// found (a motion-gated detector keeps faces that did not move from earlier results).
pub fn attach_found(
    buffer: &mut gst::BufferRef,
    faces: &[Face],
    since: &[u64],
    provenance: Provenance,
    width: u32,
    height: u32,
) {
    write(
        buffer,
        faces.iter().zip(since).map(|(f, &s)| (f, None, s)),
        true,
        provenance,
        (width, height),
    );
}

/// Attaches tracked faces to `buffer`: confirmed ones with their IDs as `object_id`, tentative
/// ones (`id` 0, not confirmed yet) without; `provenance` is passed on from the detector.
/// `landmarks` = false leaves the landmarks out (the tracker's input had none, so its landmarks
/// would be made up).
pub fn attach_tracked(
    buffer: &mut gst::BufferRef,
    faces: &[TrackedFace],
    provenance: Provenance,
    landmarks: bool,
    width: u32,
    height: u32,
) {
    write(
        buffer,
        faces.iter().map(|t| {
            (
                &t.face,
                (t.id != 0).then_some(t.id),
                t.since_detection as u64,
            )
        }),
        landmarks,
        provenance,
        (width, height),
    );
}

/// The one writer: ROI metas with params, then the backup meta (always, for the provenance).
fn write<'a>(
    buffer: &mut gst::BufferRef,
    faces: impl Iterator<Item = (&'a Face, Option<u64>, u64)>,
    with_landmarks: bool,
    provenance: Provenance,
    (width, height): (u32, u32),
) {
    let (fw, fh) = (width as f64, height as f64);
    let (mut ids, mut scores, mut all_points, mut object_ids, mut since_detection) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (index, (face, object_id, since)) in faces.enumerate() {
        let id = index as i32;
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
        ids.push(id);
        scores.push(face.score as f64);
        object_ids.push(object_id.unwrap_or(0));
        since_detection.push(since);
        let mut meta = VideoRegionOfInterestMeta::add(buffer, ROI_TYPE, rect);
        meta.set_id(id);
        meta.add_param(detection);
        if with_landmarks {
            let (rx, ry, rw, rh) = (rect.0 as f64, rect.1 as f64, rect.2 as f64, rect.3 as f64);
            let points: Vec<f64> = face
                .landmarks
                .iter()
                .flat_map(|[x, y]| [(*x as f64 - rx) / rw, (*y as f64 - ry) / rh])
                .collect();
            all_points.extend_from_slice(&points);
            meta.add_param(
                gst::Structure::builder(LANDMARKS)
                    .field("format", "landmark_points")
                    .field("points", gst::Array::new(points))
                    .build(),
            );
        }
        if let Some(object_id) = object_id {
            // gint as DL Streamer writes it; int64 only past its range, never wrapped.
            let s = gst::Structure::builder(OBJECT_ID);
            let s = match i32::try_from(object_id) {
                Ok(v) => s.field("id", v),
                Err(_) => s.field("id", object_id as i64),
            };
            meta.add_param(s.build());
        }
    }
    match gst::meta::CustomMeta::add(buffer, BACKUP_META) {
        Ok(mut backup) => {
            let s = backup.mut_structure();
            s.set("ids", gst::Array::new(ids));
            s.set("scores", gst::Array::new(scores));
            s.set("points", gst::Array::new(all_points));
            s.set("object_ids", gst::Array::new(object_ids));
            s.set("since_detection", gst::Array::new(since_detection));
            s.set("analysed", provenance.analysed);
            s.set("new_result", provenance.new_result);
            if let Some(pts) = provenance.detected_pts {
                s.set("detected_pts", pts.nseconds());
            }
            if let Some(age) = provenance.result_age {
                s.set("result_age", age);
            }
        }
        // Only when the plugin was not initialised; the ROI params still carry the faces.
        Err(_) => gst::warning!(gst::CAT_RUST, "{BACKUP_META} is not registered"),
    }
}

/// Removes every face ROI meta and the backup meta from `buffer` (other ROIs stay), so that a
/// element can write its own version of the faces (the tracker).
pub fn remove(buffer: &mut gst::BufferRef) {
    buffer.foreach_meta_mut(|mut meta| {
        let face = meta
            .downcast_ref::<VideoRegionOfInterestMeta>()
            .is_some_and(|m| m.roi_type() == ROI_TYPE);
        let backup = meta
            .try_as_custom_meta()
            .is_some_and(|m| m.has_name(BACKUP_META));
        std::ops::ControlFlow::Continue(if face || backup {
            gst::buffer::BufferMetaForeachAction::Remove
        } else {
            gst::buffer::BufferMetaForeachAction::Keep
        })
    });
}

/// Whether the detector analysed this frame (true) or it carries faces from an earlier one
/// (false); `None` when the buffer has no backup meta (not from this plugin's detector).
pub fn analysed(buffer: &gst::BufferRef) -> Option<bool> {
    provenance(buffer).map(|p| p.analysed)
}

/// Which result `buffer` carries and how old it is; `None` when the buffer has no backup meta
/// (not from this plugin's detector). A backup meta without `new_result` (an older writer)
/// reads as new exactly when analysed.
pub fn provenance(buffer: &gst::BufferRef) -> Option<Provenance> {
    let meta = gst::meta::CustomMeta::from_buffer(buffer, BACKUP_META).ok()?;
    let s = meta.structure();
    let analysed = s.get::<bool>("analysed").ok()?;
    Some(Provenance {
        analysed,
        new_result: s.get::<bool>("new_result").unwrap_or(analysed),
        detected_pts: s
            .get::<u64>("detected_pts")
            .ok()
            .map(gst::ClockTime::from_nseconds),
        result_age: s.get::<u64>("result_age").ok(),
    })
}

/// The backup meta's per-face arrays, parsed once per buffer.
#[derive(Default)]
struct Backup {
    ids: Vec<i32>,
    scores: Vec<f64>,
    points: Vec<f64>,
    object_ids: Vec<u64>,
    since_detection: Vec<u64>,
    names: Vec<String>,
    similarities: Vec<f64>,
}

impl Backup {
    fn from_buffer(buffer: &gst::BufferRef) -> Option<Self> {
        let meta = gst::meta::CustomMeta::from_buffer(buffer, BACKUP_META).ok()?;
        let s = meta.structure();
        fn array<T: for<'a> glib::value::FromValue<'a>>(
            s: &gst::StructureRef,
            name: &str,
        ) -> Vec<T> {
            s.get::<gst::Array>(name)
                .map(|a| a.iter().filter_map(|v| v.get::<T>().ok()).collect())
                .unwrap_or_default()
        }
        Some(Self {
            ids: array(s, "ids"),
            scores: array(s, "scores"),
            points: array(s, "points"),
            object_ids: array(s, "object_ids"),
            since_detection: array(s, "since_detection"),
            names: array(s, "names"),
            similarities: array(s, "similarities"),
        })
    }

    /// Position of ROI id `id` in the arrays.
    fn index(&self, id: i32) -> Option<usize> {
        self.ids.iter().position(|v| *v == id)
    }

    fn score(&self, id: i32) -> Option<f64> {
        self.scores.get(self.index(id)?).copied()
    }

    fn points(&self, id: i32) -> Option<Vec<f64>> {
        let i = self.index(id)?;
        self.points.get(i * 10..i * 10 + 10).map(<[f64]>::to_vec)
    }

    fn object_id(&self, id: i32) -> Option<u64> {
        self.object_ids
            .get(self.index(id)?)
            .copied()
            .filter(|v| *v != 0)
    }

    fn since_detection(&self, id: i32) -> Option<u64> {
        self.since_detection.get(self.index(id)?).copied()
    }

    /// The `identity` of ROI id `id`: (name, similarity); `None` when not identified.
    fn identity(&self, id: i32) -> Option<(Option<String>, f64)> {
        let i = self.index(id)?;
        let similarity = self.similarities.get(i).copied().filter(|v| !v.is_nan())?;
        let name = self.names.get(i).filter(|n| !n.is_empty()).cloned();
        Some((name, similarity))
    }
}

/// Who one face is, as `retinafaceidentify` writes it ([`identify`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Identity<'a> {
    /// The library person's name; `None`: unknown (nobody reached the threshold).
    pub name: Option<&'a str>,
    /// Cosine similarity to the nearest person of the library.
    pub similarity: f32,
}

/// Adds who each face is to the face metas already on `buffer` (written by the detector or the
/// tracker): `identities[i]` belongs to the i-th face [`read`] lists (`None`: not identified),
/// as an `identity` param and in the backup meta. Once per buffer: GStreamer cannot remove a
/// ROI param, so a second call (a second identify element) adds a second `identity`, readers
/// take the first, and only the backup arrays hold the newest.
pub fn identify(buffer: &mut gst::BufferRef, identities: &[Option<Identity>]) {
    let mut by_roi_id = Vec::new();
    let faces = buffer
        .iter_meta_mut::<VideoRegionOfInterestMeta>()
        .filter(|m| m.roi_type() == ROI_TYPE);
    for (mut meta, identity) in faces.zip(identities) {
        by_roi_id.push((meta.id(), identity.clone()));
        let Some(identity) = identity else { continue };
        let s = gst::Structure::builder(IDENTITY)
            .field_if_some("label", identity.name)
            .field("confidence", identity.similarity as f64)
            .build();
        meta.add_param(s);
    }
    let Ok(mut backup) = gst::meta::CustomMeta::from_mut_buffer(buffer, BACKUP_META) else {
        return;
    };
    let s = backup.mut_structure();
    let ids: Vec<i32> = s
        .get::<gst::Array>("ids")
        .map(|a| a.iter().filter_map(|v| v.get::<i32>().ok()).collect())
        .unwrap_or_default();
    let (mut names, mut similarities) = (vec![String::new(); ids.len()], vec![f64::NAN; ids.len()]);
    for (roi_id, identity) in by_roi_id {
        if let (Some(i), Some(identity)) = (ids.iter().position(|v| *v == roi_id), identity) {
            names[i] = identity.name.unwrap_or_default().to_string();
            similarities[i] = identity.similarity as f64;
        }
    }
    s.set("names", gst::Array::new(names));
    s.set("similarities", gst::Array::new(similarities));
}

/// A track ID from an `object_id` param, whichever integer type the producer used; negative
/// values are no ID.
fn object_id_of(s: &gst::StructureRef) -> Option<u64> {
    let v = s.value("id").ok()?;
    if let Ok(v) = v.get::<i32>() {
        u64::try_from(v).ok()
    } else if let Ok(v) = v.get::<i64>() {
        u64::try_from(v).ok()
    } else if let Ok(v) = v.get::<u32>() {
        Some(v as u64)
    } else {
        v.get::<u64>().ok()
    }
}

/// Reads every face ROI meta on `buffer`, in buffer pixels.
pub fn read(buffer: &gst::BufferRef) -> Vec<FaceRecord> {
    let backup = Backup::from_buffer(buffer).unwrap_or_default();
    buffer
        .iter_meta::<VideoRegionOfInterestMeta>()
        .filter(|m| m.roi_type() == ROI_TYPE)
        .map(|m| {
            let (x, y, w, h) = m.rect();
            let (x, y, width, height) = (x as f64, y as f64, w as f64, h as f64);
            let score = m
                .param(DETECTION)
                .and_then(|s| s.get::<f64>("confidence").ok())
                .or_else(|| backup.score(m.id()));
            let id = m
                .param(OBJECT_ID)
                .and_then(object_id_of)
                .or_else(|| backup.object_id(m.id()));
            let landmarks = m
                .param(LANDMARKS)
                .and_then(|s| s.get::<gst::Array>("points").ok())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.get::<f64>().ok())
                        .collect::<Vec<_>>()
                })
                .or_else(|| backup.points(m.id()))
                .filter(|p| p.len() == 10)
                .map(|p| {
                    p.chunks_exact(2)
                        .map(|c| [x + c[0] * width, y + c[1] * height])
                        .collect()
                })
                .unwrap_or_default();
            let (name, similarity) = match m.param(IDENTITY) {
                Some(s) => (
                    s.get::<String>("label").ok(),
                    s.get::<f64>("confidence").ok(),
                ),
                None => backup
                    .identity(m.id())
                    .map_or((None, None), |(n, s)| (n, Some(s))),
            };
            FaceRecord {
                x,
                y,
                width,
                height,
                score,
                id,
                landmarks,
                since_detection: backup.since_detection(m.id()),
                name,
                similarity,
            }
        })
        .collect()
}

/// The one writer of the per-frame element message (`retinafacedetect`'s `retinaface`,
/// `retinafacetrack`'s `retinaface-track`): `running-time`, `pts`, the [`Provenance`] as
/// `analysed`, `new-result`, `detected-pts` (pts of the frame the result was found on) and
/// `result-age` (frames; the last two absent when unknown), and `faces`, a list of `face`
/// structures (`id` when tracked, `x`, `y`, `width`, `height`, `score`, `fresh`: matched to a
/// detection on this frame, `since-detection`: frames since its box was measured, `landmarks`:
/// 10 doubles, and `name`/`similarity` when identified), all in buffer pixels. Posted by `element` about `buffer`, whose running time
/// comes from the element's segment.
pub fn post_message(
    element: &gst_base::BaseTransform,
    name: &str,
    buffer: &gst::BufferRef,
    provenance: Provenance,
    faces: impl Iterator<Item = (FaceRecord, bool)>,
) {
    let pts = buffer.pts();
    let running_time = pts.and_then(|pts| {
        element
            .segment()
            .downcast_ref::<gst::ClockTime>()
            .and_then(|s| s.to_running_time(pts))
    });
    let list: Vec<gst::Structure> = faces
        .map(|(f, fresh)| {
            gst::Structure::builder("face")
                .field_if_some("id", f.id)
                .field("x", f.x)
                .field("y", f.y)
                .field("width", f.width)
                .field("height", f.height)
                .field_if_some("score", f.score)
                .field("fresh", fresh)
                .field_if_some("since-detection", f.since_detection)
                .field_if_some("name", f.name.as_deref())
                .field_if_some("similarity", f.similarity)
                .field(
                    "landmarks",
                    gst::Array::new(f.landmarks.iter().flatten().copied()),
                )
                .build()
        })
        .collect();
    let s = gst::Structure::builder(name)
        .field("running-time", running_time)
        .field("pts", pts)
        .field("analysed", provenance.analysed)
        .field("new-result", provenance.new_result)
        .field_if_some("detected-pts", provenance.detected_pts)
        .field_if_some("result-age", provenance.result_age)
        .field("faces", gst::List::new(list))
        .build();
    let _ = element.post_message(gst::message::Element::builder(s).src(element).build());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_face() -> Face {
        Face {
            bbox: [10.2, 20.0, 50.0, 70.4],
            score: 0.875,
            landmarks: [
                [20.0, 35.0],
                [40.0, 35.0],
                [30.0, 45.0],
                [22.0, 60.0],
                [38.0, 60.0],
            ],
        }
    }

    /// A buffer carrying a result found 5 frames earlier, at 1 s.
    fn carried() -> Provenance {
        Provenance {
            analysed: false,
            new_result: false,
            detected_pts: Some(gst::ClockTime::from_seconds(1)),
            result_age: Some(5),
        }
    }

    /// Once per process: registering from parallel test threads races inside GLib.
    fn init() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            gst::init().unwrap();
            register_backup_meta();
        });
    }

    #[test]
    fn attach_then_read_round_trips() {
        init();
        let mut buffer = gst::Buffer::new();
        attach(buffer.get_mut().unwrap(), &[sample_face()], 100, 100);
        let faces = read(&buffer);
        assert_eq!(faces.len(), 1);
        let f = &faces[0];
        assert_eq!((f.x, f.y, f.width, f.height), (10.0, 20.0, 40.0, 50.0));
        assert_eq!(f.score, Some(0.875));
        assert_eq!(f.id, None, "no tracker, no ID");
        assert!((f.landmarks[2][0] - 30.0).abs() < 1e-9 && (f.landmarks[2][1] - 45.0).abs() < 1e-9);
        let meta = buffer.meta::<VideoRegionOfInterestMeta>().unwrap();
        let det = meta.param(DETECTION).unwrap();
        assert_eq!(det.get::<&str>("label").unwrap(), "face");
        assert!((det.get::<f64>("x_min").unwrap() - 0.102).abs() < 1e-6);
        assert!(meta.param(OBJECT_ID).is_none());
        assert_eq!(analysed(&buffer), Some(true));
        assert_eq!(f.since_detection, Some(0), "measured on this frame");
        assert_eq!(provenance(&buffer), Some(Provenance::analysed(None)));
    }

    #[test]
    fn analysed_flag_is_written_on_every_buffer_faces_or_not() {
        init();
        for flag in [true, false] {
            let mut buffer = gst::Buffer::new();
            let written = Provenance {
                analysed: flag,
                new_result: flag,
                detected_pts: None,
                result_age: None,
            };
            attach_detections(buffer.get_mut().unwrap(), &[], written, 100, 100);
            assert!(read(&buffer).is_empty());
            assert_eq!(analysed(&buffer), Some(flag));
            assert_eq!(provenance(&buffer), Some(written));
        }
        assert_eq!(
            analysed(&gst::Buffer::new()),
            None,
            "another producer: unknown"
        );
    }

    #[test]
    fn tracked_faces_carry_object_id_as_dl_streamer_int() {
        init();
        let tracked = |id| TrackedFace {
            id,
            face: sample_face(),
            fresh: true,
            hits: 3,
            missed: 0,
            age: 2,
            since_detection: 0,
        };
        let big = i32::MAX as u64 + 5;
        let mut buffer = gst::Buffer::new();
        attach_tracked(
            buffer.get_mut().unwrap(),
            &[tracked(7), tracked(big), tracked(0)],
            carried(),
            true,
            100,
            100,
        );
        let faces = read(&buffer);
        assert_eq!(
            faces.iter().map(|f| f.id).collect::<Vec<_>>(),
            [Some(7), Some(big), None],
            "an unconfirmed face is written without an ID"
        );
        let metas: Vec<_> = buffer.iter_meta::<VideoRegionOfInterestMeta>().collect();
        assert!(metas[2].param(OBJECT_ID).is_none());
        // The ROI id is the index in the buffer, not the identity.
        assert_eq!(metas.iter().map(|m| m.id()).collect::<Vec<_>>(), [0, 1, 2]);
        let id0 = metas[0].param(OBJECT_ID).unwrap();
        assert_eq!(
            id0.get::<i32>("id").unwrap(),
            7,
            "gint, as gvatrack writes it"
        );
        let id1 = metas[1].param(OBJECT_ID).unwrap();
        assert_eq!(
            id1.get::<i64>("id").unwrap(),
            big as i64,
            "int64 past i32, not wrapped"
        );
        assert_eq!(analysed(&buffer), Some(false));
        assert_eq!(provenance(&buffer), Some(carried()));
    }

    /// What videoscale's ROI transform leaves of `buffer`'s faces: new ROIs with the same
    /// rectangles and ids and no params (the backup meta is copied as is).
    fn without_params(buffer: &gst::Buffer) -> gst::Buffer {
        let mut scaled = gst::Buffer::new();
        let out = scaled.get_mut().unwrap();
        for m in buffer.iter_meta::<VideoRegionOfInterestMeta>() {
            let mut copy = VideoRegionOfInterestMeta::add(out, ROI_TYPE, m.rect());
            copy.set_id(m.id());
        }
        let backup = gst::meta::CustomMeta::from_buffer(buffer, BACKUP_META).unwrap();
        let s = backup.structure().to_owned();
        let mut b = gst::meta::CustomMeta::add(out, BACKUP_META).unwrap();
        for (name, value) in s.iter() {
            b.mut_structure().set_value(name, value.clone());
        }
        scaled
    }

    #[test]
    fn backup_meta_restores_what_videoscale_drops() {
        init();
        let mut buffer = gst::Buffer::new();
        {
            let buf = buffer.get_mut().unwrap();
            let t = TrackedFace {
                id: 42,
                face: sample_face(),
                fresh: false,
                hits: 3,
                missed: 0,
                age: 2,
                since_detection: 4,
            };
            attach_tracked(buf, &[t], carried(), true, 100, 100);
        }
        let scaled = without_params(&buffer);
        let faces = read(&scaled);
        assert_eq!(faces, read(&buffer));
        assert_eq!(faces[0].id, Some(42));
        assert_eq!(faces[0].score, Some(0.875));
        assert_eq!(faces[0].since_detection, Some(4));
        assert_eq!(provenance(&scaled), Some(carried()));
    }

    #[test]
    fn remove_takes_faces_and_backup_and_keeps_other_rois() {
        init();
        let mut buffer = gst::Buffer::new();
        {
            let buf = buffer.get_mut().unwrap();
            attach(buf, &[sample_face(), sample_face()], 100, 100);
            VideoRegionOfInterestMeta::add(buf, "person", (0, 0, 10, 10));
            remove(buf);
        }
        assert!(read(&buffer).is_empty());
        assert_eq!(analysed(&buffer), None);
        let rois: Vec<_> = buffer.iter_meta::<VideoRegionOfInterestMeta>().collect();
        assert_eq!(rois.len(), 1);
        assert_eq!(rois[0].roi_type(), "person");
    }

    #[test]
    fn without_landmarks_nothing_is_made_up() {
        init();
        let t = TrackedFace {
            id: 1,
            face: sample_face(),
            fresh: true,
            hits: 1,
            missed: 0,
            age: 0,
            since_detection: 0,
        };
        let mut buffer = gst::Buffer::new();
        let provenance = Provenance::analysed(None);
        attach_tracked(buffer.get_mut().unwrap(), &[t], provenance, false, 100, 100);
        let faces = read(&buffer);
        assert!(faces[0].landmarks.is_empty());
        assert_eq!(faces[0].score, Some(0.875));
        // And a record without landmarks or score converts to a valid, certain face.
        let f = FaceRecord {
            score: None,
            ..faces[0].clone()
        }
        .to_face();
        assert_eq!(f.score, 1.0);
        assert_eq!(f.landmarks[0], [30.0, 45.0]);
    }

    #[test]
    fn identities_are_written_as_dl_streamer_labels_and_survive_lost_params() {
        init();
        let mut buffer = gst::Buffer::new();
        {
            let buf = buffer.get_mut().unwrap();
            attach(
                buf,
                &[sample_face(), sample_face(), sample_face()],
                100,
                100,
            );
            identify(
                buf,
                &[
                    Some(Identity {
                        name: Some("Alice"),
                        similarity: 0.75,
                    }),
                    None,
                    Some(Identity {
                        name: None,
                        similarity: 0.25,
                    }),
                ],
            );
        }
        let faces = read(&buffer);
        let who: Vec<_> = faces
            .iter()
            .map(|f| (f.name.as_deref(), f.similarity))
            .collect();
        let expected = [
            (Some("Alice"), Some(0.75)),
            (None, None),
            (None, Some(0.25)),
        ];
        assert_eq!(who, expected, "named, not identified, unknown");
        let metas: Vec<_> = buffer.iter_meta::<VideoRegionOfInterestMeta>().collect();
        let p = metas[0].param(IDENTITY).unwrap();
        assert_eq!(p.get::<&str>("label").unwrap(), "Alice");
        assert_eq!(p.get::<f64>("confidence").unwrap(), 0.75);
        assert!(metas[1].param(IDENTITY).is_none());
        assert!(!metas[2].param(IDENTITY).unwrap().has_field("label"));
        // Without the ROI params (as after videoscale) the backup meta gives the same.
        let bare = without_params(&buffer);
        let again: Vec<_> = read(&bare)
            .iter()
            .map(|f| (f.name.clone(), f.similarity))
            .collect();
        let expected: Vec<_> = expected
            .iter()
            .map(|(n, s)| (n.map(String::from), *s))
            .collect();
        assert_eq!(again, expected);
    }

    #[test]
    fn rect_stays_inside_the_frame() {
        assert_eq!(roi_rect(&[-5.0, -5.0, 3.0, 2.0], 4, 4), (0, 0, 3, 2));
        assert_eq!(roi_rect(&[3.9, 3.9, 9.0, 9.0], 4, 4), (3, 3, 1, 1));
        assert_eq!(roi_rect(&[0.0, 0.0, 0.2, 0.2], 1, 1), (0, 0, 1, 1));
    }
}
