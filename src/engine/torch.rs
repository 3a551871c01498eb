//! The libtorch backend: a TorchScript export of a model (`retinaface-train torchscript` writes
//! one, with its side file, [`side_file`](super::side_file)) run by libtorch through `tch`, on
//! the CPU or on CUDA `device_id`, with the requests of a batch side by side along the first
//! dimension like [`OrtBackend`](super::OrtBackend), in FP16 where asked.
//!
//! The backend [takes pixels](Backend::takes_pixels): a client (the detector) sends each crop
//! as 8-bit RGB [`Pixels`] at its source resolution, and the input is made on the device
//! ([`PixelStage`]): the batch's bytes go up in one copy, then per request the bytes become
//! floats, are scaled to the request's content size with the request's filter, put in the
//! model's channel order, normalised (`(colour − mean) / std`, from the contract the client
//! read: the side file's metadata) and written into its slot of a zeroed `[n, 3, H, W]` input
//! (zero = the padding of the CPU path). Requests batch by input size, whatever their source
//! sizes. So a 1080p frame costs the CPU a copy (or one YUV → RGB pass), not a resize.
//!
//! The filters match the CPU path ([`Preprocessor`](crate::preprocess::Preprocessor)):
//! `Nearest` (the default `scale-filter`) is libtorch's `nearest-exact`, which picks the source
//! pixel whose centre is nearest, the CPU path's rule (computed in f32 rather than f64, so a
//! column exactly between two pixels may, rarely, take the other one); `Bilinear` is
//! `upsample_bilinear2d` without corner alignment and without antialiasing, the 2×2 half-pixel
//! interpolation the CPU path's `fast_image_resize` does (OpenCV's INTER_LINEAR). One
//! difference: the CPU path rounds the scaled image to bytes before normalising, the device
//! keeps floats, so values differ by up to half a colour step (× 1/std). YUV frames differ a
//! little more: the CPU path scales the Y, U and V planes and converts at the small size, here
//! the frame is converted at source resolution (each chroma sample covering its 2×2 block) and
//! the RGB image scaled. The parity tests (`tests/torch_parity.rs`) bound both.
//!
//! f32 tensors are still taken as the engine's other kind of request: the batch is copied to
//! the device once per run. FP16 casts the input on the device; the export casts its weights
//! to the input's type (`type_as`), so one archive serves both.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use tch::{CModule, Device, IValue, Kind, Tensor as TchTensor};

use super::backend::{
    Backend, LoadError, ModelInfo, Pixels, Tensor, TensorInfo, check_batch, check_pixel_batch,
};
use super::key::EngineKey;
use super::side_file::{TORCHSCRIPT_FORMAT, TorchScriptSideFile, torchscript_paths};
use crate::preprocess::{Normalisation, ScaleFilter};
use crate::runtime::{ExecutionProvider, SessionConfig};

/// Requests per libtorch run at most, whatever the clients' `batch_size`: a run's working
/// memory grows with its batch.
pub const TORCH_MAX_BATCH: usize = 32;

/// How to make the TorchScript file; appended to a missing-file error.
const CONVERT_HINT: &str = "convert the ONNX model with `retinaface-train torchscript --model \
     MODEL.onnx --output MODEL.pt` (README, \"GPU with libtorch\"); it writes MODEL.pt and \
     MODEL.pt.json beside it";

/// libtorch backend: a TorchScript module on its device.
pub struct TorchBackend {
    module: CModule,
    device: Device,
    /// `Half` for FP16 runs on CUDA, else `Float`.
    kind: Kind,
    model: ModelInfo,
    /// Per input, the batch's values side by side (reused from run to run).
    staging: Vec<Vec<f32>>,
    /// What pixel requests need on the device (reused from run to run).
    pixels: PixelStage,
    /// The module returns one tensor holding the outputs side by side along its last axis,
    /// each this wide ([`TorchScriptSideFile::packed_outputs`]).
    packed: Option<Vec<i64>>,
    warnings: Vec<String>,
}

impl TorchBackend {
    /// Loads the TorchScript model of `key` (`key.model`, or the `.pt` beside an `.onnx`; see
    /// [`torchscript_paths`]) with its side file on the device the session options ask for. An
    /// unavailable GPU falls back to the CPU with a warning, as ONNX Runtime's providers do.
    pub fn open(key: &EngineKey) -> Result<Self, LoadError> {
        let (archive, side) = torchscript_paths(&key.model);
        let side = read_side_file(&archive, &side)?;
        let mut warnings = Vec::new();
        let device = choose_device(&key.session, &mut warnings);
        let kind = if key.session.torch_fp16 && device.is_cuda() {
            Kind::Half
        } else {
            if key.session.torch_fp16 {
                warnings.push("torch FP16 runs on CUDA only; running in FP32 on the CPU".into());
            }
            Kind::Float
        };
        if key.session.threads > 0 {
            // libtorch's intra-op pool is per process: the last engine opened sets it.
            tch::set_num_threads(key.session.threads.min(i32::MAX as usize) as i32);
        }
        let mut module = CModule::load_on_device(&archive, device).map_err(|e| {
            LoadError::Other(format!(
                "'{}' is not a TorchScript model libtorch can load ({e}); {CONVERT_HINT}",
                archive.display()
            ))
        })?;
        module.set_eval();
        if device.is_cuda() {
            // Input sizes are fixed per stream: let cuDNN pick its fastest kernels per size.
            tch::Cuda::cudnn_set_benchmark(true);
        }
        let describe = |t: &[super::side_file::SideTensor]| -> Vec<TensorInfo> {
            t.iter()
                .map(|t| TensorInfo {
                    name: t.name.clone(),
                    shape: t.shape.clone(),
                    is_f32: true,
                })
                .collect()
        };
        let packed = if side.packed_outputs {
            Some(side.packed_widths().map_err(|why| {
                LoadError::Other(format!(
                    "TorchScript side file of '{}': {why}",
                    archive.display()
                ))
            })?)
        } else {
            None
        };
        let model = ModelInfo {
            inputs: describe(&side.inputs),
            outputs: describe(&side.outputs),
            metadata: side.metadata.into_iter().collect::<HashMap<_, _>>(),
        };
        Ok(Self {
            module,
            device,
            kind,
            model,
            staging: Vec::new(),
            pixels: PixelStage::default(),
            packed,
            warnings,
        })
    }

    /// The device the module runs on (`cuda:N` or the CPU after a fallback).
    pub fn device(&self) -> Device {
        self.device
    }

    /// One forward run of `batch` (all of equal shapes): each input's tensors side by side
    /// behind a batch dimension, each output cut back into one tensor per request.
    fn run_batch(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Vec<Tensor>>, String> {
        let _no_grad = tch::no_grad_guard();
        let n = batch.len();
        let first = batch[0];
        self.staging.resize_with(first.len(), Vec::new);
        let mut args = Vec::with_capacity(first.len());
        for (i, staged) in self.staging.iter_mut().enumerate() {
            let host = if n == 1 {
                TchTensor::from_slice(&first[i].data)
            } else {
                staged.clear();
                for request in batch {
                    staged.extend_from_slice(&request[i].data);
                }
                TchTensor::from_slice(staged)
            };
            let shape: Vec<i64> = std::iter::once(n as i64)
                .chain(first[i].shape.iter().map(|&d| d as i64))
                .collect();
            let input = host
                .f_view(shape.as_slice())
                .and_then(|t| t.f_to_device(self.device))
                .and_then(|t| t.f_to_kind(self.kind))
                .map_err(|e| e.to_string())?;
            args.push(IValue::Tensor(input));
        }
        self.forward(&args, n)
    }

    /// One forward run of a batch of pixel requests of one input size: the input made on the
    /// device ([`PixelStage::input`]), then as [`TorchBackend::run_batch`].
    fn run_pixel_batch(&mut self, batch: &[&Pixels]) -> Result<Vec<Vec<Tensor>>, String> {
        let _no_grad = tch::no_grad_guard();
        let input = self
            .pixels
            .input(batch, self.device)
            .and_then(|t| t.f_to_kind(self.kind))
            .map_err(|e| format!("making the input of the pixels on {:?}: {e}", self.device))?;
        self.forward(&[IValue::Tensor(input)], batch.len())
    }

    /// Runs the module on `args` (a batch of `n`) and cuts each output into one tensor per
    /// request, on the host.
    fn forward(&mut self, args: &[IValue], n: usize) -> Result<Vec<Vec<Tensor>>, String> {
        let out = self.module.forward_is(args).map_err(|e| e.to_string())?;
        let mut tensors = output_tensors(out)?;
        if let (Some(widths), [one]) = (&self.packed, tensors.as_slice()) {
            tensors = one.f_split_with_sizes(widths.as_slice(), -1).map_err(|e| {
                format!("the packed output does not split as its side file says: {e}")
            })?;
        }
        if tensors.len() != self.model.outputs.len() {
            return Err(format!(
                "the TorchScript model returned {} tensor(s); its side file names {}",
                tensors.len(),
                self.model.outputs.len()
            ));
        }
        let mut per_request: Vec<Vec<Tensor>> =
            (0..n).map(|_| Vec::with_capacity(tensors.len())).collect();
        for (info, t) in self.model.outputs.iter().zip(tensors) {
            let t = t
                .f_to_kind(Kind::Float)
                .and_then(|t| t.f_to_device(Device::Cpu))
                .and_then(|t| t.f_contiguous())
                .map_err(|e| e.to_string())?;
            let size = t.size();
            let rest: Vec<usize> = match size.split_first() {
                Some((&d, rest)) if d == n as i64 => rest.iter().map(|&d| d as usize).collect(),
                _ => {
                    return Err(format!(
                        "output '{}' of shape {size:?} does not give one part per input of the \
                         batch of {n}",
                        info.name
                    ));
                }
            };
            let values = Vec::<f32>::try_from(t.flatten(0, -1)).map_err(|e| e.to_string())?;
            let part = values.len() / n;
            for (i, out) in per_request.iter_mut().enumerate() {
                out.push(Tensor {
                    shape: rest.clone(),
                    data: values[i * part..(i + 1) * part].to_vec(),
                });
            }
        }
        Ok(per_request)
    }
}

/// What pixel requests need on the device, kept from run to run: the host buffer the batch's
/// bytes are gathered in for their one upload, and the device copies of the normalisations met.
#[derive(Default)]
pub(super) struct PixelStage {
    bytes: Vec<u8>,
    norms: Vec<DeviceNormalisation>,
}

/// One [`Normalisation`] on a device: the colour of each input channel as an index, and
/// `(colour − mean) · inv_std` as one multiply-add (`offset + colour · scale`).
struct DeviceNormalisation {
    of: Normalisation,
    device: Device,
    channels: TchTensor,
    scale: TchTensor,
    offset: TchTensor,
}

impl PixelStage {
    /// The f32 model input `[n, 3, H, W]` on `device` of `batch` (pixel requests of one input
    /// size, checked): see the module documentation.
    pub(super) fn input(
        &mut self,
        batch: &[&Pixels],
        device: Device,
    ) -> Result<TchTensor, tch::TchError> {
        let [_, h, w] = batch[0].shape().map(|d| d as i64);
        self.bytes.clear();
        for p in batch {
            self.bytes.extend_from_slice(&p.rgb);
        }
        // One host → device copy for the whole batch.
        let bytes = TchTensor::f_from_slice(&self.bytes)?.f_to_device(device)?;
        let input = TchTensor::f_zeros([batch.len() as i64, 3, h, w], (Kind::Float, device))?;
        let mut start = 0;
        for (i, p) in batch.iter().enumerate() {
            let len = p.rgb.len() as i64;
            let (sw, sh) = (p.width as i64, p.height as i64);
            let image = bytes
                .f_narrow(0, start, len)?
                .f_view([1, sh, sw, 3])?
                .f_permute([0, 3, 1, 2])?
                .f_to_kind(Kind::Float)?;
            start += len;
            let g = p.geometry;
            let (cw, ch) = (g.content_width as i64, g.content_height as i64);
            let scaled = if (cw, ch) == (sw, sh) {
                image
            } else {
                match p.filter {
                    ScaleFilter::Nearest => {
                        image.f_internal_upsample_nearest_exact2d([ch, cw], None::<f64>, None)?
                    }
                    ScaleFilter::Bilinear => {
                        image.f_upsample_bilinear2d([ch, cw], false, None::<f64>, None)?
                    }
                }
            };
            let norm = self.normalisation(&p.normalisation, device)?;
            let values = norm
                .offset
                .f_addcmul(&scaled.f_index_select(1, &norm.channels)?, &norm.scale)?;
            let mut slot = input
                .f_narrow(0, i as i64, 1)?
                .f_narrow(2, 0, ch)?
                .f_narrow(3, 0, cw)?;
            slot.f_copy_(&values)?;
        }
        Ok(input)
    }

    /// `of` on `device`, made once (an engine's clients share one model, so one contract).
    fn normalisation(
        &mut self,
        of: &Normalisation,
        device: Device,
    ) -> Result<&DeviceNormalisation, tch::TchError> {
        let found = self
            .norms
            .iter()
            .position(|n| n.of == *of && n.device == device);
        let index = match found {
            Some(index) => index,
            None => {
                let per_channel = |v: [f32; 3]| {
                    TchTensor::f_from_slice(&v)?
                        .f_view([1, 3, 1, 1])?
                        .f_to_device(device)
                };
                let offset = std::array::from_fn(|c| -of.mean[c] * of.inv_std[c]);
                let channels = of.color_of_channel.map(|c| c as i64);
                if self.norms.len() >= 4 {
                    self.norms.clear();
                }
                self.norms.push(DeviceNormalisation {
                    of: *of,
                    device,
                    channels: TchTensor::f_from_slice(&channels)?.f_to_device(device)?,
                    scale: per_channel(of.inv_std)?,
                    offset: per_channel(offset)?,
                });
                self.norms.len() - 1
            }
        };
        Ok(&self.norms[index])
    }
}

/// The tensors of what a traced function returns: a tuple (or list) of tensors, or one tensor.
fn output_tensors(out: IValue) -> Result<Vec<TchTensor>, String> {
    let items = match out {
        IValue::Tensor(t) => return Ok(vec![t]),
        IValue::TensorList(v) => return Ok(v),
        IValue::Tuple(v) | IValue::GenericList(v) => v,
        _ => return Err("the TorchScript model returned neither tensors nor a tuple".into()),
    };
    items
        .into_iter()
        .map(|v| match v {
            IValue::Tensor(t) => Ok(t),
            _ => Err("the TorchScript model returned a tuple holding a non-tensor".into()),
        })
        .collect()
}

/// Reads and checks the side file of `archive`.
fn read_side_file(archive: &Path, side: &Path) -> Result<TorchScriptSideFile, LoadError> {
    let other = |what: String| LoadError::Other(what);
    if archive.is_dir() {
        return Err(other(format!(
            "TorchScript model '{}' is a directory; set the model property to the .pt file (or \
             the .onnx file it was converted from)",
            archive.display()
        )));
    }
    if !archive.is_file() {
        return Err(other(format!(
            "TorchScript model '{}' does not exist: {CONVERT_HINT}",
            archive.display()
        )));
    }
    let text = std::fs::read_to_string(side).map_err(|e| {
        other(format!(
            "the side file '{}' of TorchScript model '{}' cannot be read ({e}): it holds the \
             model's inputs, outputs and metadata; {CONVERT_HINT}",
            side.display(),
            archive.display()
        ))
    })?;
    let parsed: TorchScriptSideFile = serde_json::from_str(&text).map_err(|e| {
        other(format!(
            "the side file '{}' is not valid ({e}); {CONVERT_HINT}",
            side.display()
        ))
    })?;
    if parsed.format != TORCHSCRIPT_FORMAT {
        return Err(other(format!(
            "the side file '{}' is of format '{}', this build reads '{TORCHSCRIPT_FORMAT}'; {CONVERT_HINT}",
            side.display(),
            parsed.format
        )));
    }
    Ok(parsed)
}

/// `cuda:device_id` for the CUDA and TensorRT providers when libtorch has that GPU, else the
/// CPU; a GPU asked for and not found is a warning that says why.
fn choose_device(config: &SessionConfig, warnings: &mut Vec<String>) -> Device {
    if config.provider == ExecutionProvider::Cpu {
        return Device::Cpu;
    }
    if config.provider == ExecutionProvider::TensorRt {
        warnings.push(
            "tensorrt is an ONNX Runtime provider; the torch backend runs on CUDA instead".into(),
        );
    }
    let fallback = |why: String| format!("torch backend: {why}; running on CPU");
    if let Err(why) = load_cuda_backend() {
        warnings.push(fallback(why));
        return Device::Cpu;
    }
    let count = tch::Cuda::device_count();
    if count == 0 {
        warnings.push(fallback("libtorch sees no CUDA GPU".into()));
        return Device::Cpu;
    }
    if config.device_id < 0 || i64::from(config.device_id) >= count {
        warnings.push(fallback(format!(
            "device-id {} does not exist (libtorch sees {count} GPU(s))",
            config.device_id
        )));
        return Device::Cpu;
    }
    Device::Cuda(config.device_id as usize)
}

/// Loads libtorch's CUDA backend (`libtorch_cuda.so`) once: it registers itself when loaded,
/// but nothing of it is referenced, so the linker leaves it out; and it must stay optional, as
/// it cannot load on a machine without the CUDA libraries.
fn load_cuda_backend() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
            let mut candidates = vec![std::path::PathBuf::from("libtorch_cuda.so")];
            if let Some(dir) = std::env::var_os("LIBTORCH") {
                candidates.push(Path::new(&dir).join("lib/libtorch_cuda.so"));
            }
            let mut tried = Vec::new();
            for candidate in candidates {
                // SAFETY: libtorch's own CUDA library, of the libtorch this process links; its
                // initialisers only register the CUDA backend.
                match unsafe { Library::open(Some(&candidate), RTLD_NOW | RTLD_GLOBAL) } {
                    Ok(lib) => {
                        // Stays loaded for the life of the process.
                        std::mem::forget(lib);
                        return Ok(());
                    }
                    Err(e) => tried.push(format!("{} ({e})", candidate.display())),
                }
            }
            Err(format!(
                "libtorch's CUDA backend could not be loaded: {}; put the torch/lib folder of a \
                 CUDA build of PyTorch 2.11 on LD_LIBRARY_PATH",
                tried.join("; ")
            ))
        })
        .clone()
}

impl Backend for TorchBackend {
    fn run(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Vec<Tensor>>, String> {
        if !check_batch(batch, self.model.inputs.len())? {
            return Ok(Vec::new());
        }
        self.run_batch(batch)
    }

    fn max_batch(&self) -> usize {
        TORCH_MAX_BATCH
    }

    fn takes_pixels(&self) -> bool {
        // A model of one image input; other models get f32 tensors.
        self.model.inputs.len() == 1
    }

    fn run_pixels(&mut self, batch: &[&Pixels]) -> Result<Vec<Vec<Tensor>>, String> {
        if !check_pixel_batch(batch)? {
            return Ok(Vec::new());
        }
        self.run_pixel_batch(batch)
    }

    fn model(&self) -> &ModelInfo {
        &self.model
    }

    fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }
}

#[cfg(test)]
mod tests {
    //! The input made on the device (here the CPU device: the same libtorch kernels' CPU
    //! versions, the same arithmetic) against the CPU preprocessing of the same crop.
    use super::*;
    use crate::contract::{ColorOrder, ModelContract};
    use crate::preprocess::{Frame, InputGeometry, PixelLayout, Plane, Preprocessor, YuvMatrix};

    /// A `w`×`h` BGRx frame (rows padded by `padding` bytes) of seeded varied bytes:
    /// neighbouring pixels unrelated, the hardest case for interpolation differences.
    fn bgrx(w: usize, h: usize, padding: usize, seed: u32) -> (Vec<u8>, usize) {
        let stride = 4 * w + padding;
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        let data = (0..stride * h)
            .map(|_| {
                // xorshift32
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 24) as u8
            })
            .collect();
        (data, stride)
    }

    fn frame<'a>(planes: &'a [Plane<'a>], w: usize, h: usize) -> Frame<'a> {
        Frame {
            layout: PixelLayout::Bgrx,
            width: w,
            height: h,
            planes,
            matrix: YuvMatrix::BT601,
        }
    }

    /// The crop as the detector sends it to a backend that takes pixels.
    fn pixels(frame: &Frame, g: InputGeometry, filter: ScaleFilter, c: &ModelContract) -> Pixels {
        let mut rgb = Vec::new();
        frame.to_rgb(&mut rgb).unwrap();
        Pixels {
            rgb,
            width: frame.width,
            height: frame.height,
            geometry: g,
            filter,
            normalisation: Normalisation::for_contract(c),
        }
    }

    fn cpu(frame: &Frame, g: InputGeometry, filter: ScaleFilter, c: &ModelContract) -> Vec<f32> {
        let mut slot = vec![0.0; g.slot_len()];
        Preprocessor::new()
            .fill(frame, g, c, filter, &mut slot)
            .unwrap();
        slot
    }

    fn device(batch: &[&Pixels]) -> Vec<Vec<f32>> {
        let input = PixelStage::default().input(batch, Device::Cpu).unwrap();
        let [_, h, w] = batch[0].shape();
        assert_eq!(input.size(), [batch.len() as i64, 3, h as i64, w as i64]);
        let values = Vec::<f32>::try_from(input.flatten(0, -1)).unwrap();
        values
            .chunks_exact(3 * h * w)
            .map(<[f32]>::to_vec)
            .collect()
    }

    /// Largest and mean absolute difference.
    fn diff(a: &[f32], b: &[f32]) -> (f32, f32) {
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        let sum: f32 = a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum();
        (worst, sum / a.len() as f32)
    }

    /// A contract whose std is not 1, so the scale is exercised too.
    fn scaled_contract() -> ModelContract {
        ModelContract {
            color_order: ColorOrder::Rgb,
            mean: [123.7, 116.3, 103.5],
            std: [58.4, 57.1, 57.4],
            ..Default::default()
        }
    }

    /// Device against CPU with `filter` on 1080p to 640 (the detector's default), an odd size
    /// to an odd size, and an upscale (a tile at scale 2), each with the default contract and
    /// one whose std is not 1: `(case, largest difference, mean difference, one colour step
    /// after normalisation)` per case. Frames with rows padded by `padding` bytes.
    fn compare(filter: ScaleFilter, padding: usize) -> Vec<(String, f32, f32, f32)> {
        let mut results = Vec::new();
        for (w, h, g) in [
            (1920, 1080, InputGeometry::for_frame(1920, 1080, 640)),
            (333, 257, InputGeometry::for_frame(333, 257, 200)),
            (100, 60, InputGeometry::scaled(100, 60, 2.0)),
        ] {
            let (data, stride) = bgrx(w, h, padding, (w * h) as u32);
            let planes = [Plane {
                data: &data,
                stride,
            }];
            let frame = frame(&planes, w, h);
            for contract in [ModelContract::default(), scaled_contract()] {
                let step = contract.std.iter().map(|s| 1.0 / s).fold(0.0, f32::max);
                let p = pixels(&frame, g, filter, &contract);
                let on_device = device(&[&p]).remove(0);
                let on_cpu = cpu(&frame, g, filter, &contract);
                let (worst, mean) = diff(&on_device, &on_cpu);
                let case = format!("{w}×{h} → {g:?}, std {:?}", contract.std);
                results.push((case, worst, mean, step));
            }
        }
        results
    }

    #[test]
    fn nearest_on_the_device_equals_the_cpu_preprocessing() {
        // Nearest picks the same source pixel on both (the same rule), so the values agree up
        // to f32 rounding of the normalisation (x·s − m·s against (x − m)·s: a few ulps of
        // values below 5, so 1e-5).
        for (case, worst, _, _) in compare(ScaleFilter::Nearest, 8) {
            assert!(worst <= 1e-5, "{case}: differs by {worst}");
        }
    }

    #[test]
    fn bilinear_on_the_device_is_within_one_colour_step_of_the_cpu_preprocessing() {
        // The CPU scales bytes to bytes (rounding: ≤ 0.5 step; its fixed-point weights: up to
        // 0.5 more), the device keeps floats: at most one colour step apart (+ f32 rounding),
        // times 1/std after normalisation; on average rounding's 0.25 and a little (measured:
        // 0.30 to 0.36 on these maximally sharp images; 0 at the integer factor of 1080p → 640,
        // where both sample pixel centres). Rows without padding here: with padded rows the CPU
        // scaler, reading the plane as a wider image, blends the row padding into the last
        // column when upscaling (the device clamps at the image's edge).
        for (case, worst, mean, step) in compare(ScaleFilter::Bilinear, 0) {
            assert!(
                worst <= step + 1e-3,
                "{case}: differs by {worst} (> one step {step})"
            );
            assert!(mean <= 0.4 * step, "{case}: mean difference {mean}");
        }
    }

    #[test]
    fn requests_of_other_source_sizes_share_one_input_each_in_its_own_slot() {
        // Two crops of different sizes whose inputs are both 64×64: one batch, each slot
        // what that crop gives alone, padding zero.
        let contract = ModelContract::default();
        let (a, sa) = bgrx(120, 80, 8, 1);
        let (b, sb) = bgrx(64, 30, 8, 2);
        let pa_planes = [Plane {
            data: &a,
            stride: sa,
        }];
        let pb_planes = [Plane {
            data: &b,
            stride: sb,
        }];
        let (fa, fb) = (frame(&pa_planes, 120, 80), frame(&pb_planes, 64, 30));
        let ga = InputGeometry::for_frame(120, 80, 64);
        let gb = InputGeometry::for_frame(64, 30, 0);
        assert_eq!((ga.width, ga.height), (64, 43));
        let gb = InputGeometry {
            width: ga.width,
            height: ga.height,
            ..gb
        };
        let pa = pixels(&fa, ga, ScaleFilter::Nearest, &contract);
        let pb = pixels(&fb, gb, ScaleFilter::Nearest, &contract);
        assert_eq!(pa.shape(), pb.shape());
        let batch = device(&[&pa, &pb]);
        assert_eq!(batch[0], device(&[&pa])[0]);
        assert_eq!(batch[1], device(&[&pb])[0]);
        let (worst, _) = diff(&batch[1], &cpu(&fb, gb, ScaleFilter::Nearest, &contract));
        assert!(worst <= 1e-5, "differs by {worst}");
        // Rows below the 30-row content of the second request are padding.
        let w = gb.width;
        assert!(batch[1][30 * w..gb.height * w].iter().all(|v| *v == 0.0));
    }
}
