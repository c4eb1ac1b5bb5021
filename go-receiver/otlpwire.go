package ebpfreceiver // import "github.com/otelcol-ebpf/otelcol-ebpf/go-receiver"

import "google.golang.org/protobuf/encoding/protowire"

// field is one decoded protobuf field: u holds varint and fixed values, b a
// length-delimited one (a slice of the input).
type field struct {
	num protowire.Number
	typ protowire.Type
	u   uint64
	b   []byte
}

// next reads the field at the start of b; ok is false for malformed input and groups.
func next(b []byte) (f field, rest []byte, ok bool) {
	// Most fields the core writes: a one-byte tag, a length below 128. A field number 0
	// passes here, and is refused by every caller.
	if len(b) >= 2 && b[0] < 0x80 && b[0]&7 == byte(protowire.BytesType) && b[1] < 0x80 {
		if n := int(b[1]); n <= len(b)-2 {
			return field{num: protowire.Number(b[0] >> 3), typ: protowire.BytesType, b: b[2 : 2+n]}, b[2+n:], true
		}
	}
	return nextSlow(b)
}

func nextSlow(b []byte) (f field, rest []byte, ok bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return f, nil, false
	}
	b = b[n:]
	f.num, f.typ = num, typ
	switch typ {
	case protowire.VarintType:
		f.u, n = protowire.ConsumeVarint(b)
	case protowire.Fixed64Type:
		f.u, n = protowire.ConsumeFixed64(b)
	case protowire.Fixed32Type:
		var v uint32
		v, n = protowire.ConsumeFixed32(b)
		f.u = uint64(v)
	case protowire.BytesType:
		f.b, n = protowire.ConsumeBytes(b)
	default:
		return f, nil, false
	}
	if n < 0 {
		return f, nil, false
	}
	return f, b[n:], true
}

// count returns how many length-delimited fields num b holds, so that slices can be
// sized before they are filled; ok is false when b does not parse.
func count(b []byte, num protowire.Number) (int, bool) {
	n := 0
	for len(b) > 0 {
		f, rest, ok := next(b)
		if !ok {
			return 0, false
		}
		if f.num == num && f.typ == protowire.BytesType {
			n++
		}
		b = rest
	}
	return n, true
}
