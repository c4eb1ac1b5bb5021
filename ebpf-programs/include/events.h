/* Records the kernel programs write to the `events` ring buffer, and the keys and values
 * of the maps userspace fills. Shared with rust-core/src/events.rs, which mirrors every
 * struct with size assertions: change both together. Plain fixed-width fields only. */
#ifndef OTELCOL_EBPF_EVENTS_H
#define OTELCOL_EBPF_EVENTS_H

#include "vmlinux.h" /* __u8 .. __u64 */

/* Payload bytes copied per syscall (or per iovec). A power of two: the programs mask
 * lengths with CAPTURE_MAX - 1, so at most CAPTURE_MAX - 1 bytes are copied. */
#define CAPTURE_MAX 4096
#define COMM_LEN 16
#define FILENAME_LEN 256

enum event_kind {
	EVENT_DATA = 1,  /* bytes read from or written to a TCP socket */
	EVENT_CLOSE = 2, /* a socket we reported data on reached TCP_CLOSE (pid is 0) */
	EVENT_EXEC = 3,  /* a process exec'd (only when exe selectors are configured) */
	EVENT_EXIT = 4,  /* a traced process exited */
	EVENT_CTX = 5,   /* trace context the kernel gave a request (context_propagation) */
};

enum direction {
	DIR_RECV = 0,
	DIR_SEND = 1,
};

/* proc_state map values. */
enum proc_state {
	PROC_TRACED = 1,
	PROC_EXCLUDED = 2,
	PROC_PENDING = 3, /* exec'd, waiting for userspace to match its exe path */
	PROC_ELIGIBLE = 4, /* exe matched a selector that also names ports: traced once it
			    * accepts or connects on one of them */
};

/* port_flags map value bits (array indexed by port). */
enum port_flag {
	PORT_INSTRUMENT = 1, /* discovery.instrument open_ports */
	PORT_DISCOVERY_EXCLUDE = 2, /* discovery.exclude open_ports */
	PORT_NO_SPANS = 4, /* exclude_ports: capture nothing on such connections */
	PORT_INSTRUMENT_WITH_EXE = 8, /* open_ports of a selector that also has exe_path */
};

/* Indexes of the per-CPU `counters` array. */
enum counter {
	COUNTER_RINGBUF_FULL = 0,
	COUNTER_TRUNCATED = 1,
	COUNTER_BYTES_NOT_CAPTURED = 2,
	COUNTER_INJECTED = 3, /* traceparent headers inserted into outgoing requests */
	COUNTER_INJECT_HAS_HEADER = 4, /* requests that carried their own traceparent: untouched */
	COUNTER_INJECT_SPLIT = 5, /* header block not complete in one send: not touched */
	COUNTER_INJECT_FAILED = 6, /* the kernel refused to grow the message: not touched */
	COUNTER_HEAD_SPLIT = 7, /* server read a request head in pieces: its incoming
				 * traceparent may have been missed by the kernel */
	COUNTER_TRACESTATE_DROPPED = 8, /* tracestate too long to carry: traceparent only */
	COUNTER_TLS_NO_SOCKET = 9, /* TLS plaintext of an SSL object whose socket is unknown */
	COUNTER_H2_WALK_LOST = 10, /* HTTP/2 frame walk given up (too many frames in one call, a
				    * frame header no peer sends, sendfile): that connection's
				    * records are plain captures again */
	COUNTER_H2_INJECT_SKIPPED = 11, /* HTTP/2 requests sent without a header: block in
					 * several frames or sends, frame past 16 KiB, more
					 * than H2TX_REQS in one send */
	COUNTER_H2_INJECT_LOST = 12, /* HTTP/2 connections whose frames sk_msg lost: no
				      * headers inserted from then on */
	COUNTER_UNSAMPLED_SKIPPED = 13, /* unsampled server requests left out in the kernel */
	COUNTER_AMQP_INJECT_SKIPPED = 14, /* AMQP publishes sent without an inserted header: a
					   * content header split between sends or too big to
					   * grow, more than AMQP_REQS in one send */
	COUNTER_AMQP_INJECT_LOST = 15, /* AMQP connections whose frames sk_msg lost: no
					* headers inserted from then on */
	COUNTER_GO_CTX_NO_GOID = 16, /* a Go request whose goroutine could not be read: its calls get no parent */
	COUNTER_GO_CTX_NONE = 17, /* net/http calls from a goroutine with no known request: no parent */
	COUNTER_GO_CTX_STALE = 18, /* a net/http request written after the request that made it
				    * ended (a failed dial's leftover): no parent */
	COUNTER_GO_CTX_GRPC_NONE = 19, /* an HTTP/2 stream a Go program opened (grpc-go) whose
					* caller's context is unknown: no parent */
	COUNTER_GO_H2_NO_SOCKET = 20, /* a Go HTTP/2 request whose connection's socket could not be
				       * read (not TLS): its calls get no parent */
	COUNTER_GO_H2_UNREAD = 21, /* a Go HTTP/2 request whose header fields could not be read
				    * (or more than the kernel looks at): its calls get no parent */
	COUNTER_MAX = 22,
};

struct event_header {
	__u32 kind;
	__u32 pid; /* tgid */
	__u32 tid;
	__u32 fd;
	__u64 ts_ns; /* bpf_ktime_get_ns at syscall exit */
	__u64 sock_id; /* kernel address of the struct sock: the connection's identity while it lives */
};

/* local = s*, remote = d*; addresses in network byte order, ports in host order. */
struct conn_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 family; /* AF_INET or AF_INET6 */
	__u16 _pad;
	__u32 netns;
	__u32 _pad2;
};

struct data_event {
	struct event_header hdr;
	struct conn_tuple tuple;
	__u32 total_len; /* bytes the syscall moved (for this iovec) */
	__u32 captured_len; /* bytes in data[] */
	__u8 direction;
	__u8 flags; /* DATA_FLAG_* */
	__u8 _pad[2];
	__u32 peer_pid; /* DATA_FLAG_PEER_TRACED: the process of the client end */
	char comm[COMM_LEN];
	__u8 data[CAPTURE_MAX];
};

/* data_event.flags */
#define DATA_FLAG_PENDING 1 /* sent while the process waited for an exe-path decision */
#define DATA_FLAG_TLS 2 /* plaintext of a TLS connection, from the SSL library */
#define DATA_FLAG_H2 4 /* HTTP/2 frames: data[] is a struct h2_frame_state (where the
			* bytes start in the frame stream), then the frame headers and
			* non-DATA payloads in order; DATA payloads are left out */
#define DATA_FLAG_PEER_TRACED 8 /* read from a connection whose client end is traced here */
#define DATA_FLAG_PEER_COLLECTOR 16 /* ... whose client end is this collector */
#define DATA_FLAG_UNSAMPLED 32 /* sent by a thread serving an unsampled request: a call
				* it makes is in that unsampled trace */
#define DATA_FLAG_AFTER_SKIP 64 /* records of this direction were left out just before
				 * (an unsampled exchange, see server_request.h): resynchronise */
#define DATA_FLAG_SKIPPING 128 /* kernel only: the record is left out */

/* Where an HTTP/2 direction is in its frame stream. The client preface counts as a
 * non-DATA payload of 24 bytes. */
struct h2_frame_state {
	__u32 rem; /* payload bytes of the current frame still to come */
	__u32 head; /* first bytes (up to 4: length, type) of a frame header seen in part */
	__u8 hdr_have; /* bytes of that header seen so far (0..8) */
	__u8 is_data; /* the current frame is DATA: its payload is left out */
	__u8 _pad[6];
};

struct close_event {
	struct event_header hdr;
};

struct exec_event {
	struct event_header hdr;
	__u32 prev_state; /* proc_state before the exec, 0 if none */
	__u32 _pad;
	char comm[COMM_LEN];
	char filename[FILENAME_LEN];
};

struct exit_event {
	struct event_header hdr;
};

/* ctx_event.ctx_kind */
enum ctx_kind {
	CTX_SERVER = 1, /* ids for the request a server thread just read; hdr.ts_ns equals
			 * the ts_ns of the data event that carried the request's first bytes */
	CTX_INJECTED = 2, /* traceparent inserted into a request this thread is sending;
			   * precedes the data event of that send */
	CTX_CALLER = 3, /* Go: the request the goroutine sending on this socket serves
			 * (parent_span_id, trace_id, trace_flags; zeros: none), sent when
			 * it changed for the socket; hdr.ts_ns equals the ts_ns of the
			 * data event that follows it (go_calls.h) */
};

/* ctx_event.ctx_flags */
#define CTX_FLAG_HEADER 1 /* CTX_SERVER: trace id and flags came from the request's traceparent */
#define CTX_FLAG_AMBIGUOUS 2 /* the thread served several requests at once: no parent */
#define CTX_FLAG_TRACESTATE 4 /* CTX_INJECTED: tracestate was inserted too */
#define CTX_FLAG_GOROUTINE 8 /* CTX_INJECTED: the parent is the sending goroutine's request */

struct ctx_event {
	struct event_header hdr;
	__u8 trace_id[16];
	__u8 span_id[8];
	__u8 parent_span_id[8]; /* CTX_INJECTED, CTX_CALLER: the server span the thread
				 * (goroutine) serves, or zeros */
	__u8 ctx_kind;
	__u8 trace_flags; /* W3C trace-flags */
	__u8 ctx_flags;
	__u8 _pad;
	__u32 stream_id; /* CTX_INJECTED into an HTTP/2 request, CTX_CALLER of a grpc-go stream:
			  * its stream (else 0) */
};


#endif
