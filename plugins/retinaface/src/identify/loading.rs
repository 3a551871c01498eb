//! Loading a face library for the element: at start (the element waits: its first frames are
//! matched against it) and in the background when `library` changes while playing (the stream
//! goes on with the old library until the new one is ready).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};

use retinaface::detector::DetectParams;
use retinaface::embedding::Embedder;
use retinaface::engine::{ClientOptions, EngineKey, Registry};
use retinaface::library::{Library, LoadReport};
use retinaface::{Detector, SessionConfig};

/// What loading needs: the folder and the two models (the detector finds each photo's face, the
/// embedder embeds it), shared with the rest of the process through the global registry.
#[derive(Debug, Clone)]
pub struct Request {
    pub folder: PathBuf,
    pub detector_model: PathBuf,
    pub embedding_model: PathBuf,
}

/// A loaded library, or why it could not be loaded (a sentence that says what to do).
pub type Loaded = Result<(Library, LoadReport), String>;

/// Loads the library of `request` now.
pub fn load(request: &Request) -> Loaded {
    let registry = Registry::global();
    let ort_dirs = crate::ort_search_dirs();
    let session = SessionConfig::default();
    let mut detector = Detector::connect(
        registry,
        EngineKey::new(&request.detector_model, &session),
        &ort_dirs,
        ClientOptions::default(),
    )
    .map_err(|e| {
        format!(
            "cannot load the detector model '{}' for the face library: {e} (set detector-model)",
            request.detector_model.display()
        )
    })?;
    let embedder = connect_embedder(&request.embedding_model)?;
    // Photos are searched whole, at the detector's default size: a library photo is usually a
    // portrait or a crop, its face large.
    let params = DetectParams::default();
    Library::load(&request.folder, &mut detector, &params, &embedder).map_err(|e| e.to_string())
}

/// A client of the embedding model `model` in the process's registry.
pub fn connect_embedder(model: &Path) -> Result<Embedder, String> {
    let options = ClientOptions {
        // Crops of one frame (and of other streams' frames) share runs where the model batches.
        batch_size: 8,
        ..ClientOptions::default()
    };
    Embedder::connect(
        Registry::global(),
        EngineKey::new(model, &SessionConfig::default()),
        &crate::ort_search_dirs(),
        options,
    )
    .map_err(|e| format!("{e} (set model to an embedding model, README \"Who is it\")"))
}

/// A load running on a thread of its own; the newest request wins.
#[derive(Default)]
pub struct Background {
    pending: Option<(PathBuf, Receiver<Loaded>)>,
}

impl Background {
    /// Starts loading `request` (a load already running is forgotten: its result is dropped).
    pub fn start(&mut self, request: Request) {
        let (tx, rx) = mpsc::channel();
        let folder = request.folder.clone();
        let spawned = std::thread::Builder::new()
            .name("retinaface-library".into())
            .spawn(move || {
                // The receiver may be gone (a newer load, or the element stopped): nothing waits.
                let _ = tx.send(load(&request));
            });
        let rx = match spawned {
            Ok(_) => rx,
            Err(e) => {
                // No thread: the next poll reports why.
                let (tx, rx) = mpsc::channel();
                let _ = tx.send(Err(format!("cannot start loading the face library: {e}")));
                rx
            }
        };
        self.pending = Some((folder, rx));
    }

    /// The result of the running load once it is done (folder, result); `None` while it runs or
    /// when none runs.
    pub fn poll(&mut self) -> Option<(PathBuf, Loaded)> {
        let (_, rx) = self.pending.as_ref()?;
        let result = match rx.try_recv() {
            Ok(loaded) => loaded,
            Err(TryRecvError::Empty) => return None,
            Err(TryRecvError::Disconnected) => {
                Err("loading the face library stopped without a result".into())
            }
        };
        let (folder, _) = self.pending.take()?;
        Some((folder, result))
    }

    /// Whether a load is running.
    pub fn running(&self) -> bool {
        self.pending.is_some()
    }
}
