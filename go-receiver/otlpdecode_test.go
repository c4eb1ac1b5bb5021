package ebpfreceiver

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/protobuf/encoding/protowire"
)

// The samples are batches encoded by rust-core/src/otlp.rs: regenerate them with
// `cargo run --release -p otelcol-ebpf-core --example otlp_samples -- go-receiver/testdata/otlp`.
func samples(t testing.TB) map[string][]byte {
	paths, err := filepath.Glob("testdata/otlp/*.pb")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		out[filepath.Base(p)] = b
	}
	return out
}

// sameAsPdata decodes b with both decoders and fails unless they agree: equal traces,
// or both an error. It returns whether the fast path decoded b itself.
func sameAsPdata(t testing.TB, d *otlpDecoder, b []byte) bool {
	want, wantErr := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
	before := d.fallbacks
	got, err := d.unmarshal(b)
	if wantErr != nil {
		if err == nil {
			t.Fatalf("pdata fails (%v), the decoder does not", wantErr)
		}
		return false
	}
	if err != nil {
		t.Fatalf("the decoder fails (%v), pdata does not", err)
	}
	if !assert.ObjectsAreEqual(want, got) && !sameEncoding(want, got) {
		require.Equal(t, want, got) // prints the difference
	}
	return d.fallbacks == before
}

// sameEncoding: a NaN double is not equal to itself, so traces holding one compare by
// their protobuf encoding.
func sameEncoding(a, b ptrace.Traces) bool {
	m := ptrace.ProtoMarshaler{}
	ab, errA := m.MarshalTraces(a)
	bb, errB := m.MarshalTraces(b)
	return errA == nil && errB == nil && bytes.Equal(ab, bb)
}

func TestDecodeSamplesAsPdata(t *testing.T) {
	d := newOTLPDecoder()
	for name, b := range samples(t) {
		t.Run(name, func(t *testing.T) {
			fast := sameAsPdata(t, d, b)
			// A resource key set twice is kept twice by OTLP: only pdata can do that.
			assert.Equal(t, name != "duplicate_key.pb", fast, "fast path taken")
		})
	}
}

// nextBatch reuses its buffer: the traces must keep nothing of the bytes, on the fast
// path and on pdata's.
func TestDecodeKeepsNothingOfInput(t *testing.T) {
	d := newOTLPDecoder()
	m := &ptrace.ProtoMarshaler{}
	for name, b := range samples(t) {
		in := append([]byte(nil), b...)
		td, err := d.unmarshal(in)
		require.NoError(t, err, name)
		before, err := m.MarshalTraces(td)
		require.NoError(t, err)
		for i := range in {
			in[i] = 0xff
		}
		after, err := m.MarshalTraces(td)
		require.NoError(t, err)
		require.Equal(t, before, after, name)
	}
	require.Positive(t, d.fallbacks, "duplicate_key.pb goes to pdata")
}

// The resource of a process in a pod's container (otlp_samples' container_resource):
// every attribute on the fast path, each once, in the core's order.
func TestDecodeContainerResource(t *testing.T) {
	d := newOTLPDecoder()
	b := samples(t)["container.pb"]
	require.True(t, sameAsPdata(t, d, b), "fast path taken")
	td, err := d.unmarshal(b)
	require.NoError(t, err)
	res := td.ResourceSpans().At(0).Resource().Attributes()
	var keys []string
	for k := range res.All() {
		keys = append(keys, k)
	}
	assert.Equal(t, []string{
		"service.name", "service.namespace", "service.version", "k8s.container.name",
		"process.pid", "process.executable.name", "process.executable.path",
		"container.id", "k8s.pod.uid", "host.name", "telemetry.distro.name",
	}, keys)
	want := map[string]string{
		"service.name":       "cart",
		"service.namespace":  "shop",
		"service.version":    "v1.4.2",
		"k8s.container.name": "cart",
		"container.id":       "3f4e2b1c0d9a8b7c6d5e4f30211203948576afbecd0123456789abcdef012345",
		"k8s.pod.uid":        "8a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9",
	}
	for k, v := range want {
		got, ok := res.Get(k)
		require.True(t, ok, k)
		assert.Equal(t, v, got.Str(), k)
	}
}

func TestDecodeHandmadeValues(t *testing.T) {
	td, err := newOTLPDecoder().unmarshal(samples(t)["handmade.pb"])
	require.NoError(t, err)
	var names []string
	var long string
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, s := range ss.Spans().All() {
				names = append(names, s.Name())
				if v, ok := s.Attributes().Get("long"); ok {
					long = v.Str()
				}
			}
		}
	}
	assert.Contains(t, names, "GET /ünïcödé/日本語")
	assert.Contains(t, names, "SELECT public.users")
	assert.Equal(t, strings.Repeat("x", 5000), long)
}

// msg appends a length-delimited field.
func msg(b []byte, num protowire.Number, body []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, body)
}

func varint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// request wraps span bodies into an ExportTraceServiceRequest with one resource and
// one scope.
func request(spans ...[]byte) []byte {
	var ss []byte
	ss = msg(ss, 1, msg(nil, 1, []byte("scope")))
	for _, s := range spans {
		ss = msg(ss, 2, s)
	}
	rs := msg(nil, 1, msg(nil, 1, keyValue("service.name", msg(nil, 1, []byte("svc")))))
	rs = msg(rs, 2, ss)
	return msg(nil, 1, rs)
}

func keyValue(key string, value []byte) []byte {
	b := msg(nil, 1, []byte(key))
	if value != nil {
		b = msg(b, 2, value)
	}
	return b
}

func spanWith(fields ...[]byte) []byte {
	b := msg(nil, 1, make([]byte, 16))
	b = msg(b, 2, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	b = msg(b, 5, []byte("GET /"))
	for _, f := range fields {
		b = append(b, f...)
	}
	return b
}

func double(v float64) []byte {
	b := protowire.AppendTag(nil, 4, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, math.Float64bits(v))
}

// handmade are inputs otlp.rs does not write today, each decoded by the fast path or
// left to pdata, and always as pdata decodes it.
func handmade() map[string][]byte {
	attr := func(key string, value []byte) []byte { return msg(nil, 9, keyValue(key, value)) }
	return map[string][]byte{
		"empty":             nil,
		"empty resource":    msg(nil, 1, nil),
		"bool and double":   request(spanWith(attr("b", varint(nil, 2, 1)), attr("d", double(-1.5)))),
		"no value":          request(spanWith(attr("k", nil))),
		"empty value":       request(spanWith(attr("k", []byte{}))),
		"last value wins":   request(spanWith(attr("k", append(msg(nil, 1, []byte("s")), varint(nil, 3, 7)...)))),
		"value twice":       request(spanWith(msg(nil, 9, append(keyValue("k", msg(nil, 1, []byte("a"))), msg(nil, 2, varint(nil, 3, 1))...)))),
		"bytes value":       request(spanWith(attr("k", msg(nil, 7, []byte{0, 1})))),
		"array value":       request(spanWith(attr("k", msg(nil, 5, msg(nil, 1, msg(nil, 1, []byte("x"))))))),
		"duplicate key":     request(spanWith(attr("k", varint(nil, 3, 1)), attr("k", varint(nil, 3, 2)))),
		"event":             request(spanWith(msg(nil, 11, msg(nil, 2, []byte("ev"))))),
		"link":              request(spanWith(msg(nil, 13, msg(nil, 1, make([]byte, 16))))),
		"status twice":      request(spanWith(msg(nil, 15, varint(nil, 3, 2)), msg(nil, 15, msg(nil, 2, []byte("m"))))),
		"status code 1":     request(spanWith(msg(nil, 15, varint(nil, 1, 2)))),
		"odd kind":          request(spanWith(varint(nil, 6, 1<<40))),
		"dropped counts":    request(spanWith(varint(nil, 10, 1), varint(nil, 12, 2), varint(nil, 14, 3))),
		"name twice":        request(spanWith(msg(nil, 5, []byte("second")))),
		"empty trace id":    request(spanWith(msg(nil, 1, nil))),
		"short trace id":    request(spanWith(msg(nil, 1, []byte{1, 2, 3}))),
		"long span id":      request(spanWith(msg(nil, 2, make([]byte, 9)))),
		"name as varint":    request(spanWith(varint(nil, 5, 1))),
		"unknown field":     request(spanWith(varint(nil, 99, 1))),
		"trace state":       request(spanWith(msg(nil, 3, []byte("a=b")))),
		"invalid utf-8":     request(spanWith(msg(nil, 5, []byte{0xff, 0xfe}), attr("k", msg(nil, 1, []byte{0xc3})))),
		"truncated":         request(spanWith())[:20],
		"bad varint":        append(request(spanWith()), 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
		"group":             append(request(spanWith()), 0x0b, 0x0c),
		"schema urls":       msg(nil, 1, append(msg(nil, 3, []byte("https://s")), msg(nil, 2, msg(nil, 3, []byte("https://t")))...)),
		"scope attributes":  msg(nil, 1, msg(nil, 2, msg(nil, 1, append(msg(nil, 3, keyValue("a", msg(nil, 1, []byte("b")))), varint(nil, 4, 2)...)))),
		"resource dropped":  msg(nil, 1, msg(nil, 1, varint(nil, 2, 5))),
		"resource entities": msg(nil, 1, msg(nil, 1, msg(nil, 3, msg(nil, 2, []byte("t"))))),
	}
}

func TestDecodeHandmadeAsPdata(t *testing.T) {
	for name, b := range handmade() {
		t.Run(name, func(t *testing.T) {
			sameAsPdata(t, newOTLPDecoder(), b)
		})
	}
}

// Every prefix of a batch: cut fields must fail or fall back, never pass as something else.
func TestDecodeTruncatedAsPdata(t *testing.T) {
	b := samples(t)["rec_grpc.pb"]
	d := newOTLPDecoder()
	for n := range len(b) {
		sameAsPdata(t, d, b[:n])
	}
}

func TestInternIsBounded(t *testing.T) {
	d := newOTLPDecoder()
	for i := range 3 * maxInterned {
		d.intern([]byte(strings.Repeat("v", i%maxInternLen+1) + string(rune(i))))
	}
	assert.LessOrEqual(t, len(d.strs), maxInterned)
	assert.Equal(t, "abc", d.intern([]byte("abc")))
	long := []byte(strings.Repeat("z", maxInternLen+1))
	assert.Equal(t, string(long), d.intern(long))
	assert.NotContains(t, d.strs, string(long))
}

func FuzzDecode(f *testing.F) {
	// Small seeds only: the fuzzer minimizes every new input it finds, which takes
	// minutes on a batch of tens of kB.
	for _, b := range samples(f) {
		if len(b) <= 4096 {
			f.Add(b)
		}
	}
	for _, b := range handmade() {
		f.Add(b)
	}
	d := newOTLPDecoder()
	f.Fuzz(func(t *testing.T, b []byte) {
		sameAsPdata(t, d, b)
	})
}

// BenchmarkDecode turns one batch of the nginx benchmark's spans into ptrace.Traces:
// `go test -run - -bench Decode -benchmem`.
// cpuTime is the CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkDecode(b *testing.B) {
	batch := samples(b)["bench_nginx.pb"]
	pdata := &ptrace.ProtoUnmarshaler{}
	fast := newOTLPDecoder()
	for _, c := range []struct {
		name string
		dec  func([]byte) (ptrace.Traces, error)
	}{
		{"pdata", pdata.UnmarshalTraces},
		{"fast", fast.unmarshal},
	} {
		b.Run(c.name, func(b *testing.B) {
			td, err := c.dec(batch)
			require.NoError(b, err)
			spans := td.SpanCount()
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				_, _ = c.dec(batch)
			}
			b.StopTimer()
			cpu := cpuTime() - cpu0
			runtime.ReadMemStats(&m1)
			n := float64(b.N * spans)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/span")
			// With the GC's work on other threads, which wall time misses.
			b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/span")
			b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/n, "allocs/span")
			b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/n, "B/span")
		})
	}
}
