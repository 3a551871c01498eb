use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::{LazyLock, Mutex};

use glib::subclass::prelude::*;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use crate::facemeta::{self, FaceRecord};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "retinafacejson",
        gst::DebugColorFlags::empty(),
        Some("Face metadata to JSON lines"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    location: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            location: "-".into(),
        }
    }
}

struct State {
    writer: Box<dyn Write + Send>,
    info: Option<gst_video::VideoInfo>,
    frame: u64,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    frame: u64,
    pts: Option<u64>,
    width: u32,
    height: u32,
    faces: &'a [FaceRecord],
}

#[derive(Default)]
pub struct RetinaFaceJson {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

#[glib::object_subclass]
impl ObjectSubclass for RetinaFaceJson {
    const NAME: &'static str = "GstRetinaFaceJson";
    type Type = super::RetinaFaceJson;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for RetinaFaceJson {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("location")
                    .nick("Location")
                    .blurb("File to write JSON lines to ('-' = standard output)")
                    .default_value(Some(Settings::default().location.as_str()))
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        match pspec.name() {
            "location" => {
                self.settings.lock().unwrap().location = value
                    .get::<Option<String>>()
                    .unwrap()
                    .unwrap_or_else(|| Settings::default().location)
            }
            _ => unreachable!(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "location" => self.settings.lock().unwrap().location.to_value(),
            _ => unreachable!(),
        }
    }
}

impl GstObjectImpl for RetinaFaceJson {}

impl ElementImpl for RetinaFaceJson {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "RetinaFace JSON writer",
                "Filter/Video",
                "Writes the face region-of-interest metadata of each buffer as a JSON line",
                "gst-retinaface developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            // Any raw video, in any memory: only metadata is read.
            let caps = gst::Caps::builder("video/x-raw").any_features().build();
            crate::filter_pad_templates(&caps)
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for RetinaFaceJson {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let location = self.settings.lock().unwrap().location.clone();
        let writer: Box<dyn Write + Send> = if location == "-" {
            Box::new(std::io::stdout())
        } else {
            let file = File::create(&location).map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::OpenWrite,
                    ("cannot open '{location}' for writing: {e}")
                )
            })?;
            Box::new(BufWriter::new(file))
        };
        *self.state.lock().unwrap() = Some(State {
            writer,
            info: None,
            frame: 0,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(mut state) = self.state.lock().unwrap().take() {
            state.writer.flush().map_err(|e| {
                gst::error_msg!(gst::ResourceError::Write, ("cannot write JSON lines: {e}"))
            })?;
        }
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse video caps {incaps}"))?;
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.info = Some(info);
        }
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        // Make the file complete before EOS reaches the application.
        if let gst::EventView::Eos(_) = event.view()
            && let Some(state) = self.state.lock().unwrap().as_mut()
            && let Err(e) = state.writer.flush()
        {
            gst::element_imp_error!(
                self,
                gst::ResourceError::Write,
                ("cannot write JSON lines: {e}")
            );
        }
        self.parent_sink_event(event)
    }

    fn transform_ip_passthrough(
        &self,
        buf: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let faces = facemeta::read(buf);
        let mut guard = self.state.lock().unwrap();
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let info = state.info.as_ref().ok_or(gst::FlowError::NotNegotiated)?;
        let line = Line {
            frame: state.frame,
            pts: buf.pts().map(gst::ClockTime::nseconds),
            width: info.width(),
            height: info.height(),
            faces: &faces,
        };
        state.frame += 1;
        let mut text = serde_json::to_string(&line).expect("plain numbers and arrays serialize");
        text.push('\n');
        state.writer.write_all(text.as_bytes()).map_err(|e| {
            gst::element_imp_error!(
                self,
                gst::ResourceError::Write,
                ("cannot write JSON lines: {e}")
            );
            gst::FlowError::Error
        })?;
        Ok(gst::FlowSuccess::Ok)
    }
}
