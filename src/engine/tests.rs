//! The registry, queue, batching worker and client against fake backends: what each request
//! gets back, how requests are batched, and what happens when streams stop, fail or swap.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::worker::lock;
use super::*;
use crate::contract::ModelContract;
use crate::preprocess::{InputGeometry, Normalisation, ScaleFilter};
use crate::runtime::{ExecutionProvider, SessionConfig};

/// Longest any test waits for an answer that should come.
const WAIT: Duration = Duration::from_secs(5);
/// First value of an input that makes the fake backend fail its batch.
const POISON: f32 = -1.0;
/// First value of an input that makes the fake backend panic.
const PANIC: f32 = -2.0;

/// What the fake backends of a test did.
#[derive(Default)]
struct Probe {
    batches: Mutex<Vec<usize>>,
    live: AtomicUsize,
    loads: AtomicUsize,
}

impl Probe {
    fn batches(&self) -> Vec<usize> {
        lock(&self.batches).clone()
    }
}

/// Answers each request with three outputs: the sum of its input, the input's shape and the
/// model's tag, after `delay`. With `pixels` (models named `px*`) it takes pixel requests too,
/// answering each with the sum of its bytes, the shape of the input it becomes and the tag.
struct Fake {
    tag: f32,
    delay: Duration,
    probe: Arc<Probe>,
    model: ModelInfo,
    pixels: bool,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.probe.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Backend for Fake {
    fn run(&mut self, batch: &[&[Tensor]]) -> Result<Vec<Vec<Tensor>>, String> {
        thread::sleep(self.delay);
        lock(&self.probe.batches).push(batch.len());
        if batch.iter().any(|r| r[0].data[0] == PANIC) {
            panic!("fake backend panicked");
        }
        if batch.iter().any(|r| r[0].data[0] == POISON) {
            return Err("poisoned input".into());
        }
        Ok(batch
            .iter()
            .map(|r| self.answer(r[0].data.iter().sum(), &r[0].shape))
            .collect())
    }

    fn max_batch(&self) -> usize {
        8
    }

    fn model(&self) -> &ModelInfo {
        &self.model
    }

    fn takes_pixels(&self) -> bool {
        self.pixels
    }

    fn run_pixels(&mut self, batch: &[&Pixels]) -> Result<Vec<Vec<Tensor>>, String> {
        thread::sleep(self.delay);
        lock(&self.probe.batches).push(batch.len());
        Ok(batch
            .iter()
            .map(|p| self.answer(p.rgb.iter().map(|&b| f32::from(b)).sum(), &p.shape()))
            .collect())
    }
}

impl Fake {
    /// The three outputs of one request: `sum`, `shape` and the model's tag.
    fn answer(&self, sum: f32, shape: &[usize]) -> Vec<Tensor> {
        let values = |v: Vec<f32>| Tensor {
            shape: vec![v.len()],
            data: v,
        };
        vec![
            values(vec![sum]),
            values(shape.iter().map(|&d| d as f32).collect()),
            values(vec![self.tag]),
        ]
    }
}

/// Models `/fake/a.onnx` (tag 1), `/fake/b.onnx` (tag 2), others tag 0; `broken*` fails to
/// load.
fn fake_loader(probe: &Arc<Probe>, delay: Duration) -> Arc<Loader> {
    let probe = Arc::clone(probe);
    Arc::new(move |key: &EngineKey| {
        let name = key.model.file_stem().unwrap().to_str().unwrap();
        if name.starts_with("broken") {
            return Err(LoadError::Other("not an ONNX model".into()));
        }
        probe.loads.fetch_add(1, Ordering::SeqCst);
        probe.live.fetch_add(1, Ordering::SeqCst);
        let tag = match name {
            "a" => 1.0,
            "b" => 2.0,
            _ => 0.0,
        };
        let tensor = |name: &str| TensorInfo {
            name: name.into(),
            shape: vec![-1, 3, -1, -1],
            is_f32: true,
        };
        Ok(Box::new(Fake {
            tag,
            delay,
            probe: Arc::clone(&probe),
            model: ModelInfo {
                inputs: vec![tensor("image")],
                outputs: vec![tensor("sum"), tensor("shape"), tensor("tag")],
                ..ModelInfo::default()
            },
            pixels: name.starts_with("px"),
        }) as Box<dyn Backend>)
    })
}

fn key(name: &str) -> EngineKey {
    EngineKey {
        model: PathBuf::from(format!("/fake/{name}.onnx")),
        session: SessionConfig::default(),
    }
}

/// A client of `/fake/a.onnx` in a registry of its own, and what its backend does.
fn lone_client(delay: Duration, options: ClientOptions) -> (Client, Arc<Probe>) {
    client_of("a", delay, options)
}

/// [`lone_client`] of `/fake/px.onnx`, whose backend takes pixels.
fn pixel_client(options: ClientOptions) -> (Client, Arc<Probe>) {
    client_of("px", Duration::ZERO, options)
}

fn client_of(name: &str, delay: Duration, options: ClientOptions) -> (Client, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let loader = fake_loader(&probe, delay);
    let client = Registry::new().client(key(name), loader, options).unwrap();
    (client, probe)
}

/// A request of one `[3, h, w]` input whose values sum to `value`.
fn slot(value: f32, w: usize, h: usize) -> Vec<Tensor> {
    let mut s = Tensor::new(vec![3, h, w]);
    s.data[0] = value;
    vec![s]
}

/// The fake's first output (the input's sum) in an answer.
fn sum(done: Done) -> Vec<f32> {
    done.outputs[0].data.clone()
}

fn batched(batch_size: usize, batch_timeout: Duration) -> ClientOptions {
    ClientOptions {
        batch_size,
        batch_timeout,
    }
}

/// Polls `done` every millisecond for up to [`WAIT`].
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(1));
    }
    done()
}

#[test]
fn equal_keys_share_one_engine_and_other_keys_get_their_own() {
    let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
    let loader = fake_loader(&probe, Duration::ZERO);
    let a1 = reg.shared(key("a"), &*loader).unwrap();
    let a2 = reg.shared(key("a"), &*loader).unwrap();
    assert!(Arc::ptr_eq(&a1, &a2));
    // Each session option separates engines.
    let session = |s: SessionConfig| EngineKey {
        session: s,
        ..key("a")
    };
    let gpu_config = SessionConfig {
        provider: ExecutionProvider::Cuda,
        ..SessionConfig::default()
    };
    let fp16_config = SessionConfig {
        provider: ExecutionProvider::TensorRt,
        tensorrt_fp16: true,
        ..SessionConfig::default()
    };
    let threads = session(SessionConfig {
        threads: 2,
        ..SessionConfig::default()
    });
    let gpu = session(gpu_config.clone());
    let second_gpu = session(SessionConfig {
        device_id: 1,
        ..gpu_config
    });
    let fp16 = session(fp16_config.clone());
    let fp32 = session(SessionConfig {
        tensorrt_fp16: false,
        ..fp16_config.clone()
    });
    let cached = session(SessionConfig {
        tensorrt_cache: Some(PathBuf::from("/tmp/trt")),
        ..fp16_config
    });
    let a3 = reg.shared(threads, &*loader).unwrap();
    let a4 = reg.shared(gpu, &*loader).unwrap();
    let b = reg.shared(key("b"), &*loader).unwrap();
    let others: Vec<_> = [second_gpu, fp16, fp32, cached]
        .into_iter()
        .map(|k| reg.shared(k, &*loader).unwrap())
        .collect();
    for (i, other) in [&a3, &a4, &b].into_iter().chain(&others).enumerate() {
        assert!(!Arc::ptr_eq(&a1, other), "key {i} shares with a1");
    }
    for (i, x) in others.iter().enumerate() {
        for y in &others[i + 1..] {
            assert!(!Arc::ptr_eq(x, y));
        }
    }
    assert_eq!(probe.loads.load(Ordering::SeqCst), 8);
    assert_eq!(reg.live(), 8);
    // Another registry (a process of its own) does not see these.
    let separate = Registry::new().shared(key("a"), &*loader).unwrap();
    assert!(!Arc::ptr_eq(&a1, &separate));
}

#[test]
fn concurrent_first_clients_of_a_key_wait_for_one_load() {
    let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
    let slow: Arc<Loader> = {
        let inner = fake_loader(&probe, Duration::ZERO);
        Arc::new(move |k: &EngineKey| {
            thread::sleep(Duration::from_millis(50));
            inner(k)
        })
    };
    let engines: Vec<Arc<Engine>> = thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| reg.shared(key("a"), &*slow).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(engines.iter().all(|e| Arc::ptr_eq(e, &engines[0])));
    assert_eq!(probe.loads.load(Ordering::SeqCst), 1);
}

#[test]
fn engine_is_freed_with_its_last_client() {
    let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
    let loader = fake_loader(&probe, Duration::ZERO);
    let c1 = reg
        .client(key("a"), Arc::clone(&loader), ClientOptions::default())
        .unwrap();
    let c2 = reg
        .client(key("a"), Arc::clone(&loader), ClientOptions::default())
        .unwrap();
    let weak = Arc::downgrade(c1.engine());
    assert_eq!(sum(c2.submit(slot(3.0, 2, 2)).wait(WAIT).unwrap()), [3.0]);
    drop(c1);
    assert!(weak.upgrade().is_some(), "c2 still uses it");
    assert_eq!(probe.live.load(Ordering::SeqCst), 1);
    drop(c2);
    // The drop joined the worker, which dropped the backend (the model) as it ended.
    assert!(weak.upgrade().is_none());
    assert_eq!(probe.live.load(Ordering::SeqCst), 0);
    assert_eq!(reg.live(), 0);
    // A new client loads it again.
    let _c3 = reg
        .client(key("a"), loader, ClientOptions::default())
        .unwrap();
    assert_eq!(probe.loads.load(Ordering::SeqCst), 2);
}

#[test]
fn four_streams_fill_one_batch_and_each_gets_its_own_result() {
    let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
    let loader = fake_loader(&probe, Duration::ZERO);
    let options = batched(4, Duration::from_secs(3));
    let clients: Vec<Client> = (0..4)
        .map(|_| reg.client(key("a"), Arc::clone(&loader), options).unwrap())
        .collect();
    let barrier = Barrier::new(4);
    let start = Instant::now();
    thread::scope(|s| {
        for (i, client) in clients.iter().enumerate() {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                let done = client
                    .submit(slot(10.0 + i as f32, 4, 3))
                    .wait(WAIT)
                    .unwrap();
                assert_eq!(done.outputs[0].data, [10.0 + i as f32]);
                assert_eq!(
                    done.inputs[0].data[0],
                    10.0 + i as f32,
                    "the input comes back"
                );
                assert_eq!(done.batch_len, 4);
            });
        }
    });
    assert_eq!(probe.batches(), [4]);
    // Full before the timeout: it did not wait for it.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let stats = clients[0].engine().stats();
    assert_eq!(
        (stats.batches, stats.requests, stats.largest_batch),
        (1, 4, 4)
    );
}

#[test]
fn a_frames_slots_submitted_together_share_runs_without_a_timeout() {
    let (client, probe) = lone_client(Duration::ZERO, batched(4, Duration::ZERO));
    let tiles: Vec<Vec<Tensor>> = (0..6).map(|i| slot(i as f32, 3, 3)).collect();
    let tickets = client.submit_all(tiles);
    for (i, t) in tickets.iter().enumerate() {
        assert_eq!(sum(t.wait(WAIT).unwrap()), [i as f32]);
    }
    assert_eq!(probe.batches(), [4, 2]);
}

#[test]
fn a_lone_request_runs_when_its_batch_timeout_expires() {
    let timeout = Duration::from_millis(100);
    let (client, _) = lone_client(Duration::ZERO, batched(4, timeout));
    let start = Instant::now();
    let done = client.submit(slot(1.0, 2, 2)).wait(WAIT).unwrap();
    let took = start.elapsed();
    assert_eq!((done.outputs[0].data[0], done.batch_len), (1.0, 1));
    assert!(took >= timeout && took < timeout * 5, "{took:?}");
}

#[test]
fn requests_of_other_sizes_are_not_batched_together() {
    let (client, probe) = lone_client(Duration::ZERO, batched(4, Duration::from_millis(100)));
    let sizes = [(4, 3), (3, 4), (4, 3), (3, 4)];
    let tickets: Vec<Ticket> = sizes
        .iter()
        .enumerate()
        .map(|(i, &(w, h))| client.submit(slot(i as f32, w, h)))
        .collect();
    for (i, (t, &(w, h))) in tickets.iter().zip(&sizes).enumerate() {
        let done = t.wait(WAIT).unwrap();
        assert_eq!(done.outputs[0].data, [i as f32]);
        assert_eq!(done.outputs[1].data, [3.0, h as f32, w as f32]);
        assert_eq!(done.batch_len, 2);
    }
    assert_eq!(probe.batches(), [2, 2]);
}

#[test]
fn results_come_back_to_each_stream_in_order() {
    let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
    let loader = fake_loader(&probe, Duration::from_millis(1));
    let options = batched(3, Duration::from_millis(2));
    let clients: Vec<Client> = (0..3)
        .map(|_| reg.client(key("a"), Arc::clone(&loader), options).unwrap())
        .collect();
    thread::scope(|s| {
        for (c, client) in clients.iter().enumerate() {
            s.spawn(move || {
                // Many in flight at once, of two sizes, then read in submission order.
                let tickets: Vec<Ticket> = (0..20)
                    .map(|i| {
                        let (w, h) = if i % 3 == 0 { (2, 2) } else { (3, 2) };
                        client.submit(slot((100 * c + i) as f32, w, h))
                    })
                    .collect();
                for (i, t) in tickets.iter().enumerate() {
                    assert_eq!(sum(t.wait(WAIT).unwrap()), [(100 * c + i) as f32]);
                }
            });
        }
    });
    assert_eq!(probe.batches().iter().sum::<usize>(), 60);
    assert!(probe.batches().iter().all(|&n| n <= 3));
}

#[test]
fn a_stream_that_stops_never_blocks_the_others() {
    let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
    let loader = fake_loader(&probe, Duration::from_millis(5));
    let timeout = Duration::from_millis(50);
    let mut clients: Vec<Client> = (0..4)
        .map(|_| {
            reg.client(key("a"), Arc::clone(&loader), batched(4, timeout))
                .unwrap()
        })
        .collect();
    let round = |clients: &[Client], base: f32| {
        thread::scope(|s| {
            for (i, client) in clients.iter().enumerate() {
                s.spawn(move || {
                    let v = base + i as f32;
                    assert_eq!(sum(client.submit(slot(v, 2, 2)).wait(WAIT).unwrap()), [v]);
                });
            }
        });
    };
    round(&clients, 0.0);
    // One stream submits and never reads its answer; another submits and walks away
    // (drops the ticket and the client).
    let unread = clients[0].submit(slot(7.0, 2, 2));
    drop(clients[1].submit(slot(8.0, 2, 2)));
    clients.remove(1);
    for r in 1..=5 {
        let start = Instant::now();
        round(&clients[1..], 10.0 * r as f32);
        // Three of four: the batch waits for its timeout, no longer.
        assert!(
            start.elapsed() < timeout * 8,
            "round {r}: {:?}",
            start.elapsed()
        );
    }
    assert_eq!(sum(unread.wait(WAIT).unwrap()), [7.0]);
    // The abandoned request was either skipped or run; the engine went on regardless.
    let total: usize = probe.batches().iter().sum();
    assert!((4 + 1 + 10..=4 + 2 + 10).contains(&total), "{total}");
}

#[test]
fn a_dropped_ticket_cancels_its_queued_request() {
    let (client, probe) = lone_client(Duration::from_millis(100), ClientOptions::default());
    let running = client.submit(slot(1.0, 2, 2));
    assert!(
        eventually(|| client.engine().queued() == 0),
        "first one runs"
    );
    drop(client.submit(slot(2.0, 2, 2)));
    let last = client.submit(slot(3.0, 2, 2));
    assert_eq!(sum(running.wait(WAIT).unwrap()), [1.0]);
    assert_eq!(sum(last.wait(WAIT).unwrap()), [3.0]);
    assert_eq!(probe.batches(), [1, 1], "the dropped one never ran");
    assert_eq!(client.in_flight(), 0);
}

#[test]
fn async_hand_over_never_blocks_and_bounds_how_long_a_request_is_held() {
    let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
    let run = Duration::from_millis(200);
    let loader = fake_loader(&probe, run);
    let streams: Vec<Client> = (0..3)
        .map(|_| {
            reg.client(key("a"), Arc::clone(&loader), ClientOptions::default())
                .unwrap()
        })
        .collect();
    let mut calls = Vec::new();
    let mut timed = |f: &mut dyn FnMut() -> Result<Ticket, Vec<Tensor>>| {
        let start = Instant::now();
        let r = f();
        calls.push(start.elapsed());
        r
    };
    let first = timed(&mut || streams[0].try_submit(slot(1.0, 2, 2)))
        .ok()
        .unwrap();
    let handed = Instant::now();
    assert!(eventually(|| streams[0].engine().queued() == 0), "it runs");
    // Stream 0 has one in flight: refused. Stream 1 gets the free queue place (the next
    // batch); stream 2 finds the queue full: refused.
    assert!(timed(&mut || streams[0].try_submit(slot(2.0, 2, 2))).is_err());
    let second = timed(&mut || streams[1].try_submit(slot(3.0, 2, 2)))
        .ok()
        .unwrap();
    let queued = Instant::now();
    let refused = timed(&mut || streams[2].try_submit(slot(4.0, 2, 2)));
    assert_eq!(
        refused.err().unwrap()[0].data[0],
        4.0,
        "the input comes back"
    );
    // Frames keep coming every 10 ms while the model is busy: each is skipped at once. (The
    // first run cannot end before `handed + run`; after it, stream 1's request leaves the
    // queue and stream 2 may hand over again.)
    let mut frames = 0;
    while handed.elapsed() < run * 3 / 4 {
        let r = timed(&mut || streams[2].try_submit(slot(5.0, 2, 2)));
        let at = handed.elapsed();
        assert!(r.is_err() || at >= run, "frame {frames} at {at:?}");
        frames += 1;
        thread::sleep(Duration::from_millis(10));
    }
    assert!(frames >= 5, "{frames}");
    assert_eq!(sum(first.wait(WAIT).unwrap()), [1.0]);
    assert!(handed.elapsed() < run * 2, "{:?}", handed.elapsed());
    assert_eq!(sum(second.wait(WAIT).unwrap()), [3.0]);
    // Held at most the run in progress plus its own.
    assert!(queued.elapsed() < run * 3, "{:?}", queued.elapsed());
    // Free again: handed over.
    let third = streams[0].try_submit(slot(6.0, 2, 2)).ok().unwrap();
    assert_eq!(sum(third.wait(WAIT).unwrap()), [6.0]);
    calls.sort();
    let median = calls[calls.len() / 2];
    assert!(median < Duration::from_millis(1), "median {median:?}");
    // Generous for a loaded 2-core machine; a call that waited for the model takes 200 ms.
    assert!(
        calls[calls.len() - 1] < Duration::from_millis(50),
        "{calls:?}"
    );
    assert_eq!(probe.batches(), [1, 1, 1]);
}

#[test]
fn a_failing_batch_fails_only_its_own_requests() {
    let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
    let loader = fake_loader(&probe, Duration::ZERO);
    let options = batched(2, Duration::from_secs(2));
    let (c1, c2) = (
        reg.client(key("a"), Arc::clone(&loader), options).unwrap(),
        reg.client(key("a"), Arc::clone(&loader), options).unwrap(),
    );
    for bad in [POISON, PANIC] {
        let (t1, t2) = (c1.submit(slot(bad, 2, 2)), c2.submit(slot(5.0, 2, 2)));
        for t in [&t1, &t2] {
            match t.wait(WAIT) {
                Err(EngineError::Inference(reason)) => {
                    assert!(
                        reason.contains("poisoned") || reason.contains("panicked"),
                        "{reason}"
                    )
                }
                other => panic!("expected an inference error, got {other:?}"),
            }
        }
        // The next batch runs normally.
        let (t1, t2) = (c1.submit(slot(1.0, 2, 2)), c2.submit(slot(2.0, 2, 2)));
        assert_eq!(sum(t1.wait(WAIT).unwrap()), [1.0]);
        assert_eq!(sum(t2.wait(WAIT).unwrap()), [2.0]);
    }
    assert_eq!(probe.batches(), [2, 2, 2, 2]);
    assert_eq!((c1.in_flight(), c2.in_flight()), (0, 0));
}

#[test]
fn a_bad_request_is_refused_without_reaching_the_model() {
    let (client, probe) = lone_client(Duration::ZERO, ClientOptions::default());
    let mut bad = slot(0.0, 4, 4);
    bad[0].data.pop();
    assert_eq!(
        client.submit(bad).wait(WAIT).unwrap_err(),
        EngineError::BadInput {
            index: 0,
            shape: vec![3, 4, 4],
            len: 47
        }
    );
    let zero = vec![Tensor::new(vec![3, 0, 4])];
    assert!(matches!(
        client.submit(zero).wait(WAIT),
        Err(EngineError::BadInput { index: 0, .. })
    ));
    let two = [slot(0.0, 4, 4), slot(0.0, 4, 4)].concat();
    assert_eq!(
        client.submit(two).wait(WAIT).unwrap_err(),
        EngineError::InputCount {
            expected: 1,
            got: 2
        }
    );
    assert!(probe.batches().is_empty());
}

/// A `w`×`h` image of bytes `value`, to become a `[3, input.1, input.0]` input.
fn pixels(value: u8, (w, h): (usize, usize), input: (usize, usize)) -> Inputs {
    let geometry = InputGeometry {
        width: input.0,
        height: input.1,
        ..InputGeometry::for_frame(w, h, input.0.max(input.1))
    };
    Inputs::Pixels(Pixels {
        rgb: vec![value; 3 * w * h],
        width: w,
        height: h,
        geometry,
        filter: ScaleFilter::Nearest,
        normalisation: Normalisation::for_contract(&ModelContract::default()),
    })
}

#[test]
fn pixel_requests_batch_by_input_size_whatever_their_source_size_and_never_with_tensors() {
    let (client, probe) = pixel_client(batched(8, Duration::ZERO));
    assert!(client.engine().takes_pixels());
    // Sources of three sizes becoming 64×36 inputs, a 32×32 one, and a tensor of 64×36.
    let requests = vec![
        pixels(1, (1920, 1080), (64, 36)),
        pixels(2, (640, 360), (64, 36)),
        pixels(3, (10, 10), (32, 32)),
        Inputs::Tensors(slot(4.0, 64, 36)),
        pixels(5, (128, 72), (64, 36)),
    ];
    let tickets = client.submit_inputs(requests);
    let answers: Vec<Done> = tickets.iter().map(|t| t.wait(WAIT).unwrap()).collect();
    let sums: Vec<f32> = answers.iter().map(|d| d.outputs[0].data[0]).collect();
    assert_eq!(
        sums,
        [
            3.0 * 1920.0 * 1080.0,
            2.0 * 3.0 * 640.0 * 360.0,
            3.0 * 3.0 * 100.0,
            4.0,
            5.0 * 3.0 * 128.0 * 72.0
        ]
    );
    assert_eq!(answers[0].outputs[1].data, [3.0, 36.0, 64.0]);
    let lens: Vec<usize> = answers.iter().map(|d| d.batch_len).collect();
    assert_eq!(lens, [3, 3, 1, 1, 3]);
    assert_eq!(probe.batches(), [3, 1, 1]);
    // Each gets its own inputs back: pixels as pixels, tensors as tensors.
    assert_eq!(answers[1].pixels.as_ref().map(|p| p.width), Some(640));
    assert!(answers[1].inputs.is_empty());
    assert!(answers[3].pixels.is_none());
    assert_eq!(answers[3].inputs[0].shape, [3, 36, 64]);
}

#[test]
fn a_pixel_request_to_a_backend_of_tensors_is_refused_and_tensors_run_as_before() {
    // The fake of `a` takes tensors only, as ONNX Runtime does.
    let (client, probe) = lone_client(Duration::ZERO, batched(4, Duration::ZERO));
    assert!(!client.engine().takes_pixels());
    let tickets = client.submit_inputs(vec![
        pixels(1, (8, 8), (32, 32)),
        Inputs::Tensors(slot(2.0, 4, 4)),
        Inputs::Tensors(slot(3.0, 4, 4)),
    ]);
    match tickets[0].wait(WAIT) {
        Err(EngineError::BadPixels(why)) => assert!(why.contains("f32 tensors only"), "{why}"),
        other => panic!("pixels to a tensor backend: {other:?}"),
    }
    assert_eq!(sum(tickets[1].wait(WAIT).unwrap()), [2.0]);
    let done = tickets[2].wait(WAIT).unwrap();
    assert_eq!((done.outputs[0].data[0], done.batch_len), (3.0, 2));
    assert!(done.pixels.is_none());
    assert_eq!(probe.batches(), [2]);
}

#[test]
fn bad_pixels_are_refused_without_reaching_the_model() {
    let (client, probe) = pixel_client(ClientOptions::default());
    let Inputs::Pixels(good) = pixels(1, (8, 8), (32, 32)) else {
        unreachable!()
    };
    let mut short = good.clone();
    short.rgb.pop();
    let mut too_large = good.clone();
    too_large.geometry.content_width = 33;
    let mut no_order = good.clone();
    no_order.normalisation.color_of_channel = [0, 0, 2];
    for (bad, says) in [
        (short, "3 RGB bytes per pixel"),
        (too_large, "does not fit"),
        (no_order, "not R, G and B once each"),
    ] {
        match client.submit_inputs(vec![bad.into()])[0].wait(WAIT) {
            Err(EngineError::BadPixels(why)) => assert!(why.contains(says), "{why}"),
            other => panic!("expected a refusal saying '{says}': {other:?}"),
        }
    }
    assert!(probe.batches().is_empty());
    assert!(
        client.submit_inputs(vec![good.into()])[0]
            .wait(WAIT)
            .is_ok()
    );
}

#[test]
fn model_swap_moves_the_stream_between_two_frames() {
    let (reg, probe) = (Registry::new(), Arc::new(Probe::default()));
    let loader = fake_loader(&probe, Duration::from_millis(20));
    let mut client = reg
        .client(key("a"), Arc::clone(&loader), ClientOptions::default())
        .unwrap();
    let other = reg
        .client(key("a"), Arc::clone(&loader), ClientOptions::default())
        .unwrap();
    let tag = |t: &Ticket| t.wait(WAIT).unwrap().outputs[2].data[0];
    let before = client.submit(slot(1.0, 2, 2));
    client.swap_model(key("b"));
    assert!(client.swap_pending());
    // Until the swap is applied, frames go to A.
    let during = client.submit(slot(1.0, 2, 2));
    assert_eq!(client.wait_swap(WAIT), Some(Ok(key("b"))));
    let after = client.submit(slot(1.0, 2, 2));
    assert_eq!((tag(&before), tag(&during), tag(&after)), (1.0, 1.0, 2.0));
    // Each answer names the model that produced it.
    assert!(Arc::ptr_eq(before.model(), during.model()));
    assert!(!Arc::ptr_eq(before.model(), after.model()));
    assert!(Arc::ptr_eq(after.model(), client.engine().model()));
    // The other stream keeps A.
    assert_eq!(tag(&other.submit(slot(1.0, 2, 2))), 1.0);

    // A model that does not load: the stream keeps B and hears why.
    client.swap_model(key("broken"));
    let failed = client.wait_swap(WAIT).unwrap().unwrap_err();
    assert_eq!(
        failed,
        EngineError::Load {
            path: PathBuf::from("/fake/broken.onnx"),
            source: LoadError::Other("not an ONNX model".into())
        }
    );
    assert!(failed.to_string().contains("/fake/broken.onnx"));
    assert!(failed.to_string().contains("not an ONNX model"));
    assert!(!client.swap_pending());
    assert_eq!(tag(&client.submit(slot(1.0, 2, 2))), 2.0);

    // Back to A, which `other` kept alive: shared, not loaded again.
    let loads = probe.loads.load(Ordering::SeqCst);
    let b = Arc::downgrade(client.engine());
    client.swap_model(key("a"));
    // poll_swap never waits; it applies the swap once the load has finished.
    assert!(eventually(
        || client.poll_swap().is_some() || !client.swap_pending()
    ));
    assert!(Arc::ptr_eq(client.engine(), other.engine()));
    assert_eq!(probe.loads.load(Ordering::SeqCst), loads);
    // B lost its last client: freed (on a background thread).
    assert!(eventually(|| b.upgrade().is_none()));
    assert!(eventually(|| probe.live.load(Ordering::SeqCst) == 1));
    assert_eq!(client.poll_swap(), None);
}

#[test]
fn a_request_queued_when_the_engine_goes_is_answered_stopped() {
    let (client, _) = lone_client(Duration::from_millis(100), ClientOptions::default());
    let running = client.submit(slot(1.0, 2, 2));
    assert!(eventually(|| client.engine().queued() == 0));
    let queued = client.submit(slot(2.0, 2, 2));
    drop(client);
    assert_eq!(sum(running.wait(WAIT).unwrap()), [1.0]);
    assert_eq!(queued.wait(WAIT).unwrap_err(), EngineError::Stopped);
}
