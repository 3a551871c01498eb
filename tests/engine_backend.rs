//! The engine with its ONNX Runtime backend, on real models: batched runs give what single runs
//! give (the RetinaFace model), and a model that is not RetinaFace at all — two inputs, two
//! outputs, written here byte by byte — runs through the same registry, queue and batching.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use retinaface::ModelContract;
use retinaface::engine::{
    Backend, Client, ClientOptions, Done, EngineError, EngineKey, ORT_MAX_BATCH, OrtBackend,
    Registry, Tensor,
};
use retinaface::runtime::SessionConfig;

/// Longest any test waits for an answer that should come (a 320×240 run on a loaded 2-core
/// machine takes well under a second).
const WAIT: Duration = Duration::from_secs(30);

fn retinaface_model() -> PathBuf {
    PathBuf::from(retinaface_testkit::model("retinaface-mv025.onnx"))
}

fn batched(batch_size: usize, batch_timeout: Duration) -> ClientOptions {
    ClientOptions {
        batch_size,
        batch_timeout,
    }
}

/// A `[3, h, w]` input of varied values (seeded), as one request.
fn pattern(w: usize, h: usize, seed: usize) -> Vec<Tensor> {
    let mut t = Tensor::new(vec![3, h, w]);
    for (i, v) in t.data.iter_mut().enumerate() {
        *v = (((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 4.0;
    }
    vec![t]
}

fn assert_close(a: &[Tensor], b: &[Tensor], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: outputs");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.shape, y.shape, "{what}");
        let worst = x
            .data
            .iter()
            .zip(&y.data)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(worst <= 1e-5, "{what}: differs by {worst}");
    }
}

#[test]
fn onnx_runtime_batch_of_two_equals_two_single_runs() {
    let key = EngineKey::new(&retinaface_model(), &SessionConfig::default());
    let mut backend = OrtBackend::open(&key, &[]).expect("default model loads");
    assert!(
        backend.max_batch() > 1,
        "the default model has a dynamic batch dimension"
    );
    let input = pattern(320, 240, 1);
    let single = backend.run(&[&input]).unwrap();
    let pair = backend.run(&[&input, &input]).unwrap();
    assert_eq!((single.len(), pair.len()), (1, 2));
    // 320×240 with steps 8/16/32 and two anchors each: 2 × (1200 + 300 + 80) priors.
    let contract = ModelContract::of_model(backend.model()).unwrap();
    for (name, per_prior) in [
        (&contract.loc, 4),
        (&contract.conf, 2),
        (&contract.landmarks, 10),
    ] {
        let at = backend.model().output(name).unwrap();
        assert_eq!(single[0][at].shape, [3160, per_prior], "{name}");
        assert_eq!(single[0][at].data.len(), 3160 * per_prior, "{name}");
    }
    assert_close(&single[0], &pair[0], "slot 0");
    assert_close(&single[0], &pair[1], "slot 1");
}

/// Four streams of different sizes through a shared engine batching up to 4 give what
/// separate unbatched engines give.
#[test]
fn onnx_runtime_shared_batched_equals_separate_unbatched() {
    let key = EngineKey::new(&retinaface_model(), &SessionConfig::default());
    let loader = OrtBackend::loader(Vec::new());
    let sizes = [(320, 240), (240, 320), (320, 240), (320, 240)];
    let inputs: Vec<Vec<Tensor>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &(w, h))| pattern(w, h, i))
        .collect();
    let shared = Registry::new();
    let options = batched(4, Duration::from_millis(500));
    let clients: Vec<Client> = (0..4)
        .map(|_| {
            shared
                .client(key.clone(), Arc::clone(&loader), options)
                .unwrap()
        })
        .collect();
    let together: Vec<Done> = thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .zip(&inputs)
            .map(|(c, input)| s.spawn(move || c.submit(input.clone()).wait(WAIT).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        clients[0].engine().stats().batches,
        2,
        "3 of one size, 1 of another"
    );
    assert_eq!(
        together.iter().map(|d| d.batch_len).collect::<Vec<_>>(),
        [3, 1, 3, 3]
    );
    for (i, input) in inputs.iter().enumerate() {
        let alone = Registry::new()
            .client(key.clone(), Arc::clone(&loader), ClientOptions::default())
            .unwrap();
        let done = alone.submit(input.clone()).wait(WAIT).unwrap();
        assert_eq!(done.batch_len, 1);
        assert_close(&together[i].outputs, &done.outputs, &format!("stream {i}"));
    }
}

/// The smallest ONNX `ModelProto` that does something: inputs `a` and `b` of shape `[N, 3]`
/// (float32, `N` symbolic), outputs `sum = a + b` and `product = a · b`, and one metadata
/// property `kind = toy`. Hand-encoded protobuf (field numbers from onnx.proto3), so no ONNX
/// tooling is needed.
fn toy_model() -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    /// A varint field (wire type 0).
    fn int(field: u64, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(&mut out, field << 3);
        varint(&mut out, v);
        out
    }
    /// A length-delimited field (wire type 2): a string or an embedded message.
    fn bytes(field: u64, v: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(&mut out, (field << 3) | 2);
        varint(&mut out, v.len() as u64);
        out.extend_from_slice(v);
        out
    }
    // ValueInfoProto { name = 1, type = 2: TypeProto { tensor_type = 1: { elem_type = 1
    // (FLOAT), shape = 2: TensorShapeProto { dim = 1: { dim_param = 2 | dim_value = 1 } } } } }
    let value_info = |name: &str| {
        let shape = [bytes(1, &bytes(2, b"N")), bytes(1, &int(1, 3))].concat();
        let tensor = [int(1, 1), bytes(2, &shape)].concat();
        [bytes(1, name.as_bytes()), bytes(2, &bytes(1, &tensor))].concat()
    };
    // NodeProto { input = 1, output = 2, name = 3, op_type = 4 }
    let node = |op: &str, output: &str| {
        [
            bytes(1, b"a"),
            bytes(1, b"b"),
            bytes(2, output.as_bytes()),
            bytes(3, output.as_bytes()),
            bytes(4, op.as_bytes()),
        ]
        .concat()
    };
    // GraphProto { node = 1, name = 2, input = 11, output = 12 }
    let graph = [
        bytes(1, &node("Add", "sum")),
        bytes(1, &node("Mul", "product")),
        bytes(2, b"toy"),
        bytes(11, &value_info("a")),
        bytes(11, &value_info("b")),
        bytes(12, &value_info("sum")),
        bytes(12, &value_info("product")),
    ]
    .concat();
    // ModelProto { ir_version = 1, graph = 7, opset_import = 8: { version = 2 },
    // metadata_props = 14: { key = 1, value = 2 } }
    [
        int(1, 8),
        bytes(7, &graph),
        bytes(8, &int(2, 13)),
        bytes(14, &[bytes(1, b"kind"), bytes(2, b"toy")].concat()),
    ]
    .concat()
}

/// The toy model in a file of its own, removed when dropped.
struct ModelFile(PathBuf);

impl ModelFile {
    fn write(name: &str, bytes: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!("{name}-{}.onnx", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ModelFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Another kind of model, through the very registry, queue and batching the detector uses:
/// four streams share one engine and one run of four, and each gets its own outputs, found by
/// their names.
#[test]
fn a_model_that_is_not_retinaface_runs_batched_through_the_shared_engine() {
    let file = ModelFile::write("engine-toy", &toy_model());
    let key = EngineKey::new(
        file.path(),
        &SessionConfig {
            threads: 1,
            ..SessionConfig::default()
        },
    );
    let registry = Registry::new();
    let loader = OrtBackend::loader(Vec::new());
    let options = batched(4, Duration::from_secs(5));
    let mut clients: Vec<Client> = (0..4)
        .map(|_| {
            registry
                .client(key.clone(), Arc::clone(&loader), options)
                .expect("the toy model loads")
        })
        .collect();
    assert_eq!(registry.live(), 1, "the four streams share one engine");
    let engine = Arc::clone(clients[0].engine());
    let model = engine.model();
    let names = |t: &[retinaface::engine::TensorInfo]| -> Vec<String> {
        t.iter().map(|t| t.name.clone()).collect()
    };
    assert_eq!(names(&model.inputs), ["a", "b"]);
    assert_eq!(names(&model.outputs), ["sum", "product"]);
    assert_eq!(model.inputs[0].shape, [-1, 3]);
    assert_eq!(model.metadata.get("kind").map(String::as_str), Some("toy"));
    assert_eq!(engine.max_batch(), ORT_MAX_BATCH, "N is symbolic: batches");

    let request = |i: usize| {
        let x = i as f32;
        let a = Tensor {
            shape: vec![3],
            data: vec![x, x + 1.0, x + 2.0],
        };
        let b = Tensor {
            shape: vec![3],
            data: vec![2.0, 3.0, -1.0],
        };
        vec![a, b]
    };
    let barrier = Barrier::new(clients.len());
    let answers: Vec<Done> = thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, client)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    client.submit(request(i)).wait(WAIT).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stats = engine.stats();
    assert_eq!(
        (stats.batches, stats.requests, stats.largest_batch),
        (1, 4, 4),
        "one run of the four requests"
    );
    let (sum, product) = (
        model.output("sum").unwrap(),
        model.output("product").unwrap(),
    );
    for (i, done) in answers.iter().enumerate() {
        let x = i as f32;
        assert_eq!(done.batch_len, 4);
        assert!(Arc::ptr_eq(&done.model, model));
        assert_eq!(done.outputs[sum].shape, [3], "batch dimension taken off");
        assert_eq!(done.outputs[sum].data, [x + 2.0, x + 4.0, x + 1.0]);
        assert_eq!(
            done.outputs[product].data,
            [2.0 * x, 3.0 * (x + 1.0), -(x + 2.0)]
        );
        assert_eq!(done.inputs, request(i), "the inputs come back");
    }

    // Async hand-over works the same (alone, without waiting for others); a request that does
    // not fit the model's inputs is refused before it reaches it.
    clients[0].set_options(ClientOptions::default());
    let ticket = clients[0].try_submit(request(7)).ok().unwrap();
    assert_eq!(
        ticket.wait(WAIT).unwrap().outputs[sum].data,
        [9.0, 11.0, 8.0]
    );
    let one_input = request(0)[..1].to_vec();
    assert_eq!(
        clients[1].submit(one_input).wait(WAIT).unwrap_err(),
        EngineError::InputCount {
            expected: 2,
            got: 1
        }
    );
    assert_eq!(engine.stats().requests, 5);
    drop((clients, engine));
    assert_eq!(registry.live(), 0, "freed with its last client");
}
