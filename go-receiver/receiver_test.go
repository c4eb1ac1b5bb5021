package ebpfreceiver

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/receivertest"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/otelcol-ebpf/otelcol-ebpf/go-receiver/internal/metadata"
)

// fakeNative plays the Rust core: it hands out queued batches, holds some back until
// stop (as the core flushes pending spans on stop) and checks the threading contract.
type fakeNative struct {
	t *testing.T

	mu        sync.Mutex
	queued    [][]byte
	heldBack  [][]byte // released by stop
	stopped   bool
	freed     bool
	neverDone bool  // after stop, time out forever instead of returning STOPPED
	batchErr  error // returned by nextBatch
	startErr  error
	counters  map[string]uint64
	notices   []string
	calls     []string

	active atomic.Int32 // calls in progress, to catch stop/free racing with others
}

func (f *fakeNative) enter(exclusive bool) func() {
	if n := f.active.Add(1); exclusive && n != 1 {
		f.t.Errorf("stop/free raced with %d other calls", n-1)
	}
	return func() { f.active.Add(-1) }
}

func (f *fakeNative) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeNative) start() error {
	defer f.enter(false)()
	f.record("start")
	return f.startErr
}

func (f *fakeNative) nextBatch(timeout time.Duration) ([]byte, int, status, error) {
	defer f.enter(false)()
	f.mu.Lock()
	if f.freed {
		f.t.Error("nextBatch after free")
	}
	if f.batchErr != nil {
		f.mu.Unlock()
		return nil, 0, 0, f.batchErr
	}
	if len(f.queued) > 0 {
		b := f.queued[0]
		f.queued = f.queued[1:]
		f.mu.Unlock()
		return b, spanCount(b), statusOK, nil
	}
	done := f.stopped && !f.neverDone
	f.mu.Unlock()
	if done {
		return nil, 0, statusStopped, nil
	}
	time.Sleep(min(timeout, 5*time.Millisecond))
	return nil, 0, statusTimeout, nil
}

func (f *fakeNative) stats() (map[string]uint64, error) {
	defer f.enter(false)()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.freed {
		f.t.Error("stats after free")
	}
	out := map[string]uint64{}
	for k, v := range f.counters {
		out[k] = v
	}
	return out, nil
}

func (f *fakeNative) info() string { return "fake core: 3 hooks attached" }

func (f *fakeNative) nextNotice() (string, bool) {
	defer f.enter(false)()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.notices) == 0 {
		return "", false
	}
	line := f.notices[0]
	f.notices = f.notices[1:]
	return line, true
}

func (f *fakeNative) stop() error {
	defer f.enter(true)()
	f.record("stop")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
	f.queued = append(f.queued, f.heldBack...)
	f.heldBack = nil
	return nil
}

func (f *fakeNative) free() {
	defer f.enter(true)()
	f.record("free")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.freed = true
}

func (f *fakeNative) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string{}, f.calls...)
}

// batch encodes an ExportTraceServiceRequest with n spans.
func batch(t *testing.T, n int) []byte {
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty()
	for i := range n {
		s := ss.Spans().AppendEmpty()
		s.SetName("GET /")
		s.SetTraceID([16]byte{1, byte(i)})
		s.SetSpanID([8]byte{2, byte(i)})
	}
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(td)
	require.NoError(t, err)
	return b
}

func spanCount(b []byte) int {
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(b)
	if err != nil {
		return 7 // what the core claims for the undecodable test batch
	}
	return td.SpanCount()
}

type testEnv struct {
	r    *ebpfReceiver
	fake *fakeNative
	logs *observer.ObservedLogs
	tel  *componenttest.Telemetry
}

func newTestReceiver(t *testing.T, fake *fakeNative, next consumer.Traces) testEnv {
	t.Helper()
	fake.t = t
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	core, logs := observer.New(zapcore.DebugLevel)
	set := receivertest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	set.Logger = zap.New(core)
	r, err := newReceiver(createDefaultConfig().(*Config), set, next, func(cfgJSON []byte) (native, error) {
		assert.JSONEq(t, `{"exclude_paths":[],"exclude_ports":[],"context_propagation":"headers","skip_sdk_instrumented":true,"database":{"capture_queries":true,"sanitize_queries":true,"max_query_length":1024},"sampling":{"ratio":1,"parent_based":true},"default_exclude":[{"exe_name":"*otelcol*"}]}`, string(cfgJSON))
		return fake, nil
	})
	require.NoError(t, err)
	return testEnv{r: r, fake: fake, logs: logs, tel: tel}
}

func TestBatchesFlowToConsumer(t *testing.T) {
	sink := new(consumertest.TracesSink)
	fake := &fakeNative{queued: [][]byte{batch(t, 2), batch(t, 3), batch(t, 1)}}
	env := newTestReceiver(t, fake, sink)

	require.NoError(t, env.r.Start(context.Background(), componenttest.NewNopHost()))
	require.Eventually(t, func() bool { return sink.SpanCount() == 6 }, 5*time.Second, time.Millisecond)
	require.NoError(t, env.r.Shutdown(context.Background()))

	assert.Len(t, sink.AllTraces(), 3)
	assert.Equal(t, []string{"start", "stop", "free"}, fake.callLog())
	info := env.logs.FilterMessage("eBPF receiver started").All()
	require.Len(t, info, 1)
	assert.Equal(t, zapcore.InfoLevel, info[0].Level)
	assert.Equal(t, "fake core: 3 hooks attached", info[0].ContextMap()["info"])

	assertMetric(t, env.tel, "otelcol_receiver_accepted_spans", 6)
}

func TestShutdownWithoutStartAndTwice(t *testing.T) {
	env := newTestReceiver(t, &fakeNative{}, consumertest.NewNop())
	require.NoError(t, env.r.Shutdown(context.Background()))
	require.NoError(t, env.r.Shutdown(context.Background()))

	env = newTestReceiver(t, &fakeNative{}, consumertest.NewNop())
	require.NoError(t, env.r.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, env.r.Shutdown(context.Background()))
	require.NoError(t, env.r.Shutdown(context.Background()))
	assert.Equal(t, []string{"start", "stop", "free"}, env.fake.callLog())
}

func TestShutdownDrains(t *testing.T) {
	sink := new(consumertest.TracesSink)
	fake := &fakeNative{heldBack: [][]byte{batch(t, 4), batch(t, 5)}}
	env := newTestReceiver(t, fake, sink)

	require.NoError(t, env.r.Start(context.Background(), componenttest.NewNopHost()))
	require.NoError(t, env.r.Shutdown(context.Background()))
	assert.Equal(t, 9, sink.SpanCount())
	assert.Equal(t, []string{"start", "stop", "free"}, fake.callLog())
}

func TestShutdownDrainBoundedByContext(t *testing.T) {
	fake := &fakeNative{neverDone: true}
	env := newTestReceiver(t, fake, consumertest.NewNop())
	require.NoError(t, env.r.Start(context.Background(), componenttest.NewNopHost()))

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := env.r.Shutdown(ctx)
	assert.ErrorContains(t, err, "before all spans were drained")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, []string{"start", "stop", "free"}, fake.callLog(), "freed even when the drain is cut short")
}

func TestConsumerErrorIsRefused(t *testing.T) {
	fake := &fakeNative{queued: [][]byte{batch(t, 3)}}
	env := newTestReceiver(t, fake, consumertest.NewErr(errors.New("memory limit exceeded")))

	require.NoError(t, env.r.Start(context.Background(), componenttest.NewNopHost()))
	require.Eventually(t, func() bool { return metricValue(env.tel, "otelcol_receiver_refused_spans") == 3 }, 5*time.Second, time.Millisecond)
	require.NoError(t, env.r.Shutdown(context.Background()))
	assertMetric(t, env.tel, "otelcol_receiver_accepted_spans", 0)
}

func TestUndecodableBatchIsCounted(t *testing.T) {
	sink := new(consumertest.TracesSink)
	fake := &fakeNative{queued: [][]byte{{0xff, 0xff, 0xff}, batch(t, 2)}}
	env := newTestReceiver(t, fake, sink)

	require.NoError(t, env.r.Start(context.Background(), componenttest.NewNopHost()))
	require.Eventually(t, func() bool { return sink.SpanCount() == 2 }, 5*time.Second, time.Millisecond)
	assertMetric(t, env.tel, "otelcol_ebpf_batches_undecodable", 1)
	require.NoError(t, env.r.Shutdown(context.Background()))

	logged := env.logs.FilterLevelExact(zapcore.ErrorLevel).All()
	require.Len(t, logged, 1)
	assert.Contains(t, logged[0].Message, "does not decode")
	assertMetric(t, env.tel, "otelcol_receiver_refused_spans", 7)
}

func TestBatchesOutsideTheFastDecoderAreDecodedOnce(t *testing.T) {
	dup := samples(t)["duplicate_key.pb"]
	sink := new(consumertest.TracesSink)
	fake := &fakeNative{queued: [][]byte{dup, batch(t, 2), dup}}
	env := newTestReceiver(t, fake, sink)

	require.NoError(t, env.r.Start(context.Background(), componenttest.NewNopHost()))
	require.Eventually(t, func() bool { return sink.SpanCount() == 4 }, 5*time.Second, time.Millisecond)
	assertMetric(t, env.tel, "otelcol_ebpf_batches_undecodable", 0)
	require.NoError(t, env.r.Shutdown(context.Background()))
	assert.Equal(t, 1, env.logs.FilterMessageSnippet("decoded by pdata").Len(), "logged once")
}

func TestCoreCountersAndLossWarnings(t *testing.T) {
	fake := &fakeNative{counters: map[string]uint64{
		"events_lost": 5, "spans_emitted": 10, "processes_traced": 3, "streams_unparsable": 0,
	}}
	env := newTestReceiver(t, fake, consumertest.NewNop())
	env.r.statsInterval = 5 * time.Millisecond

	require.NoError(t, env.r.Start(context.Background(), componenttest.NewNopHost()))
	require.Eventually(t, func() bool { return env.logs.FilterLevelExact(zapcore.WarnLevel).Len() == 1 }, 5*time.Second, time.Millisecond)
	fake.mu.Lock()
	fake.counters["events_lost"] = 8
	fake.counters["streams_unparsable"] = 2
	fake.mu.Unlock()
	require.Eventually(t, func() bool { return env.logs.FilterLevelExact(zapcore.WarnLevel).Len() == 2 }, 5*time.Second, time.Millisecond)

	assertMetric(t, env.tel, "otelcol_ebpf_events_lost", 8)
	assertMetric(t, env.tel, "otelcol_ebpf_spans_emitted", 10)
	assertMetric(t, env.tel, "otelcol_ebpf_processes_traced", 3)
	m, err := env.tel.GetMetric("otelcol_ebpf_processes_traced")
	require.NoError(t, err)
	assert.IsType(t, metricdata.Gauge[int64]{}, m.Data)
	m, err = env.tel.GetMetric("otelcol_ebpf_events_lost")
	require.NoError(t, err)
	assert.IsType(t, metricdata.Sum[int64]{}, m.Data)
	assert.True(t, m.Data.(metricdata.Sum[int64]).IsMonotonic)

	require.NoError(t, env.r.Shutdown(context.Background()))
	warns := env.logs.FilterLevelExact(zapcore.WarnLevel).All()
	require.Len(t, warns, 2, "no warning when nothing grew")
	assert.Equal(t, map[string]any{"events_lost": uint64(5)}, warns[0].ContextMap())
	assert.Equal(t, map[string]any{"events_lost": uint64(3), "streams_unparsable": uint64(2)}, warns[1].ContextMap())
}

func TestCoreNoticesAreLogged(t *testing.T) {
	fake := &fakeNative{notices: []string{"process 42 (/usr/bin/python3) exports OTLP itself: SDK-instrumented"}}
	env := newTestReceiver(t, fake, consumertest.NewNop())
	env.r.noticeInterval = 5 * time.Millisecond
	require.NoError(t, env.r.Start(context.Background(), componenttest.NewNopHost()))
	require.Eventually(t, func() bool {
		return env.logs.FilterMessageSnippet("SDK-instrumented").Len() == 1
	}, 5*time.Second, time.Millisecond)
	require.NoError(t, env.r.Shutdown(context.Background()))
	logged := env.logs.FilterMessageSnippet("SDK-instrumented").All()
	require.Len(t, logged, 1, "each notice is logged once")
	assert.Equal(t, "eBPF receiver: process 42 (/usr/bin/python3) exports OTLP itself: SDK-instrumented", logged[0].Message)
	assert.Equal(t, zapcore.InfoLevel, logged[0].Level)
}

func TestContextFallbackWarnings(t *testing.T) {
	fake := &fakeNative{counters: map[string]uint64{"requests_not_injected": 0, "context_injected": 4}}
	env := newTestReceiver(t, fake, consumertest.NewNop())
	env.r.statsInterval = 5 * time.Millisecond
	require.NoError(t, env.r.Start(context.Background(), componenttest.NewNopHost()))
	fake.mu.Lock()
	fake.counters["requests_not_injected"] = 2
	fake.counters["context_injected"] = 9
	fake.mu.Unlock()
	require.Eventually(t, func() bool { return env.logs.FilterLevelExact(zapcore.WarnLevel).Len() == 1 }, 5*time.Second, time.Millisecond)
	assertMetric(t, env.tel, "otelcol_ebpf_context_injected", 9)
	require.NoError(t, env.r.Shutdown(context.Background()))
	w := env.logs.FilterLevelExact(zapcore.WarnLevel).All()
	require.Len(t, w, 1)
	assert.Contains(t, w[0].Message, "trace context not carried")
	assert.Equal(t, map[string]any{"requests_not_injected": uint64(2)}, w[0].ContextMap())
}

func TestStartErrors(t *testing.T) {
	set := receivertest.NewNopSettings(metadata.Type)
	r, err := newReceiver(createDefaultConfig().(*Config), set, consumertest.NewNop(), func([]byte) (native, error) {
		return nil, errors.New("ebpf receiver: create: invalid configuration: invalid config key x: y")
	})
	require.NoError(t, err)
	assert.EqualError(t, r.Start(context.Background(), componenttest.NewNopHost()), "ebpf receiver: create: invalid configuration: invalid config key x: y")
	assert.NoError(t, r.Shutdown(context.Background()))

	fake := &fakeNative{startErr: resultError("start", resultPermission, "permission denied: bpf()")}
	env := newTestReceiver(t, fake, consumertest.NewNop())
	assert.ErrorContains(t, env.r.Start(context.Background(), componenttest.NewNopHost()), "insufficient privileges: permission denied: bpf()")
	assert.NoError(t, env.r.Shutdown(context.Background()))
	assert.Equal(t, []string{"start", "free"}, fake.callLog())

	bad := &Config{ExcludePorts: []int{0}}
	r, err = newReceiver(bad, set, consumertest.NewNop(), func([]byte) (native, error) {
		t.Error("native built from an invalid config")
		return nil, nil
	})
	require.NoError(t, err)
	assert.ErrorContains(t, r.Start(context.Background(), componenttest.NewNopHost()), "exclude_ports[0]")
}

type statusHost struct {
	component.Host
	events chan *componentstatus.Event
}

func (h statusHost) Report(e *componentstatus.Event) { h.events <- e }

func TestCoreFailureIsFatal(t *testing.T) {
	host := statusHost{Host: componenttest.NewNopHost(), events: make(chan *componentstatus.Event, 1)}
	for name, fake := range map[string]*fakeNative{
		"error":   {batchErr: resultError("next batch", resultPanic, "")},
		"stopped": {stopped: true},
	} {
		t.Run(name, func(t *testing.T) {
			env := newTestReceiver(t, fake, consumertest.NewNop())
			require.NoError(t, env.r.Start(context.Background(), host))
			select {
			case e := <-host.events:
				assert.Equal(t, componentstatus.StatusFatalError, e.Status())
				assert.ErrorContains(t, e.Err(), "eBPF core")
			case <-time.After(5 * time.Second):
				t.Fatal("no fatal status reported")
			}
			fake.mu.Lock()
			fake.batchErr = nil
			fake.mu.Unlock()
			require.NoError(t, env.r.Shutdown(context.Background()))
		})
	}
}

// metricValue sums the int64 data points of a metric, -1 if absent.
func metricValue(tel *componenttest.Telemetry, name string) int64 {
	m, err := tel.GetMetric(name)
	if err != nil {
		return -1
	}
	var sum int64
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, dp := range d.DataPoints {
			sum += dp.Value
		}
	case metricdata.Gauge[int64]:
		for _, dp := range d.DataPoints {
			sum += dp.Value
		}
	}
	return sum
}

func assertMetric(t *testing.T, tel *componenttest.Telemetry, name string, want int64) {
	t.Helper()
	assert.Equal(t, want, metricValue(tel, name), name)
}
