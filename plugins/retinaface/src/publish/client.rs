//! The MQTT side of `retinafacepublish`: the broker URL, TLS, and the publisher threads that
//! move messages from the [`Shared`] outbox to the broker, at least once and in order.
//!
//! Two threads per element: the **feeder** takes messages from the outbox while the window of
//! unacknowledged messages has room and hands them to the MQTT client; the **driver** runs the
//! connection (rumqttc's event loop), matches acknowledgements to messages and reconnects. The
//! window of unacknowledged messages is ours, not the client library's: after any connection
//! error the client is thrown away, a new one connects, and the whole window is sent again in
//! order before anything new, so a broker restart (which forgets the session) loses nothing. A
//! message whose acknowledgement was lost is sent twice; its `seq` lets consumers drop it.

use std::collections::VecDeque;
use std::io::BufReader;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use retinaface::publish::{Message, Shared};
use rumqttc::{
    Client, ConnectReturnCode, ConnectionError, Event, Incoming, LastWill, MqttOptions, Outgoing,
    QoS, RecvTimeoutError, TlsConfiguration, Transport,
};

/// Messages handed to the client and not acknowledged yet, at most.
const WINDOW: usize = 64;
/// First wait before reconnecting; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(50);

/// Where and how to connect, checked in `start()`.
#[derive(Clone)]
pub struct Connect {
    /// The `broker` property as given, for messages.
    pub url: String,
    pub host: String,
    pub port: u16,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
    pub qos: QoS,
    pub clean_session: bool,
    /// Retained `online` on every connection, `offline` as the last will.
    pub status_topic: String,
}

/// What a broker URL says.
#[derive(Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// User and password written in the URL.
    pub credentials: Option<(String, String)>,
}

/// Parses `mqtt://host[:port]` or `mqtts://host[:port]` (user and password may be in the URL;
/// the `username`/`password` properties win). The error names the value and what is expected.
pub fn parse_url(url: &str) -> Result<BrokerUrl, String> {
    let bad = |why: &str| {
        format!(
            "invalid broker URL '{url}': {why}; expected mqtt://host[:port] or mqtts://host[:port]"
        )
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let tls = match parsed.scheme() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        other => return Err(bad(&format!("unknown scheme '{other}'"))),
    };
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
        return Err(bad("a path or query is not allowed"));
    }
    let port = parsed.port().unwrap_or(if tls { 8883 } else { 1883 });
    let credentials = (!parsed.username().is_empty()).then(|| {
        (
            parsed.username().to_string(),
            parsed.password().unwrap_or("").to_string(),
        )
    });
    Ok(BrokerUrl {
        host,
        port,
        tls,
        credentials,
    })
}

/// The TLS configuration: the CA certificates of `ca_file` (PEM), or the system's when empty;
/// with a client certificate when `cert_file` and `key_file` are given.
pub fn tls_config(
    ca_file: &str,
    cert_file: &str,
    key_file: &str,
) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if ca_file.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err("no system CA certificates found for mqtts://; set ca-file".into());
        }
    } else {
        let certs = read_pem_certs(ca_file)?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("ca-file '{ca_file}': {e}"))?;
        }
    }
    // ring rather than aws-lc-rs: no CMake/C toolchain build of aws-lc. rustls 0.23.48 marks
    // it deprecated for lacking post-quantum key exchange, which a site's broker link does not
    // need (the broker, often mosquitto with OpenSSL, decides the groups anyway).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match (cert_file.is_empty(), key_file.is_empty()) {
        (true, true) => builder.with_no_client_auth(),
        (false, false) => {
            let certs = read_pem_certs(cert_file)?;
            let key = PrivateKeyDer::from_pem_file(key_file)
                .map_err(|e| format!("key-file '{key_file}': no private key read: {e}"))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("cert-file '{cert_file}' / key-file '{key_file}': {e}"))?
        }
        _ => return Err("a client certificate needs both cert-file and key-file".into()),
    };
    Ok(Arc::new(config))
}

fn read_pem_certs(path: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read '{path}': {e}"))?;
    let certs: Vec<_> = CertificateDer::pem_reader_iter(BufReader::new(file))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("'{path}' is not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!("'{path}' holds no PEM certificate"));
    }
    Ok(certs)
}

/// What the threads tell the element.
pub enum Report {
    /// Connected (again); the number of messages sent again.
    Connected { resent: usize },
    /// The connection failed or broke; retrying. Sent once per outage.
    Unreachable(String),
    /// The broker refused us for good (credentials): the threads stop.
    Refused(String),
}

/// Live facts for the `stats` property.
#[derive(Default)]
pub struct Link {
    pub connected: AtomicBool,
    pub connections: AtomicU64,
}

/// The window of unacknowledged messages, in the order they were handed to the client.
#[derive(Default)]
struct Window {
    /// Each with the packet id the client gave it (once it went out).
    entries: VecDeque<(Entry, Option<u16>)>,
    /// The client of the live connection; `None` while disconnected.
    client: Option<Client>,
}

struct Entry {
    message: Option<Message>,
    /// Counted as delivered in the outbox when acknowledged (false for our `online` status).
    counted: bool,
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

impl Entry {
    fn send(&self, client: &Client, qos: QoS) -> bool {
        client
            .try_publish(self.topic.clone(), qos, self.retain, self.payload.clone())
            .is_ok()
    }
}

struct Pump {
    window: Mutex<Window>,
    room: Condvar,
    stop: AtomicBool,
}

/// The running threads; [`Publisher::stop`] ends them.
pub struct Publisher {
    shared: Arc<Pump>,
    threads: Vec<JoinHandle<()>>,
}

impl Publisher {
    pub fn spawn(
        connect: Connect,
        outbox: Arc<Shared>,
        link: Arc<Link>,
        report: Arc<dyn Fn(Report) + Send + Sync>,
    ) -> Self {
        let shared = Arc::new(Pump {
            window: Mutex::new(Window::default()),
            room: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let feeder = {
            let (shared, outbox, qos) = (shared.clone(), outbox.clone(), connect.qos);
            std::thread::Builder::new()
                .name("retinaface-mqtt-feed".into())
                .spawn(move || feed(&shared, &outbox, qos))
                .expect("spawn thread")
        };
        let driver = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("retinaface-mqtt".into())
                .spawn(move || drive(&connect, &shared, &outbox, &link, &*report))
                .expect("spawn thread")
        };
        Self {
            shared,
            threads: vec![feeder, driver],
        }
    }

    /// Stops both threads; returns the messages still unacknowledged in the window.
    pub fn stop(self) -> usize {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.room.notify_all();
        for t in self.threads {
            let _ = t.join();
        }
        let window = self.shared.window.lock().unwrap();
        window.entries.iter().filter(|(e, _)| e.counted).count()
    }
}

/// Feeder: outbox → window → client, while connected and the window has room.
fn feed(shared: &Pump, outbox: &Shared, qos: QoS) {
    while !shared.stop.load(Ordering::SeqCst) {
        let room = {
            let mut window = shared.window.lock().unwrap();
            while window.client.is_none() || window.entries.len() >= WINDOW {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                window = shared.room.wait_timeout(window, TICK).unwrap().0;
            }
            WINDOW - window.entries.len()
        };
        let messages = outbox.take(room, TICK);
        if messages.is_empty() {
            continue;
        }
        let mut window = shared.window.lock().unwrap();
        for message in messages {
            let entry = Entry {
                topic: message.topic.clone(),
                payload: message.payload.clone(),
                retain: message.retain,
                counted: true,
                message: Some(message),
            };
            // Sent under the lock, so the window's order is the order on the wire. Without a
            // client (the connection broke meanwhile) it waits in the window for the resend.
            if let Some(client) = &window.client {
                entry.send(client, qos);
            }
            window.entries.push_back((entry, None));
        }
    }
}

/// Driver: connects, resends the window, matches acknowledgements, reconnects.
fn drive(connect: &Connect, shared: &Pump, outbox: &Shared, link: &Link, report: &dyn Fn(Report)) {
    let mut backoff = MIN_BACKOFF;
    let mut reported = false;
    while !shared.stop.load(Ordering::SeqCst) {
        let (client, mut connection) = Client::new(options(connect), WINDOW * 2 + 8);
        // Events are small and should leave at once, not wait for Nagle's algorithm.
        let mut network = connection.eventloop.network_options();
        network.set_tcp_nodelay(true);
        network.set_connection_timeout(5);
        connection.eventloop.set_network_options(network);
        // Connect: the first event is the ConnAck or an error.
        let failure = loop {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            match connection.recv_timeout(TICK) {
                Ok(Ok(Event::Incoming(Incoming::ConnAck(_)))) => break None,
                Ok(Ok(_)) | Err(RecvTimeoutError::Timeout) => continue,
                Ok(Err(e)) => break Some(e),
                Err(RecvTimeoutError::Disconnected) => break Some(ConnectionError::RequestsDone),
            }
        };
        if let Some(e) = failure {
            if let ConnectionError::ConnectionRefused(
                code @ (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized),
            ) = e
            {
                let user = connect
                    .credentials
                    .as_ref()
                    .map_or("(none)".to_string(), |(u, _)| format!("'{u}'"));
                report(Report::Refused(format!(
                    "broker {} refused the connection ({code:?}) for username {user}, client id '{}': check username and password",
                    connect.url, connect.client_id
                )));
                return;
            }
            if !reported {
                report(Report::Unreachable(format!(
                    "cannot connect to broker {}: {e}",
                    connect.url
                )));
                reported = true;
            }
            sleep_unless_stopped(shared, backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        backoff = MIN_BACKOFF;
        reported = false;
        link.connected.store(true, Ordering::SeqCst);
        link.connections.fetch_add(1, Ordering::SeqCst);
        let resent = {
            let mut window = shared.window.lock().unwrap();
            // Status first, then everything not acknowledged, in order.
            let status = Entry {
                message: None,
                counted: false,
                topic: connect.status_topic.clone(),
                payload: b"online".to_vec(),
                retain: true,
            };
            window.entries.push_front((status, None));
            for (entry, pkid) in window.entries.iter_mut() {
                *pkid = None;
                entry.send(&client, connect.qos);
            }
            window.client = Some(client);
            window.entries.len() - 1
        };
        shared.room.notify_all();
        report(Report::Connected { resent });
        // Connected: until an error or stop.
        let error = loop {
            if shared.stop.load(Ordering::SeqCst) {
                break None;
            }
            match connection.recv_timeout(TICK) {
                Ok(Ok(event)) => acknowledge(shared, outbox, connect.qos, event),
                Err(RecvTimeoutError::Timeout) => {}
                Ok(Err(e)) => break Some(e.to_string()),
                Err(RecvTimeoutError::Disconnected) => break Some("client closed".into()),
            }
        };
        link.connected.store(false, Ordering::SeqCst);
        {
            let mut window = shared.window.lock().unwrap();
            window.client = None;
            // Our own status is sent again on the next connection.
            window.entries.retain(|(e, _)| e.message.is_some());
        }
        if let Some(e) = error {
            report(Report::Unreachable(format!(
                "lost the connection to broker {}: {e}",
                connect.url
            )));
            reported = true;
        }
    }
}

/// One event of a live connection: a publish went out (it gets its packet id), or one was
/// acknowledged (it leaves the window and counts as delivered).
fn acknowledge(shared: &Pump, outbox: &Shared, qos: QoS, event: Event) {
    let mut window = shared.window.lock().unwrap();
    let done = match event {
        Event::Outgoing(Outgoing::Publish(pkid)) => {
            let Some(i) = window.entries.iter().position(|(_, p)| p.is_none()) else {
                return;
            };
            if qos == QoS::AtMostOnce {
                Some(i)
            } else {
                window.entries[i].1 = Some(pkid);
                None
            }
        }
        Event::Incoming(Incoming::PubAck(ack)) if qos == QoS::AtLeastOnce => window
            .entries
            .iter()
            .position(|(_, p)| *p == Some(ack.pkid)),
        Event::Incoming(Incoming::PubComp(ack)) if qos == QoS::ExactlyOnce => window
            .entries
            .iter()
            .position(|(_, p)| *p == Some(ack.pkid)),
        _ => None,
    };
    if let Some(i) = done {
        let (entry, _) = window.entries.remove(i).expect("found above");
        drop(window);
        if entry.counted {
            outbox.delivered(1);
        }
        shared.room.notify_all();
    }
}

fn options(connect: &Connect) -> MqttOptions {
    let mut o = MqttOptions::new(&connect.client_id, &connect.host, connect.port);
    o.set_keep_alive(Duration::from_secs(10))
        .set_clean_session(connect.clean_session)
        .set_inflight(WINDOW as u16 + 1)
        .set_max_packet_size(16 << 20, 16 << 20)
        .set_last_will(LastWill::new(
            &connect.status_topic,
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
    if let Some((user, password)) = &connect.credentials {
        o.set_credentials(user, password);
    }
    if let Some(tls) = &connect.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    o
}

fn sleep_unless_stopped(shared: &Pump, duration: Duration) {
    let mut left = duration;
    while !left.is_zero() && !shared.stop.load(Ordering::SeqCst) {
        let step = left.min(TICK);
        std::thread::sleep(step);
        left -= step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_and_bad_ones_name_the_value() {
        let url = |host: &str, port, tls, credentials| BrokerUrl {
            host: host.into(),
            port,
            tls,
            credentials,
        };
        assert_eq!(
            parse_url("mqtt://localhost").unwrap(),
            url("localhost", 1883, false, None)
        );
        assert_eq!(
            parse_url("mqtts://u:p@10.0.0.1:9000/").unwrap(),
            url("10.0.0.1", 9000, true, Some(("u".into(), "p".into())))
        );
        assert_eq!(parse_url("mqtts://[::1]").unwrap().host, "::1");
        for bad in [
            "localhost:1883",
            "http://x",
            "mqtt://",
            "mqtt://x/topic",
            "mqtt://x:99999",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
    }
}
