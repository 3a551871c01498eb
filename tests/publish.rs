//! `retinafacepublish` against a real broker: Debian's mosquitto, one per test on a free loopback
//! port (killed when the test ends, failing or not), and a subscriber that checks what arrives.
//! Every wait has a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use gst::prelude::*;
use retinaface_testkit::broker::{Broker, Received, Subscriber, free_port, open_to_all};
use retinaface_testkit::*;
use serde_json::Value;

/// `face_noface.mov` (960×540, 24 fps): one face until ≈ 2.4 s, then none.
const CLIP: &str = "face_noface.mov";
const WAIT: Duration = Duration::from_secs(20);

/// The decoded clip through detector and tracker into `publish` (its properties) and `sink`.
fn clip_pipeline(publish: &str, sink: &str) -> gst::Pipeline {
    init();
    let description = format!(
        "filesrc location={} ! decodebin ! video/x-raw ! videoconvert ! retinafacedetect ! \
         retinafacetrack ! retinafacepublish name=publish {publish} ! {sink}",
        media(CLIP)
    );
    gst::parse::launch(&description)
        .unwrap_or_else(|e| panic!("{description}: {e}"))
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// Plays `pipeline` to EOS (`during` runs on another thread meanwhile), then reads the
/// publisher's stats and stops it.
fn play_to_end(
    pipeline: &gst::Pipeline,
    during: impl FnOnce() + Send,
) -> (Result<Played, String>, gst::Structure) {
    let played = std::thread::scope(|s| {
        s.spawn(during);
        play(pipeline.upcast_ref(), Duration::from_secs(120), |_| {})
    });
    let stats = pipeline
        .by_name("publish")
        .unwrap()
        .property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    (played, stats)
}

fn on(topic: &str, received: &[Received]) -> Vec<Value> {
    received
        .iter()
        .filter(|r| r.topic == topic)
        .map(Received::json)
        .collect()
}

/// The messages with repeats (same seq) dropped, in seq order; panics on a gap.
fn deduplicated(messages: &[Value]) -> Vec<Value> {
    let mut by_seq = BTreeMap::new();
    for m in messages {
        by_seq
            .entry(m["seq"].as_u64().unwrap())
            .or_insert(m.clone());
    }
    let seqs: Vec<u64> = by_seq.keys().copied().collect();
    let expected: Vec<u64> = (0..seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "seq gap");
    by_seq.into_values().collect()
}

/// Per track ID, the event types in order.
fn per_track(events: &[Value]) -> BTreeMap<u64, Vec<String>> {
    let mut tracks: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for e in events {
        tracks
            .entry(e["id"].as_u64().unwrap())
            .or_default()
            .push(e["type"].as_str().unwrap().to_string());
    }
    tracks
}

fn ends_done(received: &[Received], topic: &str) -> bool {
    let events: Vec<Value> = received
        .iter()
        .filter(|r| r.topic == topic)
        .map(Received::json)
        .collect();
    let tracks = per_track(&events);
    !tracks.is_empty() && tracks.values().all(|t| t.iter().any(|k| k == "end"))
}

#[test]
fn a_clip_gives_one_new_and_one_end_per_track_with_a_jpeg_of_the_face() {
    let broker = Broker::start();
    let subscriber = Subscriber::connect(broker.port, "retinaface/door/#");
    let pipeline = clip_pipeline(
        &format!("broker={} camera=door end-timeout=1000", broker.url()),
        "fakesink",
    );
    let (played, stats) = play_to_end(&pipeline, || {});
    let played = played.unwrap();
    assert!(played.warnings.is_empty(), "{:?}", played.warnings);
    assert!(
        subscriber.wait_until(WAIT, |r| ends_done(r, "retinaface/door/events")),
        "no end events: {:?}",
        subscriber.received()
    );
    let received = subscriber.received();
    let events = deduplicated(&on("retinaface/door/events", &received));
    let tracks = per_track(&events);
    assert_eq!(tracks.len(), 1, "one person in the clip: {tracks:?}");
    for kinds in tracks.values() {
        assert_eq!(kinds.first().map(String::as_str), Some("new"));
        assert_eq!(kinds.last().map(String::as_str), Some("end"));
        assert_eq!(kinds.iter().filter(|k| *k == "new").count(), 1);
        assert_eq!(kinds.iter().filter(|k| *k == "end").count(), 1);
    }
    let end = events.iter().find(|e| e["type"] == "end").unwrap();
    // The face leaves at ≈ 2.4 s and the clip goes on: it left (1 s unseen), before EOS.
    assert_eq!(end["reason"], "left", "{end}");
    assert_eq!(end["camera"], "door");
    let (start, last) = (
        end["start"]["pts"].as_u64().unwrap(),
        end["last"]["pts"].as_u64().unwrap(),
    );
    assert!(
        start < 500_000_000 && (2_000_000_000..3_000_000_000).contains(&last),
        "{end}"
    );
    assert!(end["frames"].as_u64().unwrap() > 30, "{end}");
    assert!(end["best"]["quality"]["overall"].as_f64().unwrap() > 0.0);
    // The snapshot: a JPEG in which the detector finds a face.
    let data = end["snapshot"]["data"]
        .as_str()
        .expect("snapshot inside the event");
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    let picture = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap();
    assert!(picture.width().max(picture.height()) <= 256);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snapshot.jpg");
    std::fs::write(&file, &jpeg).unwrap();
    let found = run(&format!(
        "filesrc location={} ! jpegdec ! videoconvert ! retinafacedetect ! appsink name=sink",
        file.display()
    ))
    .unwrap()
    .faces();
    assert_eq!(found[0].len(), 1, "one face in the snapshot");
    // Status and stats.
    assert!(
        received
            .iter()
            .any(|r| r.topic == "retinaface/door/status" && r.payload == b"online")
    );
    assert_eq!(stats.get::<u64>("dropped-events").unwrap(), 0);
    assert_eq!(stats.get::<u64>("queued").unwrap(), 0, "{stats}");
    assert_eq!(
        stats.get::<u64>("delivered").unwrap(),
        stats.get::<u64>("pushed").unwrap(),
        "{stats}"
    );
}

/// Frames (and events) of the clip, played in real time, with `interrupt` acting on the broker
/// meanwhile; checks both topics arrive complete (no seq gap after de-duplication) over
/// `connections` connections.
fn complete_despite(
    connections: u64,
    broker: &mut Broker,
    subscriber: &Subscriber,
    interrupt: impl FnOnce(&mut Broker) + Send,
) {
    let port = broker.port;
    let pipeline = clip_pipeline(
        &format!(
            "broker=mqtt://127.0.0.1:{port} camera=door frames=true end-timeout=1000 drain-timeout=15000"
        ),
        "fakesink sync=true",
    );
    let (played, stats) = play_to_end(&pipeline, || interrupt(broker));
    let played = played.unwrap();
    assert!(
        played.warnings.iter().any(|w| w.contains("broker")),
        "the outage is reported: {:?}",
        played.warnings
    );
    assert!(subscriber.wait_until(WAIT, |r| ends_done(r, "retinaface/door/events")));
    let received = subscriber.received();
    let frames = deduplicated(&on("retinaface/door/frames", &received));
    let decoded = run(&format!(
        "filesrc location={} ! decodebin ! video/x-raw ! appsink name=sink",
        media(CLIP)
    ))
    .unwrap()
    .samples
    .len();
    assert_eq!(frames.len(), decoded, "a message per frame");
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f["frame"].as_u64(), Some(i as u64), "in order");
    }
    let events = deduplicated(&on("retinaface/door/events", &received));
    let tracks = per_track(&events);
    assert!(!tracks.is_empty());
    for kinds in tracks.values() {
        assert_eq!(kinds.iter().filter(|k| *k == "new").count(), 1, "{kinds:?}");
        assert_eq!(kinds.iter().filter(|k| *k == "end").count(), 1, "{kinds:?}");
    }
    let sessions: BTreeSet<u64> = frames
        .iter()
        .map(|f| f["session"].as_u64().unwrap())
        .collect();
    assert_eq!(sessions.len(), 1);
    assert_eq!(stats.get::<u64>("dropped-frames").unwrap(), 0, "{stats}");
    assert_eq!(
        stats.get::<u64>("connections").unwrap(),
        connections,
        "{stats}"
    );
}

#[test]
fn broker_restarted_mid_stream_loses_no_message() {
    let mut broker = Broker::start();
    let subscriber = Subscriber::connect(broker.port, "retinaface/door/#");
    complete_despite(2, &mut broker, &subscriber, |broker| {
        std::thread::sleep(Duration::from_millis(1200));
        broker.stop();
        std::thread::sleep(Duration::from_millis(1500));
        broker.restart();
    });
}

#[test]
fn broker_down_at_start_gets_everything_once_it_is_up() {
    let mut broker = Broker::start();
    // The subscription is kept by the broker's persistence while it is down.
    let subscriber = Subscriber::connect(broker.port, "retinaface/door/#");
    broker.stop();
    complete_despite(1, &mut broker, &subscriber, |broker| {
        std::thread::sleep(Duration::from_millis(1500));
        broker.restart();
    });
}

/// How long the slow subscriber dawdles over each message it takes.
const SLOW: Duration = Duration::from_millis(80);

/// A QoS 1 subscriber that sleeps [`SLOW`] after every message it takes (its event loop, acks
/// included, stalls meanwhile), so the broker must queue for it; keeps what it took.
struct SlowSubscriber {
    taken: Arc<Mutex<Vec<Received>>>,
    client: rumqttc::Client,
}

impl SlowSubscriber {
    /// Subscribes to `filter`; returns once the broker confirmed it (panics after 10 s).
    fn connect(port: u16, filter: &str) -> Self {
        use rumqttc::{Event, Incoming, MqttOptions, QoS};
        let id = format!("slow-subscriber-{}-{port}", std::process::id());
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut connection) = rumqttc::Client::new(options, 16);
        client.subscribe(filter, QoS::AtLeastOnce).unwrap();
        let taken = Arc::new(Mutex::new(Vec::new()));
        let (subscribed, suback) = std::sync::mpsc::channel();
        let inbox = taken.clone();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        let _ = subscribed.send(());
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        inbox.lock().unwrap().push(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            at: Instant::now(),
                            wall: std::time::SystemTime::now(),
                        });
                        std::thread::sleep(SLOW);
                    }
                    Ok(_) => {}
                    // Disconnected at the end of the test (or the broker is gone): done.
                    Err(_) => break,
                }
            }
        });
        suback
            .recv_timeout(Duration::from_secs(10))
            .expect("no SUBACK for the slow subscriber within 10 s");
        Self { taken, client }
    }

    fn taken(&self) -> Vec<Received> {
        self.taken.lock().unwrap().clone()
    }

    /// Polls until `done(taken so far)` holds; false when `timeout` passed first.
    fn wait_until(&self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.taken()) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }
}

impl Drop for SlowSubscriber {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

/// Distinct `seq` numbers on `topic`.
fn distinct_seqs(topic: &str, received: &[Received]) -> usize {
    on(topic, received)
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect::<BTreeSet<u64>>()
        .len()
}

#[test]
fn a_slow_subscriber_gets_every_event_in_order_and_the_pipeline_never_waits() {
    const EVENTS: &str = "retinaface/door/events";
    const FRAMES: &str = "retinaface/door/frames";
    let broker = Broker::start();
    let subscriber = SlowSubscriber::connect(broker.port, "retinaface/door/#");
    let pipeline = clip_pipeline(
        &format!(
            "broker={} camera=door frames=true end-timeout=1000",
            broker.url()
        ),
        "fakesink",
    );
    let started = Instant::now();
    let (played, stats) = play_to_end(&pipeline, || {});
    let wall = started.elapsed();
    let taken_at_eos = subscriber.taken().len();
    let played = played.unwrap();
    assert!(played.warnings.is_empty(), "{:?}", played.warnings);
    let decoded = run(&format!(
        "filesrc location={} ! decodebin ! video/x-raw ! appsink name=sink",
        media(CLIP)
    ))
    .unwrap()
    .samples
    .len();
    assert!(
        subscriber.wait_until(Duration::from_secs(25), |r| {
            ends_done(r, EVENTS) && distinct_seqs(FRAMES, r) == decoded
        }),
        "the slow subscriber did not get everything: {} frame messages of {decoded}, events {:?}",
        distinct_seqs(FRAMES, &subscriber.taken()),
        on(EVENTS, &subscriber.taken())
    );
    let received = subscriber.taken();
    let frames = deduplicated(&on(FRAMES, &received));
    assert_eq!(frames.len(), decoded, "a message per frame");
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f["frame"].as_u64(), Some(i as u64), "in order");
    }
    let events = deduplicated(&on(EVENTS, &received));
    let tracks = per_track(&events);
    assert_eq!(tracks.len(), 1, "one person in the clip: {tracks:?}");
    for kinds in tracks.values() {
        assert_eq!(kinds.first().map(String::as_str), Some("new"), "{kinds:?}");
        assert_eq!(kinds.last().map(String::as_str), Some("end"), "{kinds:?}");
        assert_eq!(kinds.iter().filter(|k| *k == "end").count(), 1, "{kinds:?}");
    }
    // The pipeline did not wait for the subscriber: it was done before the subscriber could
    // have slept through what it took, and the subscriber was still behind at EOS.
    let sleeping = SLOW * received.len() as u32;
    eprintln!(
        "pipeline {wall:?}; subscriber took {taken_at_eos} messages by EOS, {} in all, sleeping {sleeping:?}",
        received.len()
    );
    assert!(
        wall < sleeping,
        "the pipeline took {wall:?}, the subscriber's sleeps alone {sleeping:?}"
    );
    assert!(
        taken_at_eos < received.len(),
        "the subscriber had already taken all {} messages at EOS",
        received.len()
    );
    assert_eq!(stats.get::<u64>("dropped-frames").unwrap(), 0, "{stats}");
    assert_eq!(stats.get::<u64>("dropped-events").unwrap(), 0, "{stats}");
}

#[test]
fn a_full_queue_drops_frame_messages_first_and_warns_with_counts() {
    // Nobody listens on the port: everything queues.
    let port = free_port();
    let pipeline = clip_pipeline(
        &format!(
            "broker=mqtt://127.0.0.1:{port} camera=door frames=true max-queue=8 drain-timeout=0 end-timeout=1000"
        ),
        "fakesink",
    );
    let (played, stats) = play_to_end(&pipeline, || {});
    let played = played.unwrap();
    assert!(
        played
            .warnings
            .iter()
            .any(|w| w.contains(&format!("127.0.0.1:{port}")) && w.contains("cannot connect")),
        "{:?}",
        played.warnings
    );
    let dropped: Vec<&String> = played
        .warnings
        .iter()
        .filter(|w| w.contains("queue full") && w.contains("per-frame messages"))
        .collect();
    assert!(!dropped.is_empty(), "{:?}", played.warnings);
    assert!(played.warnings.iter().any(|w| w.contains("not delivered")));
    let frames = stats.get::<u64>("dropped-frames").unwrap();
    assert!(frames > 50, "{stats}");
    // new + end of the one person: kept, the frames made room.
    assert_eq!(stats.get::<u64>("dropped-events").unwrap(), 0, "{stats}");
    assert_eq!(stats.get::<u64>("queued").unwrap(), 8, "{stats}");
    assert_eq!(stats.get::<u64>("delivered").unwrap(), 0, "{stats}");
    assert!(!stats.get::<bool>("connected").unwrap());
}

/// A short synthetic stream (no faces needed) into `retinafacepublish` with `props`, played in
/// real time; the run's result.
fn short_stream(props: &str) -> Result<Played, String> {
    init();
    let description = format!(
        "videotestsrc num-buffers=50 ! video/x-raw,format=I420,width=64,height=64,framerate=25/1 ! \
         retinafacepublish {props} ! fakesink sync=true"
    );
    let pipeline = gst::parse::launch(&description).unwrap();
    let played = play(&pipeline, Duration::from_secs(30), |_| {});
    pipeline.set_state(gst::State::Null).unwrap();
    played
}

#[test]
fn a_malformed_broker_url_fails_the_start_naming_it() {
    for url in ["htp://localhost", "localhost:1883", "mqtt://host/with/path"] {
        let error = short_stream(&format!("broker={url}")).unwrap_err();
        assert!(error.contains(&format!("'{url}'")), "{url}: {error}");
        assert!(
            error.contains("mqtt://host[:port]"),
            "says what to write: {error}"
        );
    }
}

#[test]
fn rejected_credentials_fail_naming_the_username() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwords");
    let status = std::process::Command::new("mosquitto_passwd")
        .args(["-b", "-c", passwords.to_str().unwrap(), "alice", "secret"])
        .status()
        .unwrap();
    assert!(status.success());
    let broker = Broker::start_with(&format!(
        "allow_anonymous false\npassword_file {}\n",
        passwords.display()
    ));
    let error = short_stream(&format!(
        "broker={} username=alice password=wrong",
        broker.url()
    ))
    .unwrap_err();
    assert!(
        error.contains("'alice'") && error.contains("password"),
        "{error}"
    );
    // The right password works.
    let subscriber_free = short_stream(&format!(
        "broker={} username=alice password=secret drain-timeout=5000",
        broker.url()
    ));
    assert!(subscriber_free.is_ok(), "{subscriber_free:?}");
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with the openssl command.
fn make_certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    // mosquitto started as root reads them as its own user.
    open_to_all(dir);
    for file in ["ca.pem", "server.pem", "server.key"] {
        open_to_all(&dir.join(file));
    }
}

#[test]
fn tls_with_a_certificate_the_test_makes_delivers_and_a_missing_ca_file_is_named() {
    let certs = tempfile::tempdir().unwrap();
    make_certificates(certs.path());
    let tls_port = free_port();
    let d = certs.path().display();
    // A plain listener (the subscriber's) and a TLS one (the publisher's).
    let broker = Broker::start_with(&format!(
        "allow_anonymous true\nlistener {tls_port} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
    ));
    let subscriber = Subscriber::connect(broker.port, "retinaface/door/#");
    let played = short_stream(&format!(
        "broker=mqtts://127.0.0.1:{tls_port} ca-file={d}/ca.pem camera=door frames=true drain-timeout=5000"
    ))
    .unwrap();
    assert!(played.warnings.is_empty(), "{:?}", played.warnings);
    assert!(subscriber.wait_until(WAIT, |r| on("retinaface/door/frames", r).len() == 50));
    let error = short_stream(&format!(
        "broker=mqtts://127.0.0.1:{tls_port} ca-file={d}/missing.pem"
    ))
    .unwrap_err();
    assert!(error.contains(&format!("{d}/missing.pem")), "{error}");
}

#[test]
fn identified_tracks_carry_their_name_within_a_second_and_on_their_end() {
    // The site's chain: detect → track → identify (a library of the man, from another clip of
    // him) → publish. The name goes out as soon as the track is named.
    let library = tempfile::tempdir().unwrap();
    for (i, f) in clips::frames("single_face.mp4", 1, 0.0, 10.0, 2)
        .iter()
        .enumerate()
    {
        clips::save_png(f, &library.path().join(format!("Man/{i}.png")));
    }
    let broker = Broker::start();
    let subscriber = Subscriber::connect(broker.port, "retinaface/door/#");
    init();
    let description = format!(
        "filesrc location={} ! decodebin ! video/x-raw ! videoconvert ! retinafacedetect ! \
         retinafacetrack ! retinafaceidentify library={} ! retinafacepublish name=publish \
         broker={} camera=door end-timeout=1000 ! fakesink",
        media(CLIP),
        library.path().display(),
        broker.url()
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let (played, _) = play_to_end(&pipeline, || {});
    played.unwrap();
    assert!(
        subscriber.wait_until(WAIT, |r| ends_done(r, "retinaface/door/events")),
        "no end events: {:?}",
        subscriber.received()
    );
    let events = deduplicated(&on("retinaface/door/events", &subscriber.received()));
    let named: Vec<&Value> = events.iter().filter(|e| e["name"] == "Man").collect();
    // The track is usually named on its first frame (its `new` event); else an `update` says so.
    let first_named = named.first().expect("no event names the man");
    assert!(
        first_named["type"] == "new" || first_named["type"] == "update",
        "{first_named}"
    );
    assert!(first_named["similarity"].as_f64().unwrap() >= 0.5);
    let end = events.iter().find(|e| e["type"] == "end").unwrap();
    assert_eq!(end["name"], "Man", "{end}");
    // Named within a second of the track's start, not at the next update interval.
    let (start, named_at) = (
        first_named["start"]["pts"].as_u64().unwrap(),
        first_named["last"]["pts"].as_u64().unwrap(),
    );
    assert!(named_at - start < 1_000_000_000, "{first_named}");
}
