//! Apache Kafka's binary protocol: one [`KafkaSession`] per connection, fed both
//! directions, reporting one messaging operation per span (see `protocols/messaging.rs`).
//!
//! Framing: every request and response is an i32 length and that many bytes; requests
//! start with a header (v0: api key, api version, correlation id; v1 adds the client id;
//! v2, for the API versions that are "flexible", adds tagged fields), responses with the
//! correlation id of their request (and tagged fields for flexible versions, except for
//! ApiVersions). A connection's responses come in the order of its requests; the session
//! keeps each request's api key, version, client id, time and thread, and pairs a
//! response by its correlation id (by order when the id itself was not captured).
//!
//! Operations:
//! * Produce (v3 and later; v0–v2 too): one operation per (topic, partition) of the request,
//!   `Started` when the request has been read (its first byte's time and thread), `Done` at
//!   its response with the partition's base offset or its error (`error.type` = the Kafka
//!   error name); message count and `traceparent` links read from the request's record
//!   batches. `acks=0` has no response: `Done` at the request. v13 names topics by id.
//! * Fetch (v4 and later; topic ids from v13): at its response, one operation per
//!   (topic, partition) that returned records or an error, reported as `Done` only, timed
//!   from the request; first offset, record count and links from the batches. A fetch that
//!   returned nothing is counted in `empty_polls`. Replica fetches (a follower's, the
//!   KRaft metadata log's) are no operations.
//! * Topic ids are named from a host-wide registry filled by the Metadata responses (v10
//!   and later) seen on any connection; an id it does not hold leaves the destination
//!   unknown and is counted (`topic_unknown`).
//! * The consumer group (`messaging.consumer.group.name`) comes from the group calls
//!   (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
//!   ConsumerGroupHeartbeat), remembered host-wide by client id: a consumer's group
//!   coordinator is usually another connection than its fetches.
//! * Everything else (ApiVersions, Metadata, FindCoordinator, the group calls,
//!   InitProducerId, admin calls...) is no operation (`not_operations`).
//!
//! Lost bytes: uncaptured bytes (`gap`) inside a frame are skipped by its length; a field
//! that lay in them is unknown, never guessed (a count whose batch headers were not all
//! seen is left out). A gap across a frame boundary loses the framing of that direction:
//! it resumes at a feed that starts with a plausible frame (toward the client: a response
//! to a pending request). Requests whose responses were lost end with what is known. A
//! length that is negative or above 100 MiB ends parsing for the connection.
//!
//! Never panics, keeps at most [`wire::MAX_KEEP`] bytes of a frame and [`MAX_PENDING`]
//! requests awaiting responses.

mod errors;
pub mod records;
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::messaging::{MsgContext, MsgEvent, MsgOp, MsgSession, MsgStats, MsgSystem, OpType};
use super::ops::OpEvent;
use super::session::{Flow, Sniff};
use wire::{Frame, Miss, Rd, MAX_FRAME, R};

/// Requests awaiting their responses on one connection.
pub const MAX_PENDING: usize = 1024;
/// Topic ids remembered host-wide.
pub const MAX_TOPIC_IDS: usize = 8192;
/// Client ids whose consumer group is remembered host-wide.
pub const MAX_GROUPS: usize = 8192;
/// Longest client id, topic or group name kept.
const MAX_NAME: usize = 255;

pub const PRODUCE: i16 = 0;
pub const FETCH: i16 = 1;
pub const METADATA: i16 = 3;
pub const OFFSET_COMMIT: i16 = 8;
pub const OFFSET_FETCH: i16 = 9;
pub const JOIN_GROUP: i16 = 11;
pub const HEARTBEAT: i16 = 12;
pub const LEAVE_GROUP: i16 = 13;
pub const SYNC_GROUP: i16 = 14;
pub const API_VERSIONS: i16 = 18;
pub const CONSUMER_GROUP_HEARTBEAT: i16 = 68;
/// The highest ApiVersions request version whose fields are known (v5: KIP-1242).
const API_VERSIONS_MAX: i16 = APIS[API_VERSIONS as usize].0;

/// Per api key (0..=94): the highest version Apache Kafka 4.4 knows (for the removed
/// inter-broker keys 4–7, the last one they had) and the first flexible version (-1: none).
const APIS: [(i16, i16); 95] = [
    (13, 9),  // 0 Produce
    (18, 12), // 1 Fetch
    (11, 6),  // 2 ListOffsets
    (13, 9),  // 3 Metadata
    (7, 4),   // 4 LeaderAndIsr
    (4, 2),   // 5 StopReplica
    (8, 6),   // 6 UpdateMetadata
    (3, 3),   // 7 ControlledShutdown
    (10, 8),  // 8 OffsetCommit
    (10, 6),  // 9 OffsetFetch
    (6, 3),   // 10 FindCoordinator
    (9, 6),   // 11 JoinGroup
    (4, 4),   // 12 Heartbeat
    (5, 4),   // 13 LeaveGroup
    (5, 4),   // 14 SyncGroup
    (6, 5),   // 15 DescribeGroups
    (5, 3),   // 16 ListGroups
    (1, -1),  // 17 SaslHandshake
    (5, 3),   // 18 ApiVersions
    (7, 5),   // 19 CreateTopics
    (6, 4),   // 20 DeleteTopics
    (2, 2),   // 21 DeleteRecords
    (6, 2),   // 22 InitProducerId
    (4, 4),   // 23 OffsetForLeaderEpoch
    (5, 3),   // 24 AddPartitionsToTxn
    (4, 3),   // 25 AddOffsetsToTxn
    (5, 3),   // 26 EndTxn
    (2, 1),   // 27 WriteTxnMarkers
    (6, 3),   // 28 TxnOffsetCommit
    (3, 2),   // 29 DescribeAcls
    (3, 2),   // 30 CreateAcls
    (3, 2),   // 31 DeleteAcls
    (4, 4),   // 32 DescribeConfigs
    (2, 2),   // 33 AlterConfigs
    (2, 2),   // 34 AlterReplicaLogDirs
    (5, 2),   // 35 DescribeLogDirs
    (2, 2),   // 36 SaslAuthenticate
    (3, 2),   // 37 CreatePartitions
    (3, 2),   // 38 CreateDelegationToken
    (2, 2),   // 39 RenewDelegationToken
    (2, 2),   // 40 ExpireDelegationToken
    (3, 2),   // 41 DescribeDelegationToken
    (3, 2),   // 42 DeleteGroups
    (2, 2),   // 43 ElectLeaders
    (1, 1),   // 44 IncrementalAlterConfigs
    (1, 0),   // 45 AlterPartitionReassignments
    (0, 0),   // 46 ListPartitionReassignments
    (0, -1),  // 47 OffsetDelete
    (1, 1),   // 48 DescribeClientQuotas
    (1, 1),   // 49 AlterClientQuotas
    (0, 0),   // 50 DescribeUserScramCredentials
    (0, 0),   // 51 AlterUserScramCredentials
    (2, 0),   // 52 Vote
    (1, 1),   // 53 BeginQuorumEpoch
    (1, 1),   // 54 EndQuorumEpoch
    (2, 0),   // 55 DescribeQuorum
    (3, 2),   // 56 AlterPartition
    (2, 0),   // 57 UpdateFeatures
    (0, 0),   // 58 Envelope
    (1, 0),   // 59 FetchSnapshot
    (2, 0),   // 60 DescribeCluster
    (0, 0),   // 61 DescribeProducers
    (4, 0),   // 62 BrokerRegistration
    (2, 0),   // 63 BrokerHeartbeat
    (0, 0),   // 64 UnregisterBroker
    (0, 0),   // 65 DescribeTransactions
    (2, 0),   // 66 ListTransactions
    (0, 0),   // 67 AllocateProducerIds
    (1, 0),   // 68 ConsumerGroupHeartbeat
    (1, 0),   // 69 ConsumerGroupDescribe
    (0, 0),   // 70 ControllerRegistration
    (0, 0),   // 71 GetTelemetrySubscriptions
    (0, 0),   // 72 PushTelemetry
    (0, 0),   // 73 AssignReplicasToDirs
    (1, 0),   // 74 ListConfigResources
    (0, 0),   // 75 DescribeTopicPartitions
    (1, 1),   // 76 ShareGroupHeartbeat
    (1, 1),   // 77 ShareGroupDescribe
    (2, 1),   // 78 ShareFetch
    (2, 1),   // 79 ShareAcknowledge
    (1, 0),   // 80 AddRaftVoter
    (0, 0),   // 81 RemoveRaftVoter
    (0, 0),   // 82 UpdateRaftVoter
    (0, 0),   // 83 InitializeShareGroupState
    (0, 0),   // 84 ReadShareGroupState
    (1, 0),   // 85 WriteShareGroupState
    (0, 0),   // 86 DeleteShareGroupState
    (1, 0),   // 87 ReadShareGroupStateSummary
    (1, 0),   // 88 StreamsGroupHeartbeat
    (1, 0),   // 89 StreamsGroupDescribe
    (1, 0),   // 90 DescribeShareGroupOffsets
    (0, 0),   // 91 AlterShareGroupOffsets
    (0, 0),   // 92 DeleteShareGroupOffsets
    (0, 0),   // 93 StreamsGroupTopologyDescriptionUpdate
    (0, 0),   // 94 UnregisterController
];

/// Versions a little above the highest known are accepted (a newer client and broker).
const VERSION_SLACK: i16 = 2;

fn api(key: i16) -> Option<(i16, i16)> {
    usize::try_from(key).ok().and_then(|k| APIS.get(k)).copied()
}

/// Whether (key, version) is an API version a client may send.
pub fn known(key: i16, version: i16) -> bool {
    matches!(api(key), Some((max, _)) if (0..=max + VERSION_SLACK).contains(&version))
}

/// Whether (key, version) uses the flexible encoding (compact fields, tagged fields).
pub fn flexible(key: i16, version: i16) -> bool {
    matches!(api(key), Some((_, f)) if f >= 0 && version >= f)
}

/// Request header version 0 (no client id): ControlledShutdown v0 only.
fn header_v0(key: i16, version: i16) -> bool {
    key == 7 && version == 0
}

/// The KRaft metadata log's topic (fetched by controllers and brokers): replication, no
/// application's messages.
const METADATA_TOPIC: &str = "__cluster_metadata";
const METADATA_TOPIC_ID: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

// ---------------------------------------------------------------------------------------
// Host-wide registries
// ---------------------------------------------------------------------------------------

fn topic_ids() -> &'static Mutex<HashMap<[u8; 16], Arc<str>>> {
    static T: OnceLock<Mutex<HashMap<[u8; 16], Arc<str>>>> = OnceLock::new();
    T.get_or_init(|| Mutex::new(HashMap::new()))
}

fn groups() -> &'static Mutex<HashMap<Arc<str>, Arc<str>>> {
    static G: OnceLock<Mutex<HashMap<Arc<str>, Arc<str>>>> = OnceLock::new();
    G.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Remembers a topic id's name (host-wide; when full, an arbitrary entry goes).
pub fn learn_topic(id: [u8; 16], name: &str) {
    if id == [0; 16] || name.is_empty() {
        return;
    }
    let mut m = topic_ids().lock();
    if m.get(&id).is_some_and(|n| &**n == name) {
        return;
    }
    if m.len() >= MAX_TOPIC_IDS && !m.contains_key(&id) {
        if let Some(k) = m.keys().next().copied() {
            m.remove(&k);
        }
    }
    m.insert(id, Arc::from(name));
}

/// The name of a topic id, if a Metadata response on this host named it.
pub fn topic_name(id: &[u8; 16]) -> Option<Arc<str>> {
    topic_ids().lock().get(id).cloned()
}

fn learn_group(client_id: &Arc<str>, group: &str) {
    if group.is_empty() {
        return;
    }
    let mut m = groups().lock();
    if m.get(client_id).is_some_and(|g| &**g == group) {
        return;
    }
    if m.len() >= MAX_GROUPS && !m.contains_key(client_id) {
        if let Some(k) = m.keys().next().cloned() {
            m.remove(&k);
        }
    }
    m.insert(client_id.clone(), Arc::from(group));
}

fn group_of(client_id: &str) -> Option<Arc<str>> {
    groups().lock().get(client_id).cloned()
}

fn text(b: &[u8]) -> Arc<str> {
    let b = &b[..b.len().min(MAX_NAME)];
    Arc::from(String::from_utf8_lossy(b).as_ref())
}

// ---------------------------------------------------------------------------------------
// Detection
// ---------------------------------------------------------------------------------------

/// Whether `b` starts with a plausible request header: a sane length, a known api key and
/// version, a non-negative correlation id, and a client id (printable) that fits the frame.
/// `Err(())`: too few bytes to tell.
fn request_head(b: &[u8], max_len: usize) -> Result<bool, ()> {
    if b.len() < 4 {
        // The length's high bytes alone can rule it out.
        let hi = b.iter().take(2).any(|&x| x != 0);
        return if hi && max_len <= 0xffff {
            Ok(false)
        } else {
            Err(())
        };
    }
    let len = wire::be32(b);
    if len < 10 || len as usize > max_len {
        return Ok(false);
    }
    if b.len() < 14 {
        return Err(());
    }
    let (key, ver, corr) = (
        wire::be16(&b[4..]),
        wire::be16(&b[6..]),
        wire::be32(&b[8..]),
    );
    if !known(key, ver) || header_v0(key, ver) || corr < 0 {
        return Ok(false);
    }
    let id_len = wire::be16(&b[12..]);
    if id_len < -1 || 10 + id_len.max(0) as i64 + i64::from(flexible(key, ver)) > len as i64 {
        return Ok(false);
    }
    if id_len > 0 {
        let id = &b[14..b.len().min(14 + id_len as usize)];
        if !id.iter().all(|&c| (0x20..0x7f).contains(&c)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Recognises a connection from a client's first message toward the server (usually
/// ApiVersions or Metadata; a SASL handshake): strictly, since its first bytes are a
/// binary length. The server never speaks first.
pub fn sniff(flow: Flow, first: &[u8]) -> Sniff {
    if flow == Flow::ToClient {
        return Sniff::No;
    }
    // A client's first request is small.
    match request_head(first, 1 << 20) {
        Err(()) => return Sniff::NeedMore,
        Ok(false) => return Sniff::No,
        Ok(true) => {}
    }
    let len = wire::be32(first) as usize;
    let key = wire::be16(&first[4..]);
    let id_len = wire::be16(&first[12..]).max(0) as usize;
    if first.len() < 14 + id_len {
        return Sniff::NeedMore;
    }
    if len + 4 > 4096 {
        // A large first request: decided on its complete header.
        return Sniff::Yes;
    }
    if first.len() < 4 + len {
        // Clients write a request in one piece: wait for all of a small one.
        return Sniff::NeedMore;
    }
    // The whole first request is here: an ApiVersions request must parse exactly (what
    // follows is not looked at: a client waits for the answer to its first request).
    // Versions above the highest known may have grown fields: their known prefix must parse.
    let mut f = Frame::new(len, 0, 0);
    f.push(&first[4..4 + len]);
    let ver = wire::be16(&first[6..]);
    if key == API_VERSIONS && ver >= 3 {
        let mut r = f.reader();
        let ok = (|| -> R<()> {
            r.skip(8)?;
            r.skip_string(false)?;
            r.skip_tags(true)?;
            r.skip_string(true)?; // client_software_name
            r.skip_string(true)?; // client_software_version
            if ver >= 5 {
                // KIP-1242 (franz-go 1.22 sends v5): the cluster and node the client
                // believes it reaches (null and -1 while bootstrapping).
                r.skip_string(true)?; // cluster_id
                r.skip(4)?; // node_id
            }
            if ver <= API_VERSIONS_MAX {
                r.skip_tags(true)?;
            }
            Ok(())
        })();
        if ok.is_err() || (ver <= API_VERSIONS_MAX && r.left() != 0) {
            return Sniff::No;
        }
    }
    Sniff::Yes
}

/// A connection first seen mid-stream on Kafka's port: bytes toward the server that start
/// with a plausible request header, or toward the client with a plausible response
/// (a sane length and correlation id, and a plausible frame after it when there is one).
pub fn plausible_midstream(flow: Flow, data: &[u8]) -> bool {
    match flow {
        Flow::ToServer => matches!(request_head(data, MAX_FRAME), Ok(true)),
        Flow::ToClient => {
            if data.len() < 8 {
                return false;
            }
            let len = wire::be32(data);
            if !(4..=MAX_FRAME as i32).contains(&len) || wire::be32(&data[4..]) < 0 {
                return false;
            }
            let next = 4 + len as usize;
            if data.len() >= next + 8 {
                let l2 = wire::be32(&data[next..]);
                return (4..=MAX_FRAME as i32).contains(&l2) && wire::be32(&data[next + 4..]) >= 0;
            }
            true
        }
    }
}

// ---------------------------------------------------------------------------------------
// The session
// ---------------------------------------------------------------------------------------

/// One (topic, partition) of a Produce request.
#[derive(Debug)]
struct Part {
    topic: Option<Arc<str>>,
    topic_id: Option<[u8; 16]>,
    partition: i32,
    count: Option<u64>,
    links: Vec<MsgContext>,
    /// Its operation (`Started` reported).
    seq: u64,
}

#[derive(Debug)]
enum Kind {
    Produce(Vec<Part>),
    Fetch,
    Metadata,
    Other,
}

#[derive(Debug)]
struct Req {
    corr: Option<i32>,
    key: i16,
    version: i16,
    client_id: Option<Arc<str>>,
    ts: u64,
    tid: u32,
    kind: Kind,
}

/// A partition of a Produce response: (topic name, topic id, partition, error code, base
/// offset).
type PartResult = (Option<Arc<str>>, Option<[u8; 16]>, i32, i16, i64);

/// One direction's framing.
#[derive(Debug, Default)]
struct Dir {
    len: [u8; 4],
    len_got: usize,
    frame: Option<Frame>,
    /// A gap crossed a frame boundary: wait for a feed starting with a plausible frame.
    lost: bool,
}

pub struct KafkaSession {
    dirs: [Dir; 2],
    pending: VecDeque<Req>,
    next_seq: u64,
    stats: MsgStats,
    /// An absurd length: the connection is not parsed any more.
    dead: bool,
    /// Requests may have gone unseen (a frame boundary lost toward the server, or no
    /// request seen before a response): responses without a request are expected.
    requests_unseen: bool,
    /// The group named on this connection (preferred over the host-wide registry).
    group: Option<Arc<str>>,
    /// Bytes dropped while the framing was lost.
    losses: u64,
    requests_seen: bool,
}

impl Default for KafkaSession {
    fn default() -> Self {
        Self::new()
    }
}

fn produce_op(req: &Req, seq: u64) -> MsgOp {
    MsgOp {
        seq,
        system: MsgSystem::Kafka,
        op_type: OpType::Send,
        op_name: "send",
        client_id: req.client_id.as_deref().map(str::to_string),
        start_ts: req.ts,
        end_ts: req.ts,
        tid: req.tid,
        ..Default::default()
    }
}

impl KafkaSession {
    pub fn new() -> KafkaSession {
        KafkaSession {
            dirs: [Dir::default(), Dir::default()],
            pending: VecDeque::new(),
            next_seq: 1,
            stats: MsgStats::default(),
            dead: false,
            requests_unseen: false,
            group: None,
            losses: 0,
            requests_seen: false,
        }
    }

    /// Bytes dropped after the framing was lost (the fuzz target compares runs only when
    /// none was).
    pub fn losses(&self) -> u64 {
        self.losses
    }

    fn seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn idx(flow: Flow) -> usize {
        match flow {
            Flow::ToServer => 0,
            Flow::ToClient => 1,
        }
    }

    /// Whether a feed toward `flow` starting with `data` can resume lost framing.
    fn resumes(&self, flow: Flow, data: &[u8]) -> bool {
        match flow {
            Flow::ToServer => matches!(request_head(data, MAX_FRAME), Ok(true)),
            Flow::ToClient => {
                data.len() >= 8
                    && (0..=MAX_FRAME as i32).contains(&wire::be32(data))
                    && self
                        .pending
                        .iter()
                        .any(|r| r.corr == Some(wire::be32(&data[4..])))
            }
        }
    }

    fn give_up(&mut self) {
        self.dead = true;
        self.stats.malformed += 1;
        for d in &mut self.dirs {
            *d = Dir::default();
        }
    }

    fn frame_done(&mut self, flow: Flow, f: Frame, out: &mut Vec<MsgEvent>) {
        match flow {
            Flow::ToServer => self.request(f, out),
            Flow::ToClient => self.response(f, out),
        }
    }

    // ----------------------------------------------------------------------- requests

    fn request(&mut self, f: Frame, out: &mut Vec<MsgEvent>) {
        let mut r = f.reader();
        let head = (r.i16(), r.i16(), r.i32());
        let (key, version, corr) = match head {
            (Ok(k), Ok(v), Ok(c)) => (k, v, c),
            (Err(Miss::Bad), _, _) | (_, Err(Miss::Bad), _) | (_, _, Err(Miss::Bad)) => {
                self.stats.malformed += 1;
                return;
            }
            // The header was not captured: its response cannot be told from the others'
            // but by order; nothing else is known.
            _ => {
                self.push(
                    Req {
                        corr: None,
                        key: -1,
                        version: -1,
                        client_id: None,
                        ts: f.start_ts,
                        tid: f.start_tid,
                        kind: Kind::Other,
                    },
                    out,
                );
                return;
            }
        };
        if !known(key, version) || corr < 0 {
            self.stats.malformed += 1;
            return;
        }
        let flex = flexible(key, version);
        let mut client_id = None;
        let mut body = true;
        if !header_v0(key, version) {
            match r.string(false) {
                Ok(id) => client_id = id.map(text),
                Err(Miss::Bad) => {
                    self.stats.malformed += 1;
                    return;
                }
                Err(Miss::Hole) => body = false,
            }
        }
        if body && r.skip_tags(flex).is_err() {
            body = false;
        }
        let mut req = Req {
            corr: Some(corr),
            key,
            version,
            client_id,
            ts: f.start_ts,
            tid: f.start_tid,
            kind: Kind::Other,
        };
        match key {
            PRODUCE => {
                let (parts, acks) = if body {
                    self.produce_request(&mut r, version, flex)
                } else {
                    (Vec::new(), None)
                };
                let mut with_seq = Vec::with_capacity(parts.len());
                for mut p in parts {
                    p.seq = self.seq();
                    out.push(OpEvent::Started {
                        seq: p.seq,
                        ts: req.ts,
                        tid: req.tid,
                    });
                    with_seq.push(p);
                }
                if acks == Some(0) {
                    // No response comes: the operations end with their request.
                    for p in with_seq {
                        let op = self.part_op(&req, p, f.end_ts);
                        out.push(OpEvent::Done(op));
                    }
                    return;
                }
                req.kind = Kind::Produce(with_seq);
            }
            FETCH => {
                // A follower's fetch (replica id >= 0, up to v14) is replication.
                let replica = body && version <= 14 && r.i32().is_ok_and(|id| id >= 0);
                if replica {
                    self.stats.not_operations += 1;
                } else {
                    req.kind = Kind::Fetch;
                }
            }
            METADATA => {
                self.stats.not_operations += 1;
                req.kind = Kind::Metadata;
            }
            _ => {
                self.stats.not_operations += 1;
                if body {
                    self.group_request(&mut r, key, version, flex, req.client_id.as_ref());
                }
            }
        }
        self.push(req, out);
    }

    fn push(&mut self, req: Req, out: &mut Vec<MsgEvent>) {
        self.requests_seen = true;
        if self.pending.len() >= MAX_PENDING {
            // The server answers nothing: forget the oldest, ending its operations with
            // what is known.
            if let Some(old) = self.pending.pop_front() {
                let ts = req.ts;
                self.drop_req(old, ts, false, out);
            }
        }
        self.pending.push_back(req);
    }

    /// Ends the operations of a request that will get no (readable) response.
    fn drop_req(&mut self, mut req: Req, ts: u64, aborted: bool, out: &mut Vec<MsgEvent>) {
        if let Kind::Produce(parts) = std::mem::replace(&mut req.kind, Kind::Other) {
            for p in parts {
                let mut op = self.part_op(&req, p, ts);
                op.aborted = aborted;
                out.push(OpEvent::Done(op));
            }
        }
    }

    fn part_op(&mut self, req: &Req, p: Part, end_ts: u64) -> MsgOp {
        let mut op = produce_op(req, p.seq);
        op.destination = p.topic.as_deref().map(str::to_string);
        op.partition = Some(p.partition);
        op.message_count = p.count;
        op.links = p.links;
        op.end_ts = end_ts.max(req.ts);
        op
    }

    /// The (topic, partition)s of a Produce request (as many as were captured) and acks.
    fn produce_request(
        &mut self,
        r: &mut Rd<'_>,
        version: i16,
        flex: bool,
    ) -> (Vec<Part>, Option<i16>) {
        let mut parts = Vec::new();
        let mut acks = None;
        let res = (|| -> R<()> {
            if version >= 3 {
                r.skip_string(flex)?;
            }
            acks = Some(r.i16()?);
            r.i32()?;
            let topics = r.array(flex, 2)?.unwrap_or(0);
            for _ in 0..topics {
                let (topic, topic_id) = if version >= 13 {
                    let id = r.uuid()?;
                    (topic_name(&id), Some(id))
                } else {
                    (r.string(flex)?.map(text), None)
                };
                let n = r.array(flex, 4)?.unwrap_or(0);
                for _ in 0..n {
                    let partition = r.i32()?;
                    let recs = r.bytes_field(flex);
                    let mut part = Part {
                        topic: topic.clone(),
                        topic_id,
                        partition,
                        count: None,
                        links: Vec::new(),
                        seq: 0,
                    };
                    match recs {
                        Ok(Some(rd)) => {
                            let info = records::parse(rd);
                            self.stats.undecompressed += info.undecompressed;
                            if info.malformed {
                                self.stats.malformed += 1;
                            }
                            part.count = info.known_count();
                            part.links = info.links;
                        }
                        Ok(None) => part.count = Some(0),
                        Err(e) => {
                            parts.push(part);
                            return Err(e);
                        }
                    }
                    parts.push(part);
                    r.skip_tags(flex)?;
                }
                r.skip_tags(flex)?;
            }
            Ok(())
        })();
        if res == Err(Miss::Bad) {
            self.stats.malformed += 1;
        }
        (parts, acks)
    }

    /// The group id of a group call, remembered for this connection and its client id.
    fn group_request(
        &mut self,
        r: &mut Rd<'_>,
        key: i16,
        version: i16,
        flex: bool,
        client: Option<&Arc<str>>,
    ) {
        let group = match key {
            JOIN_GROUP
            | SYNC_GROUP
            | HEARTBEAT
            | LEAVE_GROUP
            | OFFSET_COMMIT
            | CONSUMER_GROUP_HEARTBEAT => r.string(flex).ok().flatten(),
            OFFSET_FETCH if version < 8 => r.string(flex).ok().flatten(),
            OFFSET_FETCH => match r.array(flex, 1) {
                Ok(Some(n)) if n > 0 => r.string(flex).ok().flatten(),
                _ => None,
            },
            _ => None,
        };
        let Some(g) = group.filter(|g| !g.is_empty()) else {
            return;
        };
        let g = text(g);
        if let Some(c) = client {
            learn_group(c, &g);
        }
        self.group = Some(g);
    }

    // ---------------------------------------------------------------------- responses

    fn response(&mut self, f: Frame, out: &mut Vec<MsgEvent>) {
        let mut r = f.reader();
        let corr = match r.i32() {
            Ok(c) => Some(c),
            Err(Miss::Bad) => {
                self.stats.malformed += 1;
                return;
            }
            Err(Miss::Hole) => None,
        };
        // Responses come in request order: the one answered is the first pending with
        // this id (or the oldest, when the id was not captured); those before it lost
        // their responses.
        let at = match corr {
            Some(c) => self
                .pending
                .iter()
                .position(|q| q.corr == Some(c))
                .or_else(|| self.pending.iter().position(|q| q.corr.is_none())),
            None => (!self.pending.is_empty()).then_some(0),
        };
        let Some(at) = at else {
            if !self.requests_unseen {
                self.stats.malformed += 1;
            }
            return;
        };
        for _ in 0..at {
            if let Some(old) = self.pending.pop_front() {
                self.drop_req(old, f.end_ts, false, out);
            }
        }
        let Some(req) = self.pending.pop_front() else {
            return;
        };
        let flex = flexible(req.key, req.version);
        let tags_ok = req.key == API_VERSIONS || r.skip_tags(flex).is_ok();
        match req.kind {
            Kind::Produce(_) => self.produce_response(req, &mut r, tags_ok, f.end_ts, out),
            Kind::Fetch => {
                if tags_ok {
                    self.fetch_response(&req, &mut r, f.end_ts, out);
                }
            }
            Kind::Metadata => {
                if tags_ok {
                    metadata_response(&mut r, req.version, flex);
                }
            }
            Kind::Other => {}
        }
    }

    fn produce_response(
        &mut self,
        mut req: Req,
        r: &mut Rd<'_>,
        readable: bool,
        end_ts: u64,
        out: &mut Vec<MsgEvent>,
    ) {
        let version = req.version;
        let flex = flexible(PRODUCE, version);
        let mut results: Vec<PartResult> = Vec::new();
        let mut parse = || {
            (|| -> R<()> {
                let topics = r.array(flex, 2)?.unwrap_or(0);
                for _ in 0..topics {
                    let (name, id) = if version >= 13 {
                        let id = r.uuid()?;
                        (None, Some(id))
                    } else {
                        (r.string(flex)?.map(text), None)
                    };
                    let n = r.array(flex, 14)?.unwrap_or(0);
                    for _ in 0..n {
                        let partition = r.i32()?;
                        let err = r.i16()?;
                        let base = r.i64()?;
                        results.push((name.clone(), id, partition, err, base));
                        if version >= 2 {
                            r.skip(8)?;
                        }
                        if version >= 5 {
                            r.skip(8)?;
                        }
                        if version >= 8 {
                            let errs = r.array(flex, 5)?.unwrap_or(0);
                            for _ in 0..errs {
                                r.skip(4)?;
                                r.skip_string(flex)?;
                                r.skip_tags(flex)?;
                            }
                            r.skip_string(flex)?;
                        }
                        r.skip_tags(flex)?;
                    }
                    r.skip_tags(flex)?;
                }
                Ok(())
            })()
        };
        let res = if readable { parse() } else { Ok(()) };
        if res == Err(Miss::Bad) {
            self.stats.malformed += 1;
        }
        let Kind::Produce(mut parts) = std::mem::replace(&mut req.kind, Kind::Other) else {
            return;
        };
        for (name, id, partition, err, base) in results {
            let found = parts.iter().position(|p| {
                p.partition == partition
                    && match (&name, &id) {
                        (Some(n), _) => p.topic.as_deref() == Some(&**n),
                        (None, Some(i)) => p.topic_id == Some(*i),
                        _ => false,
                    }
            });
            let mut op = match found {
                Some(i) => {
                    let p = parts.remove(i);
                    self.part_op(&req, p, end_ts)
                }
                None => {
                    let seq = self.seq();
                    let mut op = produce_op(&req, seq);
                    op.partition = Some(partition);
                    op.end_ts = end_ts.max(req.ts);
                    op
                }
            };
            if op.destination.is_none() {
                op.destination = name
                    .or_else(|| id.as_ref().and_then(topic_name))
                    .as_deref()
                    .map(str::to_string);
            }
            if op.destination.is_none() {
                self.stats.topic_unknown += 1;
            }
            if err != 0 {
                op.error_type = Some(errors::name(err));
            } else if base >= 0 {
                op.offset = Some(base);
            }
            out.push(OpEvent::Done(op));
        }
        // Partitions the response did not tell about (their part of it was not captured).
        for p in parts {
            let op = self.part_op(&req, p, end_ts);
            out.push(OpEvent::Done(op));
        }
    }

    fn fetch_response(&mut self, req: &Req, r: &mut Rd<'_>, end_ts: u64, out: &mut Vec<MsgEvent>) {
        let version = req.version;
        let flex = flexible(FETCH, version);
        let group = self
            .group
            .clone()
            .or_else(|| req.client_id.as_deref().and_then(group_of));
        let mut ops = 0usize;
        let mut replication = false;
        let res = (|| -> R<()> {
            if version >= 1 {
                r.skip(4)?;
            }
            if version >= 7 {
                r.skip(2 + 4)?;
            }
            let topics = r.array(flex, 2)?.unwrap_or(0);
            for _ in 0..topics {
                let (name, id) = if version >= 13 {
                    let id = r.uuid()?;
                    (topic_name(&id), Some(id))
                } else {
                    (r.string(flex)?.map(text), None)
                };
                let internal =
                    id == Some(METADATA_TOPIC_ID) || name.as_deref() == Some(METADATA_TOPIC);
                let n = r.array(flex, 20)?.unwrap_or(0);
                for _ in 0..n {
                    let partition = r.i32()?;
                    let err = r.i16()?;
                    r.skip(8)?; // high watermark
                    if version >= 4 {
                        r.skip(8)?; // last stable offset
                    }
                    if version >= 5 {
                        r.skip(8)?; // log start offset
                    }
                    if version >= 4 {
                        let aborted = r.array(flex, 16)?.unwrap_or(0);
                        for _ in 0..aborted {
                            r.skip(16)?;
                            r.skip_tags(flex)?;
                        }
                    }
                    if version >= 11 {
                        r.skip(4)?; // preferred read replica
                    }
                    let recs = r.bytes_field(flex)?;
                    r.skip_tags(flex)?;
                    if internal {
                        replication = true;
                        continue;
                    }
                    let info = match recs {
                        Some(rd) if rd.left() > 0 => records::parse(rd),
                        _ => records::Records::default(),
                    };
                    self.stats.undecompressed += info.undecompressed;
                    if info.malformed {
                        self.stats.malformed += 1;
                    }
                    let got = info.count > 0 || info.incomplete;
                    if !got && err == 0 {
                        continue;
                    }
                    let seq = self.seq();
                    let op = MsgOp {
                        seq,
                        system: MsgSystem::Kafka,
                        op_type: OpType::Receive,
                        op_name: "poll",
                        destination: name.as_deref().map(str::to_string),
                        partition: Some(partition),
                        offset: if got { info.first_offset } else { None },
                        message_count: if got { info.known_count() } else { None },
                        client_id: req.client_id.as_deref().map(str::to_string),
                        consumer_group: group.as_deref().map(str::to_string),
                        error_type: (err != 0).then(|| errors::name(err)),
                        links: info.links,
                        start_ts: req.ts,
                        end_ts: end_ts.max(req.ts),
                        tid: req.tid,
                        ..Default::default()
                    };
                    if op.destination.is_none() {
                        self.stats.topic_unknown += 1;
                    }
                    ops += 1;
                    out.push(OpEvent::Done(op));
                }
                r.skip_tags(flex)?;
            }
            Ok(())
        })();
        if res == Err(Miss::Bad) {
            self.stats.malformed += 1;
        }
        if ops == 0 {
            if replication {
                self.stats.not_operations += 1;
            } else {
                self.stats.empty_polls += 1;
            }
        }
    }
}

/// Learns topic ids from a Metadata response (v10 and later name them).
fn metadata_response(r: &mut Rd<'_>, version: i16, flex: bool) {
    if version < 10 {
        return;
    }
    let _ = (|| -> R<()> {
        if version >= 3 {
            r.skip(4)?;
        }
        let brokers = r.array(flex, 10)?.unwrap_or(0);
        for _ in 0..brokers {
            r.skip(4)?;
            r.skip_string(flex)?;
            r.skip(4)?;
            r.skip_string(flex)?;
            r.skip_tags(flex)?;
        }
        r.skip_string(flex)?; // cluster id
        r.skip(4)?; // controller id
        let topics = r.array(flex, 20)?.unwrap_or(0);
        for _ in 0..topics {
            r.skip(2)?;
            let name = r.string(flex)?;
            let id = r.uuid()?;
            if let Some(n) = name {
                learn_topic(id, &text(n));
            }
            r.skip(1)?; // is_internal
            let parts = r.array(flex, 12)?.unwrap_or(0);
            for _ in 0..parts {
                r.skip(2 + 4 + 4)?;
                if version >= 7 {
                    r.skip(4)?;
                }
                let arrays = if version >= 5 { 3 } else { 2 };
                for _ in 0..arrays {
                    let n = r.array(flex, 4)?.unwrap_or(0);
                    r.skip(4 * n)?;
                }
                r.skip_tags(flex)?;
            }
            if version >= 8 {
                r.skip(4)?;
            }
            r.skip_tags(flex)?;
        }
        Ok(())
    })();
}

impl MsgSession for KafkaSession {
    fn feed(
        &mut self,
        flow: Flow,
        data: &[u8],
        gap: u64,
        ts: u64,
        tid: u32,
        out: &mut Vec<MsgEvent>,
    ) {
        if self.dead {
            return;
        }
        let i = Self::idx(flow);
        if flow == Flow::ToClient && !self.requests_seen {
            // A response before any request: the connection was opened before us.
            self.requests_unseen = true;
        }
        if self.dirs[i].lost {
            if data.is_empty() || !self.resumes(flow, data) {
                self.losses += data.len() as u64 + gap;
                return;
            }
            self.dirs[i] = Dir::default();
        }
        let mut p = data;
        while !p.is_empty() {
            let d = &mut self.dirs[i];
            match d.frame.as_mut() {
                None => {
                    let take = (4 - d.len_got).min(p.len());
                    d.len[d.len_got..d.len_got + take].copy_from_slice(&p[..take]);
                    d.len_got += take;
                    p = &p[take..];
                    if d.len_got < 4 {
                        continue;
                    }
                    d.len_got = 0;
                    let n = i32::from_be_bytes(d.len);
                    if n < 0 || n as usize > MAX_FRAME {
                        self.give_up();
                        return;
                    }
                    let f = Frame::new(n as usize, ts, tid);
                    if n == 0 {
                        self.frame_done(flow, f, out);
                    } else {
                        d.frame = Some(f);
                    }
                }
                Some(f) => {
                    let take = f.need().min(p.len());
                    f.push(&p[..take]);
                    p = &p[take..];
                    if f.need() == 0 {
                        let mut f = d.frame.take().unwrap_or_default();
                        f.end_ts = ts;
                        self.frame_done(flow, f, out);
                        if self.dead {
                            return;
                        }
                    }
                }
            }
        }
        let mut g = gap;
        while g > 0 {
            let d = &mut self.dirs[i];
            match d.frame.as_mut() {
                Some(f) => {
                    let take = (f.need() as u64).min(g) as usize;
                    f.skip(take);
                    g -= take as u64;
                    if f.need() == 0 {
                        let mut f = d.frame.take().unwrap_or_default();
                        f.end_ts = ts;
                        self.frame_done(flow, f, out);
                        if self.dead {
                            return;
                        }
                    }
                }
                None => {
                    // The next frame's length was not captured.
                    *d = Dir {
                        lost: true,
                        ..Dir::default()
                    };
                    self.losses += g;
                    if flow == Flow::ToServer {
                        self.requests_unseen = true;
                    }
                    break;
                }
            }
        }
    }

    fn close(&mut self, ts: u64, out: &mut Vec<MsgEvent>) {
        while let Some(req) = self.pending.pop_front() {
            self.drop_req(req, ts, true, out);
        }
        for d in &mut self.dirs {
            *d = Dir::default();
        }
        self.dead = true;
    }

    fn stats(&self) -> MsgStats {
        self.stats
    }

    fn compact(&mut self) {
        for d in &mut self.dirs {
            if let Some(f) = d.frame.as_mut() {
                f.data.shrink_to_fit();
            }
        }
        self.pending.shrink_to_fit();
    }
}
