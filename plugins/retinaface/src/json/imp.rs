use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileTypeExt;
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

/// Where the lines go, opened in `start()`. Unbuffered: each line is handed to the kernel in one
/// `write_all` as soon as it is complete, so a killed process loses at most the line in flight.
struct Output {
    file: File,
    /// What messages call it: the path, or "standard output".
    name: String,
    /// Bytes written so far, when `file` is a regular file this element created: on a failed write
    /// the file is cut back to this length so that it never ends in a partial line.
    written: Option<u64>,
}

impl Output {
    fn open(location: &str) -> Result<Self, gst::ErrorMessage> {
        if location == "-" {
            return Self::stdout();
        }
        let file = File::create(location).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenWrite,
                ("cannot open {location} for writing: {e}")
            )
        })?;
        let regular = file.metadata().is_ok_and(|m| m.file_type().is_file());
        Ok(Self {
            file,
            name: location.to_string(),
            written: regular.then_some(0),
        })
    }

    /// A duplicate of file descriptor 1, bypassing Rust's `Stdout` (which reports success when
    /// descriptor 1 is closed). A process started with its standard output closed gets descriptor
    /// 1 reused for whatever it opens first (in gst-launch-1.0, one of GStreamer's internal
    /// sockets, which would fill up and block the pipeline): refuse those.
    fn stdout() -> Result<Self, gst::ErrorMessage> {
        let error = |why: &dyn std::fmt::Display| {
            gst::error_msg!(
                gst::ResourceError::OpenWrite,
                ("cannot write to standard output: {why}")
            )
        };
        let stdout = std::io::stdout();
        let fd = stdout.as_fd();
        let file = File::from(fd.try_clone_to_owned().map_err(|e| error(&e))?);
        let kind = file.metadata().map_err(|e| error(&e))?.file_type();
        let usable = kind.is_file()
            || kind.is_fifo()
            || kind.is_char_device()
            || kind.is_block_device()
            || (kind.is_socket() && socket_peer_pid(fd) != Some(std::process::id()));
        if !usable {
            return Err(error(
                &"it was closed when the program started (file descriptor 1 now belongs to \
                  something the program opened itself); start the program with its standard \
                  output open, or set location to a file",
            ));
        }
        Ok(Self {
            file,
            name: "standard output".into(),
            written: None,
        })
    }

    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self.file.write_all(line) {
            Ok(()) => {
                if let Some(written) = &mut self.written {
                    *written += line.len() as u64;
                }
                Ok(())
            }
            Err(e) => {
                if let Some(written) = self.written {
                    // Best effort: a full disk may have taken part of the line.
                    let _ = self.file.set_len(written);
                }
                Err(e)
            }
        }
    }
}

/// Process id of the peer of a Unix socket (`SO_PEERCRED`): for a socket pair, the process that
/// created it. `None` when unknown.
#[cfg(target_os = "linux")]
fn socket_peer_pid(fd: BorrowedFd<'_>) -> Option<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let pid = getsockopt(&fd, PeerCredentials).ok()?.pid();
    u32::try_from(pid).ok().filter(|p| *p > 0)
}

#[cfg(not(target_os = "linux"))]
fn socket_peer_pid(_fd: BorrowedFd<'_>) -> Option<u32> {
    None
}

struct State {
    /// `None` once a write failed: the error was posted, later buffers fail quietly.
    output: Option<Output>,
    info: Option<gst_video::VideoInfo>,
    frame: u64,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    frame: u64,
    pts: Option<u64>,
    width: u32,
    height: u32,
    /// Whether the detector analysed this frame (false: faces carried from an earlier one);
    /// `null` when the producer does not say.
    analysed: Option<bool>,
    /// Whether this frame is the first to carry its detection result (every analysed frame,
    /// and in async mode the frame a result arrives with); `null` when the producer does not
    /// say.
    new_result: Option<bool>,
    /// pts (ns) of the frame the faces were found on; `null` when unknown.
    detected_pts: Option<u64>,
    /// Frames since that one (0: this frame); `null` before the first result.
    result_age: Option<u64>,
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

impl State {
    /// Flushes the output; on failure closes it and hands it back with the error.
    fn flush(&mut self) -> Option<(Output, std::io::Error)> {
        let e = self.output.as_mut()?.file.flush().err()?;
        Some((self.output.take()?, e))
    }
}

impl RetinaFaceJson {
    /// Posts the one ERROR message of a failed output (called without the state lock held).
    fn post_write_error(&self, output: &Output, e: &std::io::Error) {
        gst::element_imp_error!(
            self,
            gst::ResourceError::Write,
            ("cannot write to {}: {e}", output.name)
        );
    }
}

impl BaseTransformImpl for RetinaFaceJson {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = true;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let location = self.settings.lock().unwrap().location.clone();
        let output = Output::open(&location)?;
        *self.state.lock().unwrap() = Some(State {
            output: Some(output),
            info: None,
            frame: 0,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Never fails: an earlier write error was posted already, and failing here would leave the
        // pads active and the pipeline unable to reach NULL. Dropping the state closes the output.
        let state = self.state.lock().unwrap().take();
        if let Some((output, e)) = state.and_then(|mut state| state.flush()) {
            self.post_write_error(&output, &e);
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
        // Lines are written unbuffered; the flush only matters should that ever change.
        if let gst::EventView::Eos(_) = event.view() {
            let failure = self.state.lock().unwrap().as_mut().and_then(State::flush);
            if let Some((output, e)) = failure {
                self.post_write_error(&output, &e);
            }
        }
        self.parent_sink_event(event)
    }

    fn transform_ip_passthrough(
        &self,
        buf: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let faces = facemeta::read(buf);
        let provenance = facemeta::provenance(buf);
        let (output, e) = {
            let mut guard = self.state.lock().unwrap();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            let info = state.info.as_ref().ok_or(gst::FlowError::NotNegotiated)?;
            let line = Line {
                frame: state.frame,
                pts: buf.pts().map(gst::ClockTime::nseconds),
                width: info.width(),
                height: info.height(),
                analysed: provenance.map(|p| p.analysed),
                new_result: provenance.map(|p| p.new_result),
                detected_pts: provenance
                    .and_then(|p| p.detected_pts)
                    .map(gst::ClockTime::nseconds),
                result_age: provenance.and_then(|p| p.result_age),
                faces: &faces,
            };
            let mut text = serde_json::to_vec(&line).expect("plain numbers and arrays serialize");
            text.push(b'\n');
            state.frame += 1;
            // `None`: the write error was posted already.
            let output = state.output.as_mut().ok_or(gst::FlowError::Error)?;
            match output.write_line(&text) {
                Ok(()) => return Ok(gst::FlowSuccess::Ok),
                Err(e) => (state.output.take().expect("open output"), e),
            }
        };
        self.post_write_error(&output, &e);
        Err(gst::FlowError::Error)
    }
}
