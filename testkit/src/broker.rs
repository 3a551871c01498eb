//! A real MQTT broker for tests: Debian's `mosquitto` (scripts/setup.sh installs it), started on
//! a free loopback port with its own configuration and persistence folder, killed when the
//! [`Broker`] is dropped (a failing test too); and a [`Subscriber`] that collects what arrives,
//! with deadlines on every wait.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a broker may take to accept connections after it is started.
const START_DEADLINE: Duration = Duration::from_secs(10);

pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    /// A broker on a free port accepting anonymous clients.
    pub fn start() -> Self {
        Self::start_with("allow_anonymous true\n")
    }

    /// A broker whose listener gets `extra` configuration lines (TLS files, password file, …).
    /// Persistence is on (in the broker's own folder), so a [`Broker::stop`] +
    /// [`Broker::restart`] keeps subscriptions and their queued messages, as a real broker does.
    pub fn start_with(extra: &str) -> Self {
        Self::start_on(free_port(), extra)
    }

    /// [`Broker::start_with`] on `port`.
    pub fn start_on(port: u16, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        // Started as root, mosquitto drops to its own user: it must still write its persistence.
        open_to_all(dir.path());
        let conf = format!(
            "listener {port} 127.0.0.1\npersistence true\npersistence_location {}/\nlog_dest stderr\nlog_type error\nlog_type warning\n{extra}",
            dir.path().display()
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap();
        let mut broker = Self {
            port,
            dir,
            child: None,
        };
        broker.restart();
        broker
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The broker's folder (for certificates and password files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the broker (SIGTERM: it saves its persistence, as on a service restart) and waits
    /// for it to exit (at most 10 s, then SIGKILL).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the broker (again) on the same port; waits until it accepts connections.
    pub fn restart(&mut self) {
        self.stop();
        let conf: PathBuf = self.dir.path().join("mosquitto.conf");
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start mosquitto: run scripts/setup.sh (installs Debian's mosquitto)");
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("mosquitto exited at start ({status}): {err}");
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on port {} within {START_DEADLINE:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Makes `path` readable and writable by everyone: mosquitto started as root runs as the
/// `mosquitto` user, and reads certificates and writes persistence there.
pub fn open_to_all(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
}

/// A loopback port nobody listens on (at the time of asking).
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One message as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub at: Instant,
    /// Wall clock at arrival (for latencies against a time inside the message).
    pub wall: std::time::SystemTime,
}

impl Received {
    /// The payload as JSON (panics with the payload when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "{} is not JSON ({e}): {}",
                self.topic,
                String::from_utf8_lossy(&self.payload)
            )
        })
    }
}

type Inbox = Arc<(Mutex<Vec<Received>>, Condvar)>;

/// A QoS 1 subscriber with a persistent session on a broker, collecting every message of
/// `filter` on a thread; stops when dropped.
pub struct Subscriber {
    inbox: Inbox,
    client: rumqttc::Client,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    /// Subscribes to `filter` on the broker at 127.0.0.1:`port`; returns once the broker
    /// confirmed the subscription (panics after 10 s).
    pub fn connect(port: u16, filter: &str) -> Self {
        use rumqttc::{Event, Incoming, MqttOptions, QoS};
        let id = format!("test-subscriber-{}-{port}", std::process::id());
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut connection) = rumqttc::Client::new(options, 64);
        let inbox: Inbox = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let subscribed = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let (inbox, subscribed, client, filter) = (
                inbox.clone(),
                subscribed.clone(),
                client.clone(),
                filter.to_string(),
            );
            std::thread::spawn(move || {
                for event in connection.iter() {
                    match event {
                        Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                            // Again on every connection: harmless when the session kept it.
                            let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                        }
                        Ok(Event::Incoming(Incoming::SubAck(_))) => {
                            *subscribed.0.lock().unwrap() = true;
                            subscribed.1.notify_all();
                        }
                        Ok(Event::Incoming(Incoming::Publish(p))) => {
                            inbox.0.lock().unwrap().push(Received {
                                topic: p.topic.clone(),
                                payload: p.payload.to_vec(),
                                at: Instant::now(),
                                wall: std::time::SystemTime::now(),
                            });
                            inbox.1.notify_all();
                        }
                        Ok(_) => {}
                        Err(rumqttc::ConnectionError::RequestsDone) => break,
                        // Broker down: retry, slowly enough not to spin.
                        Err(_) => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut done = subscribed.0.lock().unwrap();
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no SUBACK for {filter} within 10 s");
            done = subscribed.1.wait_timeout(done, left).unwrap().0;
        }
        Self {
            inbox,
            client,
            thread: Some(thread),
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inbox.0.lock().unwrap().clone()
    }

    /// Waits until `done(received so far)` holds; false when `timeout` passed first.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut inbox = self.inbox.0.lock().unwrap();
        loop {
            if done(&inbox) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            inbox = self.inbox.1.wait_timeout(inbox, left).unwrap().0;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
        // The event loop ends once the client is gone; do not wait on a broker that is down.
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}
