use super::*;
use crate::checkpoint::{CheckpointBarrier, SnapshotKind};
use crate::network::channel::channel;
use crate::network::channel::{ChannelReceiver, Message, TaskWaker, TryRecv};
use crate::network::input_gate::{GateEvent, InputGate};
use crate::network::partitioner::Partitioner;
use crate::network::record_writer::RecordWriterOutput;
use crate::taskexecutor::output::{ChainControl, CheckpointEvent, Output};
use brisk_core::{StreamRecord, Watermark, WatermarkStatus};
use proptest::prelude::*;
use std::io::{Read, Write};
use std::sync::atomic::AtomicUsize;
use std::thread;
use std::time::Instant;

/// A guard against hangs, not a timing assertion: every wait here ends far sooner.
const PATIENCE: Duration = Duration::from_secs(30);

fn pair() -> (ConnectionManager, ConnectionManager) {
    (ConnectionManager::bind("127.0.0.1:0").unwrap(), ConnectionManager::bind("127.0.0.1:0").unwrap())
}

fn barrier(id: u64, overtaking: bool) -> CheckpointBarrier {
    CheckpointBarrier {
        id,
        timestamp: 0,
        kind: SnapshotKind::Checkpoint,
        stop: None,
        target: std::path::Path::new("/tmp").into(),
        remote: None,
        overtaking,
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// The next message of a channel, waiting for it; `None` once the channel is disconnected.
fn recv<T>(rx: &ChannelReceiver<T>, waker: &TaskWaker) -> Option<Message<T>> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match rx.try_recv() {
            TryRecv::Message(message) => return Some(message),
            TryRecv::Disconnected => return None,
            TryRecv::Empty => {
                assert!(Instant::now() < deadline, "gave up waiting for a message");
                waker.wait_until(Some(Instant::now() + Duration::from_millis(50)));
            }
        }
    }
}

/// What a task would see of a gate event, comparable across runs.
fn describe<T: std::fmt::Debug>(event: &GateEvent<T>) -> String {
    match event {
        GateEvent::Records(records, _) => {
            format!("{:?}", records.iter().map(|r| (&r.value, r.timestamp)).collect::<Vec<_>>())
        }
        GateEvent::Watermark(w) => format!("watermark {}", w.0),
        GateEvent::Status(s) => format!("status {s:?}"),
        GateEvent::Barrier { barrier, ahead, .. } => format!("barrier {} ahead={ahead}", barrier.id),
        GateEvent::BarrierPassed(_) => "passed".into(),
        GateEvent::ChannelEnded(_) => "channel ended".into(),
        GateEvent::Progress => "progress".into(),
        GateEvent::Nothing => "nothing".into(),
        GateEvent::Finished => "finished".into(),
    }
}

/// Reads every gate to its end, all on one waker; the events per gate.
fn drain_gates<T: std::fmt::Debug>(mut gates: Vec<InputGate<T>>, waker: &TaskWaker) -> Vec<Vec<String>> {
    let mut logs = vec![Vec::new(); gates.len()];
    let mut finished = vec![false; gates.len()];
    let deadline = Instant::now() + PATIENCE;
    while finished.iter().any(|f| !f) {
        let mut idle = true;
        for (i, gate) in gates.iter_mut().enumerate() {
            if finished[i] {
                continue;
            }
            match gate.poll().unwrap() {
                GateEvent::Nothing => {}
                event => {
                    idle = false;
                    logs[i].push(describe(&event));
                    match event {
                        GateEvent::Records(records, channel) => gate.recycle(channel, records),
                        GateEvent::Finished => finished[i] = true,
                        _ => {}
                    }
                }
            }
        }
        if idle {
            assert!(Instant::now() < deadline, "gave up waiting for the gates to finish");
            waker.wait_until(Some(Instant::now() + Duration::from_millis(50)));
        }
    }
    logs
}

/// The stream a producer task of test 1 writes: records in buffers of three, watermarks,
/// a status change, an aligned barrier, the end.
fn write_script(writer: &mut RecordWriterOutput<String>, k: usize) {
    for i in 0..40i64 {
        writer.collect(StreamRecord { value: format!("{k}-{i}"), timestamp: i }).unwrap();
        if i % 7 == 6 {
            writer.emit_watermark(Watermark(i - 2)).unwrap();
        }
        if i == 20 {
            writer.on_checkpoint(&mut CheckpointEvent::Barrier(&barrier(k as u64, false))).unwrap();
            writer.emit_watermark_status(WatermarkStatus::Idle).unwrap();
            writer.emit_watermark_status(WatermarkStatus::Active).unwrap();
        }
        if i == 30 {
            writer.flush().unwrap();
        }
    }
    writer.finish().unwrap();
}

/// Runs the three producers of test 1 into `senders` on threads and the gates over
/// `receivers` here.
fn run_scripts(
    senders: Vec<ChannelSender<String>>,
    receivers: Vec<ChannelReceiver<String>>,
    waker: &TaskWaker,
) -> Vec<Vec<String>> {
    let producers: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(k, sender)| {
            thread::spawn(move || {
                let mut writer = RecordWriterOutput::new(vec![sender], Partitioner::Forward, 3, CancelToken::new());
                write_script(&mut writer, k);
            })
        })
        .collect();
    let logs = drain_gates(receivers.into_iter().map(|rx| InputGate::new(vec![rx])).collect(), waker);
    for producer in producers {
        producer.join().unwrap();
    }
    logs
}

#[test]
fn three_channels_on_one_connection_deliver_exactly_what_local_channels_deliver() {
    let local = {
        let waker = TaskWaker::new();
        let (senders, receivers) = (0..3).map(|_| channel::<String>(4, waker.clone())).unzip();
        run_scripts(senders, receivers, &waker)
    };

    let (producer, consumer) = pair();
    let cancel = CancelToken::new();
    let waker = TaskWaker::new();
    let (consumer_senders, receivers): (Vec<_>, Vec<_>) = (0..3).map(|_| channel::<String>(4, waker.clone())).unzip();
    let mut consumer_senders = consumer_senders.into_iter();
    // Channel 100 registers before its producer connects, 101 and 102 after theirs started.
    consumer.register_input(100, consumer_senders.next().unwrap(), 4).unwrap();
    let senders = (100..103)
        .map(|id| producer.connect_output::<String>(consumer.local_addr(), id, 2, &cancel).unwrap())
        .collect::<Vec<_>>();
    let late: Vec<_> = consumer_senders.collect();
    let opened = |id| matches!(lock(&consumer.service.state).inputs.get(&id), Some(InputSlot::Opened(_)));
    wait_for("channels 101 and 102 to be opened", || opened(101) && opened(102));
    let remote = thread::scope(|scope| {
        let gates = scope.spawn(|| run_scripts(senders, receivers, &waker));
        for (id, sender) in (101..103).zip(late) {
            consumer.register_input(id, sender, 4).unwrap();
        }
        gates.join().unwrap()
    });

    assert_eq!(remote, local);
    for (k, log) in remote.iter().enumerate() {
        let records: usize =
            log.iter().filter(|e| e.starts_with('[')).map(|e| e.matches(&format!("\"{k}-")).count()).sum();
        assert_eq!(records, 40, "channel {k}: {log:?}");
        assert!(log.contains(&format!("barrier {k} ahead=false")), "channel {k}: {log:?}");
        assert_eq!(log.last().map(String::as_str), Some("finished"));
    }
    assert_eq!((producer.connection_count(), consumer.connection_count()), (1, 1));
}

#[test]
fn the_producer_sends_no_further_than_credit_and_its_own_queue() {
    const CREDITS: usize = 3;
    const CAPACITY: usize = 2;
    let (producer, consumer) = pair();
    let cancel = CancelToken::new();
    let waker = TaskWaker::new();
    let (tx, rx) = channel::<u64>(CREDITS, waker.clone());
    consumer.register_input(7, tx, CREDITS).unwrap();
    let sender = Arc::new(producer.connect_output::<u64>(consumer.local_addr(), 7, CAPACITY, &cancel).unwrap());
    let sent = Arc::new(AtomicUsize::new(0));
    let producing = thread::spawn({
        let (sender, sent, cancel) = (sender.clone(), sent.clone(), cancel.clone());
        move || {
            for i in 0..20 {
                sender.send(Message::Watermark(Watermark(i)), &cancel).unwrap();
                sent.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    wait_for("the credit and the local queue to fill", || {
        rx.queued() == CREDITS && sent.load(Ordering::SeqCst) == CREDITS + CAPACITY
    });
    // Room for a flow-control bug to show: nothing more may arrive or be accepted.
    thread::sleep(Duration::from_millis(100));
    assert_eq!((rx.queued(), sent.load(Ordering::SeqCst)), (CREDITS, CREDITS + CAPACITY));

    // A priority barrier needs no credit; it overtakes the three messages here and the two
    // still queued on the producer's side.
    sender.send_overtaking(barrier(9, true), 0).unwrap();
    wait_for("the priority barrier", || rx.queued() == CREDITS + 1);
    match rx.try_recv() {
        TryRecv::Message(Message::OvertakingBarrier { barrier, overtaken }) => {
            assert_eq!((barrier.id, overtaken), (9, CREDITS + CAPACITY));
        }
        other => panic!("expected the barrier first, got {other:?}"),
    }

    let mut got = Vec::new();
    while got.len() < 20 {
        match recv(&rx, &waker) {
            Some(Message::Watermark(w)) => got.push(w.0),
            other => panic!("unexpected {other:?}"),
        }
        assert!(rx.queued() <= CREDITS, "the consumer's queue holds {} messages", rx.queued());
    }
    producing.join().unwrap();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
}

#[test]
fn an_overtaking_barrier_over_tcp_is_read_before_the_records_sent_ahead_of_it() {
    let (producer, consumer) = pair();
    let waker = TaskWaker::new();
    let (tx, rx) = channel::<u32>(8, waker.clone());
    consumer.register_input(3, tx, 8).unwrap();
    let sender = producer.connect_output::<u32>(consumer.local_addr(), 3, 8, &CancelToken::new()).unwrap();
    let mut writer = RecordWriterOutput::new(vec![sender], Partitioner::Forward, 2, CancelToken::new());
    for value in 0..5 {
        writer.collect(StreamRecord { value, timestamp: 0 }).unwrap();
    }
    writer.on_checkpoint(&mut CheckpointEvent::Barrier(&barrier(1, true))).unwrap();
    writer.collect(StreamRecord { value: 5, timestamp: 0 }).unwrap();
    writer.finish().unwrap();
    // Whatever had crossed when the barrier was put ahead, all of it is overtaken here.
    wait_for("every message to cross", || rx.queued() == 6);
    let mut gate = InputGate::new(vec![rx]);
    let mut events = Vec::new();
    loop {
        match gate.poll().unwrap() {
            GateEvent::Finished => break,
            GateEvent::Records(records, channel) => {
                events.push(format!("{:?}", records.iter().map(|r| r.value).collect::<Vec<_>>()));
                gate.recycle(channel, records);
            }
            event @ (GateEvent::Barrier { .. } | GateEvent::BarrierPassed(_)) => events.push(describe(&event)),
            _ => {}
        }
    }
    assert_eq!(events, vec!["barrier 1 ahead=true", "[0, 1]", "[2, 3]", "[4]", "passed", "[5]"]);
}

/// A consumer with one channel from `producer`, whose first message was seen.
fn connected(
    producer: &ConnectionManager,
    consumer: &ConnectionManager,
    id: u64,
) -> (ChannelSender<u64>, ChannelReceiver<u64>, Arc<TaskWaker>) {
    let waker = TaskWaker::new();
    let (tx, rx) = channel::<u64>(4, waker.clone());
    consumer.register_input(id, tx, 4).unwrap();
    let sender = producer.connect_output::<u64>(consumer.local_addr(), id, 4, &CancelToken::new()).unwrap();
    sender.send(Message::Watermark(Watermark(1)), &CancelToken::new()).unwrap();
    assert!(matches!(recv(&rx, &waker), Some(Message::Watermark(Watermark(1)))));
    (sender, rx, waker)
}

fn gate_error<T>(rx: ChannelReceiver<T>, waker: &TaskWaker) -> TaskError {
    let mut gate = InputGate::new(vec![rx]);
    let deadline = Instant::now() + PATIENCE;
    loop {
        match gate.poll() {
            Err(e) => return e,
            Ok(GateEvent::Nothing) => {
                assert!(Instant::now() < deadline, "the gate never failed");
                waker.wait_until(Some(Instant::now() + Duration::from_millis(50)));
            }
            Ok(GateEvent::Finished) => panic!("the gate finished instead of failing"),
            Ok(_) => {}
        }
    }
}

fn send_until_error(sender: &ChannelSender<u64>) -> TaskError {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Err(e) = sender.send(Message::Watermark(Watermark(2)), &CancelToken::new()) {
            return e;
        }
        assert!(Instant::now() < deadline, "sends never failed");
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_dead_producer_process_fails_the_consumer_gate_and_its_own_sends() {
    let (producer, consumer) = pair();
    let (sender, rx, waker) = connected(&producer, &consumer, 1);
    drop(producer);
    assert!(matches!(gate_error(rx, &waker), TaskError::Disconnected(_)));
    assert!(matches!(send_until_error(&sender), TaskError::Disconnected(_)));
    wait_for("the consumer to forget the connection", || consumer.connection_count() == 0);
}

#[test]
fn a_dead_consumer_process_fails_the_producer_sends() {
    let (producer, consumer) = pair();
    let (sender, rx, _) = connected(&producer, &consumer, 1);
    drop(consumer);
    assert!(matches!(send_until_error(&sender), TaskError::Disconnected(_)));
    wait_for("the producer to forget the connection", || producer.connection_count() == 0);
    drop(rx);
}

#[test]
fn channel_ends_and_failures_leave_the_other_channels_alone() {
    let (producer, consumer) = pair();
    let (ended, ended_rx, ended_waker) = connected(&producer, &consumer, 1);
    let (failed, failed_rx, failed_waker) = connected(&producer, &consumer, 2);
    let (cancelled, cancelled_rx, _) = connected(&producer, &consumer, 3);
    let (alive, alive_rx, alive_waker) = connected(&producer, &consumer, 4);

    ended.send(Message::EndOfInput, &CancelToken::new()).unwrap();
    drop(ended);
    assert!(matches!(recv(&ended_rx, &ended_waker), Some(Message::EndOfInput)));
    assert!(recv(&ended_rx, &ended_waker).is_none(), "the channel ends after its end of input");

    // A producer task that fails drops its sender without an end of input.
    drop(failed);
    assert!(matches!(gate_error(failed_rx, &failed_waker), TaskError::Disconnected(_)));

    // A consumer task that fails drops its receiver: its producer's sends fail.
    drop(cancelled_rx);
    assert!(matches!(send_until_error(&cancelled), TaskError::Disconnected(_)));

    alive.send(Message::Watermark(Watermark(5)), &CancelToken::new()).unwrap();
    assert!(matches!(recv(&alive_rx, &alive_waker), Some(Message::Watermark(Watermark(5)))));
    assert_eq!((producer.connection_count(), consumer.connection_count()), (1, 1));
    // The channel ids are free again once closed.
    wait_for("channel 1 to be released", || !lock(&consumer.service.state).inputs.contains_key(&1));
    let (tx, _rx) = channel::<u64>(1, TaskWaker::new());
    consumer.register_input(1, tx, 1).unwrap();
}

#[test]
fn a_peer_with_another_protocol_version_is_refused_naming_both_versions() {
    let current = ConnectionManager::bind("127.0.0.1:0").unwrap();
    let future = ConnectionManager::bind_with_version("127.0.0.1:0", PROTOCOL_VERSION + 1).unwrap();
    let (ours, theirs) = (PROTOCOL_VERSION, PROTOCOL_VERSION + 1);
    let err = current.connect_output::<u64>(future.local_addr(), 1, 1, &CancelToken::new()).map(drop).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "peer {} speaks network protocol version {theirs}, this process speaks version {ours}",
            future.local_addr()
        )
    );
    let err = future.connect_output::<u64>(current.local_addr(), 1, 1, &CancelToken::new()).map(drop).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "peer {} speaks network protocol version {ours}, this process speaks version {theirs}",
            current.local_addr()
        )
    );
    assert_eq!((current.connection_count(), future.connection_count()), (0, 0));
}

#[test]
fn processes_connected_both_ways_share_one_connection_even_when_dialing_at_once() {
    for round in 0..20 {
        let (a, b) = pair();
        let (a_to_b, b_to_a) = thread::scope(|scope| {
            let (a, b) = (&a, &b);
            let a_dial =
                scope.spawn(move || a.connect_output::<u64>(b.local_addr(), 1, 1, &CancelToken::new()).unwrap());
            let b_dial =
                scope.spawn(move || b.connect_output::<u64>(a.local_addr(), 2, 1, &CancelToken::new()).unwrap());
            (a_dial.join().unwrap(), b_dial.join().unwrap())
        });
        let (a_ends, b_ends) = (a.connection_endpoints(), b.connection_endpoints());
        assert_eq!(a_ends.len(), 1, "round {round}");
        assert_eq!(b_ends, vec![(a_ends[0].1, a_ends[0].0)], "round {round}: both sides use the same socket");

        // Data flows both ways on it.
        for (consumer, id, sender) in [(&b, 1, &a_to_b), (&a, 2, &b_to_a)] {
            let waker = TaskWaker::new();
            let (tx, rx) = channel::<u64>(2, waker.clone());
            consumer.register_input(id, tx, 2).unwrap();
            sender.send(Message::Watermark(Watermark(round)), &CancelToken::new()).unwrap();
            assert!(matches!(recv(&rx, &waker), Some(Message::Watermark(Watermark(w))) if w == round));
        }
    }
}

#[test]
fn a_second_address_of_a_connected_peer_leads_to_the_same_connection() {
    let (a, b) = (ConnectionManager::bind("0.0.0.0:0").unwrap(), ConnectionManager::bind("0.0.0.0:0").unwrap());
    // Once with the deciding side dialing, once with the other.
    for (dialer, dialed) in [(&a, &b), (&b, &a)] {
        let port = dialed.local_addr().port();
        let first = SocketAddr::from(([127, 0, 0, 1], port));
        let second = SocketAddr::from(([127, 0, 0, 2], port));
        let _x = dialer.connect_output::<u64>(first, dialer.service.id ^ 1, 1, &CancelToken::new()).unwrap();
        let before = dialer.connection_endpoints();
        let _y = dialer.connect_output::<u64>(second, dialer.service.id ^ 2, 1, &CancelToken::new()).unwrap();
        assert_eq!(dialer.connection_endpoints(), before);
        // The side that did not decide registers the connection when told to, a moment later.
        wait_for("the dialed side to register the connection", || dialed.connection_count() == 1);
        assert_eq!(dialed.connection_endpoints(), vec![(before[0].1, before[0].0)]);
    }
}

#[test]
fn shutdown_closes_the_port_and_refuses_further_use() {
    let (a, b) = pair();
    let (_sender, _rx, _) = connected(&a, &b, 1);
    let addr = a.local_addr();
    a.shutdown();
    assert!(TcpStream::connect(addr).is_err(), "nothing listens any more");
    assert!(matches!(a.connect_output::<u64>(b.local_addr(), 2, 1, &CancelToken::new()), Err(NetworkError::Shutdown)));
    let (tx, _rx) = channel::<u64>(1, TaskWaker::new());
    assert!(matches!(a.register_input(5, tx, 1), Err(NetworkError::Shutdown)));
    assert_eq!(a.connection_count(), 0);
    a.shutdown();
}

#[test]
fn registration_mistakes_are_errors() {
    let (a, b) = pair();
    let (tx, _rx) = channel::<u64>(1, TaskWaker::new());
    assert!(matches!(a.register_input(1, tx, 0), Err(NetworkError::NoCredit(1))));
    let (tx, _rx1) = channel::<u64>(1, TaskWaker::new());
    a.register_input(1, tx, 1).unwrap();
    let (tx, _rx2) = channel::<u64>(1, TaskWaker::new());
    assert!(matches!(a.register_input(1, tx, 1), Err(NetworkError::DuplicateChannel(1))));
    let _first = a.connect_output::<u64>(b.local_addr(), 9, 1, &CancelToken::new()).unwrap();
    assert!(matches!(
        a.connect_output::<u64>(b.local_addr(), 9, 1, &CancelToken::new()),
        Err(NetworkError::DuplicateChannel(9))
    ));
    let nobody = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    assert!(matches!(a.connect_output::<u64>(nobody, 1, 1, &CancelToken::new()), Err(NetworkError::Io { .. })));
}

/// A hand-driven peer, to send what a correct one never would.
struct RawPeer {
    stream: TcpStream,
    body: Vec<u8>,
}

impl RawPeer {
    /// Connects as the side that decides (service id 0) and confirms the connection.
    fn connect(to: &ConnectionManager) -> Self {
        assert_ne!(to.service.id, 0);
        let mut peer = RawPeer { stream: TcpStream::connect(to.local_addr()).unwrap(), body: Vec::new() };
        let mut hello = frame::MAGIC.to_vec();
        hello.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
        hello.extend_from_slice(&0u64.to_be_bytes());
        peer.send(frame::HELLO, &hello);
        assert_eq!(peer.read().map(|(kind, _)| kind), Some(frame::WELCOME));
        peer.send(frame::CONFIRM, &[]);
        peer
    }

    fn send(&mut self, kind: u8, body: &[u8]) {
        frame::write_frame(&mut self.stream, kind, body).unwrap();
    }

    fn send_channel(&mut self, kind: u8, channel: u64, payload: &[u8]) {
        let mut body = channel.to_be_bytes().to_vec();
        body.extend_from_slice(payload);
        self.send(kind, &body);
    }

    /// The next frame, or `None` once the service closed the connection.
    fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        self.stream.set_read_timeout(Some(PATIENCE)).unwrap();
        match frame::read_frame(&mut self.stream, &mut self.body, frame::MAX_FRAME) {
            Ok(kind) => Some((kind, self.body.clone())),
            Err(frame::FrameError::Io(e))
                if e.kind() != io::ErrorKind::WouldBlock && e.kind() != io::ErrorKind::TimedOut =>
            {
                None
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }
}

fn encoded(message: Message<u64>) -> Vec<u8> {
    let mut bytes = Vec::new();
    crate::network::wire::encode_message(&message, &mut bytes).unwrap();
    bytes
}

#[test]
fn malformed_frames_close_the_connection_with_an_error_naming_peer_and_channel() {
    let consumer = ConnectionManager::bind("127.0.0.1:0").unwrap();
    let watermark = encoded(Message::Watermark(Watermark(1)));
    type Misbehave = fn(&mut RawPeer, &[u8]);
    let cases: Vec<(&str, Misbehave, Option<u64>, &str)> = vec![
        ("a garbage message", |p, _| p.send_channel(frame::DATA, 5, &[99]), Some(5), "unknown message tag 99"),
        (
            "a message beyond credit",
            |p, wm| (0..3).for_each(|_| p.send_channel(frame::DATA, 5, wm)),
            Some(5),
            "a message beyond the 2 credits announced",
        ),
        (
            "data for an unknown channel",
            |p, wm| p.send_channel(frame::DATA, 6, wm),
            Some(6),
            "a message for a channel that was given no credit",
        ),
        (
            "a priority frame with a watermark",
            |p, wm| p.send_channel(frame::PRIORITY, 5, wm),
            Some(5),
            "a priority frame without an overtaking barrier",
        ),
        ("an unknown frame kind", |p, _| p.send(77, &[]), None, "unexpected frame kind 77"),
        (
            "a truncated CREDIT",
            |p, _| p.send(frame::CREDIT, &[0, 0, 0, 1, 0]),
            None,
            "frame ends inside the channel id",
        ),
        (
            "a zero length",
            |p, _| p.stream.write_all(&[0, 0, 0, 0, frame::DATA]).unwrap(),
            None,
            "frame length 0 outside 1..=2147483648",
        ),
    ];
    for (what, misbehave, channel_id, reason) in cases {
        let waker = TaskWaker::new();
        let (tx, rx) = channel::<u64>(2, waker.clone());
        consumer.register_input(5, tx, 2).unwrap();
        let mut peer = RawPeer::connect(&consumer);
        peer.send_channel(frame::OPEN, 5, &[]);
        let (kind, credit) = peer.read().unwrap();
        assert_eq!(
            (kind, credit),
            (frame::CREDIT, [&1u32.to_be_bytes()[..], &5u64.to_be_bytes(), &2u32.to_be_bytes()].concat()),
            "{what}"
        );
        misbehave(&mut peer, &watermark);
        while peer.read().is_some() {}
        assert!(matches!(gate_error(rx, &waker), TaskError::Disconnected(_)), "{what}");
        let expected =
            NetworkError::Protocol { peer: peer.local_addr(), channel: channel_id, reason: reason.into() }.to_string();
        wait_for("the failure to be recorded", || !lock(&consumer.service.failures).is_empty());
        let failures = std::mem::take(&mut *lock(&consumer.service.failures));
        assert_eq!(failures.len(), 1, "{what}");
        assert!(failures[0].starts_with(&expected), "{what}: {} does not start with {expected}", failures[0]);
        wait_for("the channel to be released", || consumer.connection_count() == 0);
    }
}

#[test]
fn a_stranger_is_turned_away_at_the_handshake() {
    let service = ConnectionManager::bind("127.0.0.1:0").unwrap();
    let mut stranger = TcpStream::connect(service.local_addr()).unwrap();
    stranger.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    stranger.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut rest = Vec::new();
    // Closed (or reset, with bytes unread) without an answer.
    let _ = stranger.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert_eq!(service.connection_count(), 0);
}

/// One step of the property test: a message for one of four channels.
#[derive(Clone, Debug)]
enum Op {
    Records(Vec<u8>),
    Watermark(i64),
    Status(bool),
    Barrier(u64),
}

impl Op {
    fn message(&self) -> Message<u8> {
        match self {
            Op::Records(values) => {
                Message::Records(values.iter().map(|&value| StreamRecord { value, timestamp: 0 }).collect())
            }
            Op::Watermark(w) => Message::Watermark(Watermark(*w)),
            Op::Status(idle) => {
                Message::WatermarkStatus(if *idle { WatermarkStatus::Idle } else { WatermarkStatus::Active })
            }
            Op::Barrier(id) => Message::Barrier(barrier(*id, false)),
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..6).prop_map(Op::Records),
        any::<i64>().prop_map(Op::Watermark),
        any::<bool>().prop_map(Op::Status),
        any::<u64>().prop_map(Op::Barrier),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_arrive_in_order_per_channel(
        ops in proptest::collection::vec((0..4usize, op()), 0..80),
        credits in 1..4usize,
        capacity in 1..4usize,
    ) {
        let (producer, consumer) = pair();
        let waker = TaskWaker::new();
        let mut receivers = Vec::new();
        for id in 0..4u64 {
            let (tx, rx) = channel::<u8>(credits, waker.clone());
            consumer.register_input(id, tx, credits).unwrap();
            receivers.push(rx);
        }
        let senders: Vec<_> = (0..4u64)
            .map(|id| producer.connect_output::<u8>(consumer.local_addr(), id, capacity, &CancelToken::new()).unwrap())
            .collect();
        let mut expected = vec![Vec::new(); 4];
        for (channel, op) in &ops {
            expected[*channel].push(format!("{:?}", op.message()));
        }
        let sending = thread::spawn(move || {
            for (channel, op) in ops {
                senders[channel].send(op.message(), &CancelToken::new()).unwrap();
            }
            for sender in senders {
                sender.send(Message::EndOfInput, &CancelToken::new()).unwrap();
            }
        });
        let mut got = vec![Vec::new(); 4];
        let mut ended = [false; 4];
        let deadline = Instant::now() + PATIENCE;
        while ended.iter().any(|e| !e) {
            let mut idle = true;
            for (channel, rx) in receivers.iter().enumerate() {
                match rx.try_recv() {
                    TryRecv::Message(Message::EndOfInput) => {}
                    TryRecv::Message(message) => got[channel].push(format!("{message:?}")),
                    TryRecv::Empty => continue,
                    TryRecv::Disconnected => ended[channel] = true,
                }
                idle = false;
            }
            if idle {
                prop_assert!(Instant::now() < deadline, "gave up waiting");
                waker.wait_until(Some(Instant::now() + Duration::from_millis(50)));
            }
        }
        sending.join().unwrap();
        prop_assert_eq!(got, expected);
    }
}

/// A record type whose encoding always fails.
#[derive(Clone, Debug)]
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this record cannot be encoded"))
    }
}

impl<'de> serde::Deserialize<'de> for Unencodable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("never sent"))
    }
}

#[test]
fn a_message_that_cannot_be_sent_fails_its_producer_with_the_reason() {
    let (producer, consumer) = pair();
    let waker = TaskWaker::new();
    let (tx, rx) = channel::<Unencodable>(4, waker.clone());
    consumer.register_input(9, tx, 4).unwrap();
    let cancel = CancelToken::new();
    let sender = producer.connect_output::<Unencodable>(consumer.local_addr(), 9, 4, &cancel).unwrap();
    sender.send(Message::Records(vec![StreamRecord { value: Unencodable, timestamp: 0 }]), &cancel).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let error = loop {
        if let Err(e) = sender.send(Message::Watermark(Watermark(1)), &cancel) {
            break e;
        }
        assert!(Instant::now() < deadline, "sends never failed");
        thread::sleep(Duration::from_millis(2));
    };
    assert!(!error.is_consequence(), "the producer's failure is the cause: {error}");
    let text = error.to_string();
    // postcard keeps no custom message: the error says what could not be encoded, and where.
    assert!(
        text.starts_with("cannot send a message of channel 9 to ") && text.contains("cannot encode record"),
        "{text}"
    );
    drop(sender);
    assert!(matches!(gate_error(rx, &waker), TaskError::Disconnected(_)), "the consumer sees a consequence");
}
