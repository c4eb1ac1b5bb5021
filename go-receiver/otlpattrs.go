package ebpfreceiver // import "github.com/otelcol-ebpf/otelcol-ebpf/go-receiver"

import (
	"math"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"google.golang.org/protobuf/encoding/protowire"
)

// attrKey is a key the core writes: its string, shared by every span, and whether its
// values repeat enough to be interned.
type attrKey struct {
	name   string
	intern bool
}

// knownKeys are the attribute keys of rust-core's spans and resource (spans/, otlp.rs).
// Values of the keys marked false are close to unique per span (paths, URLs, queries).
var knownKeys = func() map[string]attrKey {
	m := map[string]attrKey{}
	for _, k := range []string{
		"service.name", "process.pid", "process.executable.name", "process.executable.path",
		"host.name", "telemetry.distro.name", "service.namespace", "service.version",
		"container.id", "k8s.pod.uid", "k8s.container.name",
		"http.request.method", "http.request.method_original", "url.scheme", "http.route",
		"http.response.status_code", "network.protocol.version", "network.protocol.name",
		"server.address", "server.port", "network.peer.address", "network.peer.port",
		"network.local.port", "client.address", "client.port", "user_agent.original",
		"http.request.body.size", "http.response.body.size", "error.type",
		"rpc.system", "rpc.service", "rpc.method", "rpc.grpc.status_code",
		"db.system.name", "db.namespace", "db.collection.name", "db.operation.name",
		"db.query.summary", "db.response.status_code", "db.operation.batch.size",
	} {
		m[k] = attrKey{k, true}
	}
	for _, k := range []string{"url.path", "url.full", "db.query.text"} {
		m[k] = attrKey{k, false}
	}
	return m
}()

// kv is one KeyValue as read, before it goes into a pcommon.Map.
type kv struct {
	key  []byte
	kind protowire.Number // the AnyValue field: 1 string, 2 bool, 3 int, 4 double; 0 none
	str  []byte
	num  uint64
}

// slot remembers the key and value last seen at one position of an attribute list: the
// core writes every span's attributes in the same order, so comparing bytes with them
// usually saves a map lookup.
type slot struct {
	key attrKey
	val string
}

const (
	// maxSlots bounds the positions remembered.
	maxSlots = 64
	// maxKVs attributes of a message are read without allocating.
	maxKVs = 32
)

// parseKV reads a KeyValue. A value field given twice is left to pdata, which merges
// the two; within the value the last field wins, as in pdata.
func parseKV(b []byte, a *kv) bool {
	if parseShortKV(b, a) {
		return true
	}
	*a = kv{}
	var value []byte
	seenValue := false
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok || f.typ != protowire.BytesType {
			return false
		}
		b = rest
		switch {
		case f.num == 1:
			a.key = f.b
		case f.num == 2 && !seenValue:
			seenValue, value = true, f.b
		default:
			return false
		}
	}
	for len(value) > 0 {
		f, rest, ok := next(value)
		if !ok {
			return false
		}
		value = rest
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			a.kind, a.str = 1, f.b
		case (f.num == 2 || f.num == 3) && f.typ == protowire.VarintType,
			f.num == 4 && f.typ == protowire.Fixed64Type:
			a.kind, a.num = f.num, f.u
		default:
			return false
		}
	}
	return true
}

// parseShortKV reads the KeyValue otlp.rs writes when key and value are under 128 bytes,
// {1: key, 2: {1: string}} or {1: key, 2: {3: int}}, byte by byte; ok is false for
// anything else, which parseKV then reads field by field.
func parseShortKV(b []byte, a *kv) bool {
	if len(b) < 4 || b[0] != 0x0a || b[1] >= 0x80 {
		return false
	}
	k := int(b[1])
	if len(b) < 4+k || b[2+k] != 0x12 || b[3+k] >= 0x80 || len(b) != 4+k+int(b[3+k]) {
		return false
	}
	a.key, b = b[2:2+k], b[4+k:]
	if len(b) < 2 {
		return false
	}
	switch b[0] {
	case 0x0a: // string_value
		if b[1] >= 0x80 || len(b) != 2+int(b[1]) {
			return false
		}
		a.kind, a.str = 1, b[2:]
	case 0x18: // int_value
		v, n := protowire.ConsumeVarint(b[1:])
		if n != len(b)-1 {
			return false
		}
		a.kind, a.num = 3, v
	default:
		return false
	}
	return true
}

// putAll fills the empty map m with kvs. A key given twice fails: pdata's Put replaces,
// where the protobuf decoding keeps both.
func (d *otlpDecoder) putAll(m pcommon.Map, kvs []kv, slots *[]slot) bool {
	m.EnsureCapacity(len(kvs))
	for i, a := range kvs {
		var sl *slot
		if i < maxSlots {
			if i >= len(*slots) {
				*slots = append(*slots, slot{})
			}
			sl = &(*slots)[i]
		} else {
			sl = &slot{}
		}
		if string(a.key) != sl.key.name {
			sl.key, sl.val = d.key(a.key), ""
		}
		k := sl.key.name
		switch a.kind {
		case 0:
			m.PutEmpty(k)
		case 1:
			switch {
			case !sl.key.intern:
				m.PutStr(k, string(a.str))
			case string(a.str) == sl.val:
				m.PutStr(k, sl.val)
			default:
				sl.val = d.intern(a.str)
				m.PutStr(k, sl.val)
			}
		case 2:
			m.PutBool(k, a.num != 0)
		case 3:
			m.PutInt(k, int64(a.num))
		case 4:
			m.PutDouble(k, math.Float64frombits(a.num))
		}
	}
	return m.Len() == len(kvs)
}

// key returns a key's shared string: a constant for the core's keys, else interned
// (resource attributes from OTEL_RESOURCE_ATTRIBUTES).
func (d *otlpDecoder) key(b []byte) attrKey {
	if k, ok := knownKeys[string(b)]; ok {
		return k
	}
	return attrKey{d.intern(b), true}
}

// intern returns b as a string shared with earlier equal values; lookups with
// m[string(b)] do not allocate.
func (d *otlpDecoder) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(b) <= maxInternLen {
		if len(d.strs) >= maxInterned {
			clear(d.strs)
		}
		d.strs[s] = s
	}
	return s
}
