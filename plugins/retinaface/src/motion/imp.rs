use std::sync::{LazyLock, Mutex};

use glib::subclass::prelude::*;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::VideoRegionOfInterestMeta;
use retinaface::PixelLayout;
use retinaface::motion::{MotionConfig, MotionDetector};
use retinaface::tiling::parse_regions;

use super::DEFAULT_ROI_TYPE;
use crate::videoformat;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "retinafacemotion",
        gst::DebugColorFlags::empty(),
        Some("Motion regions for a motion-gated face detector"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    /// The core's settings: the one source of their defaults.
    config: MotionConfig,
    /// `masks` as the user wrote it (`config.masks` holds them parsed).
    masks_text: String,
    roi_type: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            config: MotionConfig::default(),
            masks_text: String::new(),
            roi_type: DEFAULT_ROI_TYPE.into(),
        }
    }
}

struct State {
    detector: MotionDetector,
    info: Option<(gst_video::VideoInfo, PixelLayout)>,
}

#[derive(Default)]
pub struct RetinaFaceMotion {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for RetinaFaceMotion {
    const NAME: &'static str = "GstRetinaFaceMotion";
    type Type = super::RetinaFaceMotion;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for RetinaFaceMotion {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            let c = &d.config;
            vec![
                glib::ParamSpecUInt::builder("threshold")
                    .nick("Threshold")
                    .blurb("Grey levels a pixel must differ from the background by to count as moving (lower = more sensitive)")
                    .minimum(1)
                    .maximum(255)
                    .default_value(c.threshold as u32)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("min-area")
                    .nick("Minimum area")
                    .blurb("Smallest moving area, as a share of the frame (0.001 = 0.1 %)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(c.min_area as f64)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("analysis-width")
                    .nick("Analysis width")
                    .blurb("Width in pixels of the downscaled luma copy motion is computed on")
                    .minimum(16)
                    .maximum(1920)
                    .default_value(c.analysis_width as u32)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("learning-rate")
                    .nick("Learning rate")
                    .blurb("Share of each frame blended into the background (higher = things that stop fade in sooner)")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(c.learning_rate as f64)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("margin")
                    .nick("Margin")
                    .blurb("Grow each region by this share of its size on every side")
                    .minimum(0.0)
                    .maximum(4.0)
                    .default_value(c.margin as f64)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("global-change")
                    .nick("Global change")
                    .blurb("When more than this share of the frame changes at once (lights, auto-exposure) the whole frame is one region and the background starts again")
                    .minimum(0.0)
                    .maximum(1.0)
                    .default_value(c.global_change as f64)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("masks")
                    .nick("Masks")
                    .blurb("Rectangles to ignore, 'x,y,w,h;x,y,w,h;…' in frame pixels (an on-screen clock, a tree)")
                    .default_value(Some(""))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("roi-type")
                    .nick("ROI type")
                    .blurb("roi_type of the region metas it attaches (retinafacedetect roi-type=… looks inside them)")
                    .default_value(Some(DEFAULT_ROI_TYPE))
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings.lock().unwrap();
        let c = &mut s.config;
        match pspec.name() {
            "threshold" => c.threshold = value.get::<u32>().unwrap() as u8,
            "min-area" => c.min_area = value.get::<f64>().unwrap() as f32,
            "analysis-width" => c.analysis_width = value.get::<u32>().unwrap() as usize,
            "learning-rate" => c.learning_rate = value.get::<f64>().unwrap() as f32,
            "margin" => c.margin = value.get::<f64>().unwrap() as f32,
            "global-change" => c.global_change = value.get::<f64>().unwrap() as f32,
            "masks" => {
                let text = value.get::<Option<String>>().unwrap().unwrap_or_default();
                match parse_regions(&text) {
                    Ok(masks) => {
                        c.masks = masks;
                        s.masks_text = text;
                    }
                    Err(why) => {
                        drop(s);
                        gst::element_imp_warning!(
                            self,
                            gst::LibraryError::Settings,
                            ("invalid masks '{}': {}; the previous masks stay", text, why)
                        );
                        return;
                    }
                }
            }
            "roi-type" => {
                s.roi_type = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| DEFAULT_ROI_TYPE.into())
            }
            _ => unreachable!(),
        }
        gst::debug!(CAT, imp = self, "{} set to {:?}", pspec.name(), value);
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings.lock().unwrap();
        let c = &s.config;
        match pspec.name() {
            "threshold" => (c.threshold as u32).to_value(),
            "min-area" => (c.min_area as f64).to_value(),
            "analysis-width" => (c.analysis_width as u32).to_value(),
            "learning-rate" => (c.learning_rate as f64).to_value(),
            "margin" => (c.margin as f64).to_value(),
            "global-change" => (c.global_change as f64).to_value(),
            "masks" => s.masks_text.to_value(),
            "roi-type" => s.roi_type.to_value(),
            _ => unreachable!(),
        }
    }
}

impl GstObjectImpl for RetinaFaceMotion {}

impl ElementImpl for RetinaFaceMotion {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RetinaFace motion regions",
                "Filter/Analyzer/Video",
                "Attaches a region-of-interest meta (roi_type motion) for each area of the frame that moves, for a motion-gated face detector",
                "gst-retinaface developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| crate::filter_pad_templates(&videoformat::raw_video_caps()));
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for RetinaFaceMotion {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let config = self.settings.lock().unwrap().config.clone();
        *self.state.lock().unwrap() = Some(State {
            detector: MotionDetector::new(config),
            info: None,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse video caps {incaps}"))?;
        let layout = videoformat::pixel_layout(info.format())
            .ok_or_else(|| gst::loggable_error!(CAT, "unsupported format {:?}", info.format()))?;
        let mut state = self.state.lock().unwrap();
        let state = state
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "caps before start"))?;
        state.info = Some((info, layout));
        state.detector.reset();
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        // A background from before a seek or of another stream is not this one's.
        if crate::starts_over(&event)
            && let Some(state) = self.state.lock().unwrap().as_mut()
        {
            state.detector.reset();
        }
        self.parent_sink_event(event)
    }

    fn transform_ip(&self, buf: &mut gst::BufferRef) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (config, roi_type) = {
            let s = self.settings.lock().unwrap();
            (s.config.clone(), s.roi_type.clone())
        };
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let (info, layout) = state.info.clone().ok_or(gst::FlowError::NotNegotiated)?;
        if state.detector.config() != &config {
            state.detector.set_config(config);
        }
        let regions = {
            let frame =
                gst_video::VideoFrameRef::from_buffer_ref_readable(&*buf, &info).map_err(|_| {
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
            videoformat::with_core_frame(&frame, layout, |f| state.detector.detect(f))
        };
        drop(guard);
        let regions = regions.map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e.0));
            gst::FlowError::Error
        })?;
        gst::trace!(CAT, imp = self, "{} motion regions", regions.len());
        for r in regions {
            VideoRegionOfInterestMeta::add(
                buf,
                &roi_type,
                (r.x as u32, r.y as u32, r.w as u32, r.h as u32),
            );
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
