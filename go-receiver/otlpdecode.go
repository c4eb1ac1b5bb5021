package ebpfreceiver // import "github.com/otelcol-ebpf/otelcol-ebpf/go-receiver"

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"
)

// otlpDecoder turns the core's ExportTraceServiceRequest bytes into ptrace.Traces with
// far fewer allocations than ptrace.ProtoUnmarshaler, whose allocations and the GC they
// caused were half the collector's CPU: slices sized before they are filled, attribute
// keys shared with constants, repeated values (method, route, addresses, resource) shared
// across batches. It knows only what rust-core/src/otlp.rs writes; anything else (an
// unknown field, a wire type, a field repeated where otlp.rs writes it once, a duplicate
// attribute key) sends the whole batch to ptrace.ProtoUnmarshaler, so correctness never
// depends on the fast path.
//
// Not safe for concurrent use: the receiver decodes on one goroutine at a time.
type otlpDecoder struct {
	strs      map[string]string
	spanSlots []slot // what span attributes held last, by position
	resSlots  []slot // the same for resource and scope attributes
	fallbacks int    // batches the fast path left to ptrace.ProtoUnmarshaler
}

const (
	// The intern table's bounds: it is emptied when full (values keep their strings).
	maxInterned  = 4096
	maxInternLen = 256
)

func newOTLPDecoder() *otlpDecoder {
	return &otlpDecoder{strs: make(map[string]string)}
}

// unmarshal decodes b; the result shares no memory with it.
func (d *otlpDecoder) unmarshal(b []byte) (ptrace.Traces, error) {
	if td, ok := d.decode(b); ok {
		return td, nil
	}
	d.fallbacks++
	return (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
}

func (d *otlpDecoder) decode(b []byte) (ptrace.Traces, bool) {
	td := ptrace.NewTraces()
	n, ok := count(b, 1)
	if !ok {
		return td, false
	}
	rss := td.ResourceSpans()
	rss.EnsureCapacity(n)
	for len(b) > 0 {
		f, rest, ok := next(b)
		b = rest
		if !ok || f.num != 1 || f.typ != protowire.BytesType || !d.resourceSpans(f.b, rss.AppendEmpty()) {
			return td, false
		}
	}
	return td, true
}

func (d *otlpDecoder) resourceSpans(b []byte, rs ptrace.ResourceSpans) bool {
	n, ok := count(b, 2)
	if !ok {
		return false
	}
	ss := rs.ScopeSpans()
	ss.EnsureCapacity(n)
	seenResource := false
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok {
			return false
		}
		b = rest
		if f.typ != protowire.BytesType {
			return false
		}
		switch {
		case f.num == 1 && !seenResource:
			seenResource = true
			if !d.resource(f.b, rs.Resource()) {
				return false
			}
		case f.num == 2:
			if !d.scopeSpans(f.b, ss.AppendEmpty()) {
				return false
			}
		case f.num == 3:
			rs.SetSchemaUrl(d.intern(f.b))
		default:
			return false
		}
	}
	return true
}

func (d *otlpDecoder) resource(b []byte, r pcommon.Resource) bool {
	var buf [maxKVs]kv // on the stack: no write barriers while filled
	kvs := buf[:0]
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok {
			return false
		}
		b = rest
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			if kvs = append(kvs, kv{}); !parseKV(f.b, &kvs[len(kvs)-1]) {
				return false
			}
		case f.num == 2 && f.typ == protowire.VarintType:
			r.SetDroppedAttributesCount(uint32(f.u))
		default:
			return false
		}
	}
	return d.putAll(r.Attributes(), kvs, &d.resSlots)
}

func (d *otlpDecoder) scopeSpans(b []byte, ss ptrace.ScopeSpans) bool {
	n, ok := count(b, 2)
	if !ok {
		return false
	}
	spans := ss.Spans()
	spans.EnsureCapacity(n)
	seenScope := false
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok {
			return false
		}
		b = rest
		if f.typ != protowire.BytesType {
			return false
		}
		switch {
		case f.num == 1 && !seenScope:
			seenScope = true
			if !d.scope(f.b, ss.Scope()) {
				return false
			}
		case f.num == 2:
			if !d.span(f.b, spans.AppendEmpty()) {
				return false
			}
		case f.num == 3:
			ss.SetSchemaUrl(d.intern(f.b))
		default:
			return false
		}
	}
	return true
}

func (d *otlpDecoder) scope(b []byte, s pcommon.InstrumentationScope) bool {
	var buf [maxKVs]kv // on the stack: no write barriers while filled
	kvs := buf[:0]
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok {
			return false
		}
		b = rest
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			s.SetName(d.intern(f.b))
		case f.num == 2 && f.typ == protowire.BytesType:
			s.SetVersion(d.intern(f.b))
		case f.num == 3 && f.typ == protowire.BytesType:
			if kvs = append(kvs, kv{}); !parseKV(f.b, &kvs[len(kvs)-1]) {
				return false
			}
		case f.num == 4 && f.typ == protowire.VarintType:
			s.SetDroppedAttributesCount(uint32(f.u))
		default:
			return false
		}
	}
	return d.putAll(s.Attributes(), kvs, &d.resSlots)
}

func (d *otlpDecoder) span(b []byte, s ptrace.Span) bool {
	var buf [maxKVs]kv // on the stack: no write barriers while filled
	kvs := buf[:0]
	seenStatus := false
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok {
			return false
		}
		b = rest
		switch f.typ {
		case protowire.BytesType:
			switch f.num {
			case 1:
				var id pcommon.TraceID
				if !fill(id[:], f.b) {
					return false
				}
				s.SetTraceID(id)
			case 2, 4:
				var id pcommon.SpanID
				if !fill(id[:], f.b) {
					return false
				}
				if f.num == 2 {
					s.SetSpanID(id)
				} else {
					s.SetParentSpanID(id)
				}
			case 3:
				s.TraceState().FromRaw(string(f.b))
			case 5:
				s.SetName(d.intern(f.b))
			case 9:
				if kvs = append(kvs, kv{}); !parseKV(f.b, &kvs[len(kvs)-1]) {
					return false
				}
			case 13:
				if !d.link(f.b, s.Links().AppendEmpty()) {
					return false
				}
			case 15:
				if seenStatus || !d.status(f.b, s.Status()) {
					return false
				}
				seenStatus = true
			default:
				return false
			}
		case protowire.VarintType:
			switch f.num {
			case 6:
				s.SetKind(ptrace.SpanKind(int32(f.u)))
			case 10:
				s.SetDroppedAttributesCount(uint32(f.u))
			case 12:
				s.SetDroppedEventsCount(uint32(f.u))
			case 14:
				s.SetDroppedLinksCount(uint32(f.u))
			default:
				return false
			}
		case protowire.Fixed64Type:
			switch f.num {
			case 7:
				s.SetStartTimestamp(pcommon.Timestamp(f.u))
			case 8:
				s.SetEndTimestamp(pcommon.Timestamp(f.u))
			default:
				return false
			}
		case protowire.Fixed32Type:
			if f.num != 16 {
				return false
			}
			s.SetFlags(uint32(f.u))
		default:
			return false
		}
	}
	return d.putAll(s.Attributes(), kvs, &d.spanSlots)
}

// fill copies an id; empty means zero, as in pdata, any other length is an error.
func fill(id, b []byte) bool {
	if len(b) != 0 && len(b) != len(id) {
		return false
	}
	copy(id, b)
	return true
}

// link decodes what the core writes of a span link: trace id, span id, flags.
func (d *otlpDecoder) link(b []byte, l ptrace.SpanLink) bool {
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok {
			return false
		}
		b = rest
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			var id pcommon.TraceID
			if !fill(id[:], f.b) {
				return false
			}
			l.SetTraceID(id)
		case f.num == 2 && f.typ == protowire.BytesType:
			var id pcommon.SpanID
			if !fill(id[:], f.b) {
				return false
			}
			l.SetSpanID(id)
		case f.num == 6 && f.typ == protowire.Fixed32Type:
			l.SetFlags(uint32(f.u))
		default:
			return false
		}
	}
	return true
}

func (d *otlpDecoder) status(b []byte, st ptrace.Status) bool {
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok {
			return false
		}
		b = rest
		switch {
		case f.num == 2 && f.typ == protowire.BytesType:
			st.SetMessage(d.intern(f.b))
		case f.num == 3 && f.typ == protowire.VarintType:
			st.SetCode(ptrace.StatusCode(int32(f.u)))
		default:
			return false
		}
	}
	return true
}
