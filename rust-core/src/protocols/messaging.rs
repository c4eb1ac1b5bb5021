//! What every messaging protocol parser (Kafka, AMQP 0-9-1) hands to the span side: one
//! `MsgOp` per span, whatever the wire protocol. Like the database parsers, a session is
//! fed both directions of one connection, pairs requests with replies itself (Kafka by
//! correlation id, AMQP by channel and order) and reports `Started` / `Done` events
//! (`ops::OpEvent`). A Kafka Produce of two partitions is two operations (two spans); a
//! Fetch is reported only when it returned records (`Done` without `Started`, timed from
//! the request); a pushed AMQP delivery (CONSUMER `process`) is reported with
//! `StartedWith` as soon as its content header is read, its `links[0]` being the message's
//! own context (the span's parent), and `Done` when it is acknowledged.
//!
//! Parsers never panic on any input and never allocate without bound: garbage is
//! counted in `MsgStats` and skipped.

use super::ops::{Op, OpAdapter, OpEvent};
use super::session::{Counts, Reply, Session};
use crate::conn::Message;
use crate::record::SpanKind;

/// `messaging.system` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgSystem {
    Kafka,
    Rabbitmq,
}

impl MsgSystem {
    pub fn name(self) -> &'static str {
        match self {
            MsgSystem::Kafka => "kafka",
            MsgSystem::Rabbitmq => "rabbitmq",
        }
    }
}

/// `messaging.operation.type` values (messaging semantic conventions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpType {
    Send,
    Receive,
    Process,
    Settle,
}

impl OpType {
    pub fn name(self) -> &'static str {
        match self {
            OpType::Send => "send",
            OpType::Receive => "receive",
            OpType::Process => "process",
            OpType::Settle => "settle",
        }
    }

    /// The span kind the conventions give it: PRODUCER for send, CONSUMER for a pushed
    /// delivery's process, CLIENT for what the client asks for (poll, get, ack).
    pub fn kind(self) -> SpanKind {
        match self {
            OpType::Send => SpanKind::Producer,
            OpType::Process => SpanKind::Consumer,
            OpType::Receive | OpType::Settle => SpanKind::Client,
        }
    }
}

/// A span context read from a message (a `traceparent` record or message header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

/// One messaging operation as its span needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgOp {
    /// Matches the `Started` event of the same operation.
    pub seq: u64,
    pub system: MsgSystem,
    pub op_type: OpType,
    /// `messaging.operation.name`: `send`, `poll`, `publish`, `get`, `ack`, `deliver`...
    pub op_name: &'static str,
    /// `messaging.destination.name`: Kafka topic; AMQP exchange (publish) or queue
    /// (consume). `None`: not known (the span is named honestly, the session counts it).
    pub destination: Option<String>,
    /// `messaging.destination.partition.id`.
    pub partition: Option<i32>,
    /// `messaging.kafka.offset`: the first record's offset.
    pub offset: Option<i64>,
    /// `messaging.batch.message_count` (Kafka: records in the batches of this partition).
    pub message_count: Option<u64>,
    /// `messaging.client.id`.
    pub client_id: Option<String>,
    /// `messaging.consumer.group.name`.
    pub consumer_group: Option<String>,
    /// `messaging.rabbitmq.destination.routing_key`.
    pub routing_key: Option<String>,
    /// `messaging.message.body.size`.
    pub body_size: Option<u64>,
    /// `messaging.message.id` (AMQP message-id, else the delivery tag).
    pub message_id: Option<String>,
    /// `messaging.rabbitmq.message.delivery_tag`.
    pub delivery_tag: Option<u64>,
    /// The reply was an error: `error.type` (Kafka error name, AMQP reply code text).
    pub error_type: Option<String>,
    /// Contexts carried by the messages (record headers, AMQP `headers`): span links.
    pub links: Vec<MsgContext>,
    /// Time of the syscall holding the request's first byte / the reply's last byte.
    pub start_ts: u64,
    pub end_ts: u64,
    /// The thread that sent the request (or read the delivery).
    pub tid: u32,
    /// The connection closed (or the stream broke) before the reply ended.
    pub aborted: bool,
}

impl Default for MsgOp {
    fn default() -> Self {
        MsgOp {
            seq: 0,
            system: MsgSystem::Kafka,
            op_type: OpType::Send,
            op_name: "",
            destination: None,
            partition: None,
            offset: None,
            message_count: None,
            client_id: None,
            consumer_group: None,
            routing_key: None,
            body_size: None,
            message_id: None,
            delivery_tag: None,
            error_type: None,
            links: Vec::new(),
            start_ts: 0,
            end_ts: 0,
            tid: 0,
            aborted: false,
        }
    }
}

pub type MsgEvent = OpEvent<MsgOp>;

/// What a messaging session could not use, for the receiver's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MsgStats {
    /// Frames or messages that did not parse (skipped, or the session resynchronised).
    pub malformed: u64,
    /// Messages that are not operations (handshakes, heartbeats, metadata): no span.
    pub not_operations: u64,
    /// Kafka topic ids no Metadata response seen on this host named.
    pub topic_unknown: u64,
    /// Polls that returned no records: no span.
    pub empty_polls: u64,
    /// Compressed record batches whose headers could not be read (codec error, too big).
    pub undecompressed: u64,
}

impl MsgStats {
    pub fn add(&mut self, o: &MsgStats) {
        self.malformed += o.malformed;
        self.not_operations += o.not_operations;
        self.topic_unknown += o.topic_unknown;
        self.empty_polls += o.empty_polls;
        self.undecompressed += o.undecompressed;
    }

    /// The growth since `before` (counters only grow).
    pub fn since(&self, before: &MsgStats) -> MsgStats {
        MsgStats {
            malformed: self.malformed.saturating_sub(before.malformed),
            not_operations: self.not_operations.saturating_sub(before.not_operations),
            topic_unknown: self.topic_unknown.saturating_sub(before.topic_unknown),
            empty_polls: self.empty_polls.saturating_sub(before.empty_polls),
            undecompressed: self.undecompressed.saturating_sub(before.undecompressed),
        }
    }
}

/// One messaging connection's parser.
pub trait MsgSession: Send {
    /// Bytes that crossed the connection in one syscall (`gap`: bytes after `data` that
    /// were not captured; skip them by framing, never guess their content).
    fn feed(
        &mut self,
        flow: super::session::Flow,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        out: &mut Vec<MsgEvent>,
    );
    /// The connection closed: operations without a reply end `aborted`.
    fn close(&mut self, ts: u64, out: &mut Vec<MsgEvent>);
    fn stats(&self) -> MsgStats;
    fn compact(&mut self) {}
}

impl Op for MsgOp {
    type Session = dyn MsgSession;

    fn seq(&self) -> u64 {
        self.seq
    }
    fn start(&self) -> (u64, u32) {
        (self.start_ts, self.tid)
    }
    fn end_ts(&self) -> u64 {
        self.end_ts
    }
    fn started(seq: u64, ts: u64, tid: u32) -> Message {
        Message::Messaging(Box::new(MsgOp {
            seq,
            start_ts: ts,
            tid,
            ..Default::default()
        }))
    }
    fn into_reply(self) -> Reply {
        Reply::Messaging(Box::new(self))
    }
    fn into_message(self) -> Message {
        Message::Messaging(Box::new(self))
    }
    fn feed(
        s: &mut Self::Session,
        flow: super::session::Flow,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        out: &mut Vec<OpEvent<Self>>,
    ) {
        s.feed(flow, data, gap, ts, tid, out)
    }
    fn close(s: &mut Self::Session, ts: u64, out: &mut Vec<OpEvent<Self>>) {
        s.close(ts, out)
    }
    fn counts(s: &Self::Session) -> Counts {
        Counts {
            messaging: s.stats(),
            ..Default::default()
        }
    }
    fn compact(s: &mut Self::Session) {
        s.compact()
    }
}

/// A messaging parser as a session of the protocol seam.
pub fn session<S: MsgSession + 'static>(s: S) -> Box<dyn Session> {
    Box::new(OpAdapter::<MsgOp>::new(Box::new(s)))
}
