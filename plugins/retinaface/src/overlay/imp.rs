use std::sync::{LazyLock, Mutex};

use glib::subclass::prelude::*;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use retinaface::{PixelLayout, YuvMatrix};

use super::Mode;
use super::anonymise::{Anonymise, merge_overlapping};
use super::canvas::{Argb, Canvas, Rect};
use super::label;
use crate::{facemeta, videoformat};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "retinafaceoverlay",
        gst::DebugColorFlags::empty(),
        Some("Draws or anonymises faces"),
    )
});

/// Most that `motion-margin` adds on each side, in face sizes: a face not detected for a long
/// time (a very slow model, a large `interval`) blurs a region up to 9 face sizes wide, never
/// the whole frame.
const MAX_MOTION_GROWTH: f64 = 4.0;

#[derive(Debug, Clone)]
struct Settings {
    mode: Mode,
    box_color: u32,
    thickness: u32,
    landmark_color: u32,
    landmark_radius: u32,
    draw_landmarks: bool,
    margin: f64,
    motion_margin: f64,
    blur_radius: u32,
    pixel_size: u32,
    draw_labels: bool,
    font_size: u32,
    font: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mode: Mode::default(),
            box_color: 0xff00ff00,
            thickness: 2,
            landmark_color: 0xffff0000,
            landmark_radius: 2,
            draw_landmarks: true,
            margin: 0.1,
            motion_margin: 0.1,
            blur_radius: 0,
            pixel_size: 0,
            draw_labels: false,
            font_size: 16,
            font: label::DEFAULT_FONT.into(),
        }
    }
}

#[derive(Default)]
pub struct RetinaFaceOverlay {
    settings: Mutex<Settings>,
    /// Negotiated caps and how to draw on them: pixel layout, and the matrix and range of the
    /// caps' colorimetry that colours are written in.
    state: Mutex<Option<(gst_video::VideoInfo, PixelLayout, YuvMatrix)>>,
    /// The label font and the path it was loaded from, or why it could not be.
    font: Mutex<Option<(String, Result<ab_glyph::FontArc, String>)>>,
}

#[glib::object_subclass]
impl ObjectSubclass for RetinaFaceOverlay {
    const NAME: &'static str = "GstRetinaFaceOverlay";
    type Type = super::RetinaFaceOverlay;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for RetinaFaceOverlay {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecEnum::builder_with_default("mode", d.mode)
                    .nick("Mode")
                    .blurb("Draw the faces, blur or pixelate them, or do nothing")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("box-color")
                    .nick("Box colour")
                    .blurb("Box outline colour as 0xAARRGGBB (alpha blends)")
                    .default_value(d.box_color)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("thickness")
                    .nick("Thickness")
                    .blurb("Box outline thickness in pixels")
                    .minimum(1)
                    .maximum(64)
                    .default_value(d.thickness)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("landmark-color")
                    .nick("Landmark colour")
                    .blurb("Landmark dot colour as 0xAARRGGBB")
                    .default_value(d.landmark_color)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("landmark-radius")
                    .nick("Landmark radius")
                    .blurb("Half size of the landmark dots in pixels")
                    .maximum(64)
                    .default_value(d.landmark_radius)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-landmarks")
                    .nick("Draw landmarks")
                    .blurb("Draw the 5 landmarks in draw mode")
                    .default_value(d.draw_landmarks)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("margin")
                    .nick("Margin")
                    .blurb(
                        "Blur/pixelate this fraction of the face size beyond the box on every side",
                    )
                    .minimum(0.0)
                    .maximum(2.0)
                    .default_value(d.margin)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("motion-margin")
                    .nick("Motion margin")
                    .blurb(&format!(
                        "Blur/pixelate: a face whose box was not measured on this very frame \
                         (carried by interval, predicted by the tracker, found by an async \
                         detector on an earlier frame) gets this fraction of its size more on \
                         every side per frame since its detection, up to {MAX_MOTION_GROWTH} \
                         sizes: it stays covered while it moves at most this fraction of its \
                         size per frame away from its box. 0 = off"
                    ))
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(d.motion_margin)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("blur-radius")
                    .nick("Blur radius")
                    .blurb("Blur radius in pixels (0 = a sixth of the face size)")
                    .maximum(512)
                    .default_value(d.blur_radius)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("pixel-size")
                    .nick("Pixel size")
                    .blurb("Pixelation block size in pixels (0 = an eighth of the face size)")
                    .maximum(512)
                    .default_value(d.pixel_size)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("draw-labels")
                    .nick("Draw labels")
                    .blurb("Write each face's track ID (from retinafacetrack) and score above its box in draw mode")
                    .default_value(d.draw_labels)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("font-size")
                    .nick("Font size")
                    .blurb("Label text height in pixels")
                    .minimum(6)
                    .maximum(256)
                    .default_value(d.font_size)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("font")
                    .nick("Font")
                    .blurb("TrueType/OpenType font file for labels")
                    .default_value(Some(d.font.as_str()))
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        match pspec.name() {
            "mode" => s.mode = value.get().unwrap(),
            "box-color" => s.box_color = value.get().unwrap(),
            "thickness" => s.thickness = value.get().unwrap(),
            "landmark-color" => s.landmark_color = value.get().unwrap(),
            "landmark-radius" => s.landmark_radius = value.get().unwrap(),
            "draw-landmarks" => s.draw_landmarks = value.get().unwrap(),
            "margin" => s.margin = value.get().unwrap(),
            "motion-margin" => s.motion_margin = value.get().unwrap(),
            "blur-radius" => s.blur_radius = value.get().unwrap(),
            "pixel-size" => s.pixel_size = value.get().unwrap(),
            "draw-labels" => s.draw_labels = value.get().unwrap(),
            "font-size" => s.font_size = value.get().unwrap(),
            "font" => {
                s.font = value
                    .get::<Option<String>>()
                    .unwrap()
                    .unwrap_or_else(|| label::DEFAULT_FONT.into())
            }
            _ => unreachable!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        match pspec.name() {
            "mode" => s.mode.to_value(),
            "box-color" => s.box_color.to_value(),
            "thickness" => s.thickness.to_value(),
            "landmark-color" => s.landmark_color.to_value(),
            "landmark-radius" => s.landmark_radius.to_value(),
            "draw-landmarks" => s.draw_landmarks.to_value(),
            "margin" => s.margin.to_value(),
            "motion-margin" => s.motion_margin.to_value(),
            "blur-radius" => s.blur_radius.to_value(),
            "pixel-size" => s.pixel_size.to_value(),
            "draw-labels" => s.draw_labels.to_value(),
            "font-size" => s.font_size.to_value(),
            "font" => s.font.to_value(),
            _ => unreachable!(),
        }
    }
}

impl GstObjectImpl for RetinaFaceOverlay {}

impl ElementImpl for RetinaFaceOverlay {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RetinaFace overlay",
                "Filter/Effect/Video",
                "Draws detected faces (box, landmarks) or anonymises them by blur or pixelation",
                "gst-retinaface developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| crate::filter_pad_templates(&crate::videoformat::raw_video_caps()));
        TEMPLATES.as_ref()
    }
}

impl RetinaFaceOverlay {
    /// Box outline, score label and landmark dots of one face.
    fn draw(
        &self,
        canvas: &mut Canvas,
        settings: &Settings,
        font: Option<&ab_glyph::FontArc>,
        face: &facemeta::FaceRecord,
    ) {
        let rect = Rect::new(face.x, face.y, face.width, face.height);
        canvas.outline(rect, settings.thickness as i64, Argb(settings.box_color));
        if let (Some(font), Some(text)) =
            (font, label::text(face.id, face.score, face.name.as_deref()))
        {
            let bar = Argb(settings.box_color);
            label::draw(
                canvas,
                font,
                rect,
                &text,
                settings.font_size as f32,
                bar,
                Argb(0xff000000),
            );
        }
        if settings.draw_landmarks {
            for [x, y] in &face.landmarks {
                canvas.dot(
                    *x,
                    *y,
                    settings.landmark_radius as i64,
                    Argb(settings.landmark_color),
                );
            }
        }
    }

    /// The label font, loaded once per path; a font that cannot be loaded is reported once as a
    /// WARNING and labels are skipped.
    fn font(&self, path: &str) -> Option<ab_glyph::FontArc> {
        let mut cache = self.font.lock().unwrap();
        if cache.as_ref().is_none_or(|(p, _)| p != path) {
            let loaded = label::load_font(path);
            if let Err(why) = &loaded {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::NotFound,
                    ("{why}; labels are not drawn (install fonts-dejavu-core or set the font property)")
                );
            }
            *cache = Some((path.to_string(), loaded));
        }
        cache.as_ref().and_then(|(_, f)| f.as_ref().ok().cloned())
    }
}

impl BaseTransformImpl for RetinaFaceOverlay {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse video caps {incaps}"))?;
        let layout = videoformat::pixel_layout(info.format())
            .ok_or_else(|| gst::loggable_error!(CAT, "unsupported format {:?}", info.format()))?;
        let matrix = videoformat::yuv_matrix(&info.colorimetry());
        gst::debug!(
            CAT,
            imp = self,
            "drawing on {:?} with {matrix:?}",
            info.format()
        );
        *self.state.lock().unwrap() = Some((info, layout, matrix));
        Ok(())
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = self.settings.lock().unwrap().clone();
        let faces = facemeta::read(buf);
        if faces.is_empty() || settings.mode == Mode::None {
            return Ok(gst::FlowSuccess::Ok);
        }
        let (info, layout, matrix) = self
            .state
            .lock()
            .unwrap()
            .clone()
            .ok_or(gst::FlowError::NotNegotiated)?;
        let mut frame =
            gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &info).map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    (
                        "buffer too small for caps {}x{}",
                        info.width(),
                        info.height()
                    )
                );
                gst::FlowError::Error
            })?;
        let font = if settings.mode == Mode::Draw && settings.draw_labels {
            self.font(&settings.font)
        } else {
            None
        };
        let mut canvas = Canvas::new(&mut frame, layout, matrix);
        match settings.mode {
            Mode::Draw => {
                for face in &faces {
                    self.draw(&mut canvas, &settings, font.as_ref(), face);
                }
            }
            Mode::Blur | Mode::Pixelate => {
                let areas = faces
                    .iter()
                    .map(|face| {
                        let rect = Rect::new(face.x, face.y, face.width, face.height);
                        let size = face.width.max(face.height);
                        let strength =
                            match (settings.mode, settings.blur_radius, settings.pixel_size) {
                                (Mode::Blur, 0, _) => (size / 6.0).max(2.0) as usize,
                                (Mode::Blur, radius, _) => radius as usize,
                                (_, _, 0) => (size / 8.0).max(2.0) as usize,
                                (_, _, block) => block as usize,
                            };
                        let margin = settings.margin
                            + cover_growth(face.since_detection, settings.motion_margin);
                        (rect.grow((size * margin).round() as i64), strength)
                    })
                    .collect();
                let how = if settings.mode == Mode::Blur {
                    Anonymise::Blur
                } else {
                    Anonymise::Pixelate
                };
                for group in merge_overlapping(areas) {
                    canvas.anonymise(&group, how);
                }
            }
            Mode::None => {}
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

/// How much wider, in face sizes on each side, the anonymised area of a face is for the frames
/// since its box was measured: `per_frame` of its size per frame, at most
/// [`MAX_MOTION_GROWTH`]. A face of unknown age (another producer) does not grow.
fn cover_growth(since_detection: Option<u64>, per_frame: f64) -> f64 {
    (since_detection.unwrap_or(0) as f64 * per_frame).min(MAX_MOTION_GROWTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cover_grows_with_the_frames_since_detection_up_to_a_bound() {
        assert_eq!(cover_growth(Some(0), 0.1), 0.0, "detected on this frame");
        assert_eq!(cover_growth(None, 0.1), 0.0, "unknown age");
        assert!((cover_growth(Some(14), 0.1) - 1.4).abs() < 1e-12);
        assert_eq!(cover_growth(Some(14), 0.0), 0.0, "off");
        assert_eq!(cover_growth(Some(1000), 0.1), MAX_MOTION_GROWTH);
    }
}
