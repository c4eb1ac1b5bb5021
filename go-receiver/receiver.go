package ebpfreceiver // import "github.com/otelcol-ebpf/otelcol-ebpf/go-receiver"

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"
	"go.opentelemetry.io/collector/receiver/receiverhelper"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/otelcol-ebpf/otelcol-ebpf/go-receiver/internal/metadata"
)

const (
	// pollTimeout bounds how long the poll loop is blind to Shutdown.
	pollTimeout   = 200 * time.Millisecond
	statsInterval = 10 * time.Second
	// noticeInterval is how soon a line the core has for the log (a process found
	// SDK-instrumented, ...) is logged.
	noticeInterval = time.Second
	obsFormat      = "ebpf"
)

type ebpfReceiver struct {
	cfg            *Config
	set            receiver.Settings
	next           consumer.Traces
	newNative      newNativeFunc
	obsrecv        *receiverhelper.ObsReport
	statsInterval  time.Duration
	noticeInterval time.Duration

	host component.Host
	done chan struct{}
	wg   sync.WaitGroup

	// mu keeps stop and free from racing with stats readers (the core forbids it).
	mu       sync.Mutex
	n        native
	shutdown bool

	metricReg      metric.Registration
	lastLoss       map[string]uint64
	decodeFailures atomic.Int64
	// dec is used by the poll loop, then by drain once the loop has returned.
	dec *otlpDecoder
}

func newReceiver(cfg *Config, set receiver.Settings, next consumer.Traces, newNative newNativeFunc) (*ebpfReceiver, error) {
	obsrecv, err := receiverhelper.NewObsReport(receiverhelper.ObsReportSettings{
		ReceiverID:             set.ID,
		Transport:              "ebpf",
		LongLivedCtx:           true,
		ReceiverCreateSettings: set,
	})
	if err != nil {
		return nil, err
	}
	return &ebpfReceiver{
		cfg:            cfg,
		set:            set,
		next:           next,
		newNative:      newNative,
		obsrecv:        obsrecv,
		statsInterval:  statsInterval,
		noticeInterval: noticeInterval,
		done:           make(chan struct{}),
		lastLoss:       map[string]uint64{},
		dec:            newOTLPDecoder(),
	}, nil
}

// Start loads the eBPF programs. Any failure is returned so the collector refuses to
// start and prints why.
func (r *ebpfReceiver) Start(_ context.Context, host component.Host) error {
	cfgJSON, err := r.cfg.nativeJSON()
	if err != nil {
		return err
	}
	n, err := r.newNative(cfgJSON)
	if err != nil {
		return err
	}
	if err = n.start(); err != nil {
		n.free()
		return err
	}
	r.set.Logger.Info("eBPF receiver started", zap.String("info", n.info()))

	r.mu.Lock()
	r.host, r.n = host, n
	r.mu.Unlock()
	if err = r.registerMetrics(); err != nil {
		r.mu.Lock()
		r.n.free()
		r.n = nil
		r.mu.Unlock()
		return err
	}
	r.wg.Add(2)
	go r.poll()
	go r.watchStats()
	return nil
}

// Shutdown detaches the programs and hands the spans still queued in the core to the
// pipeline, for as long as ctx allows. Safe without Start and when called twice.
func (r *ebpfReceiver) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	if r.n == nil || r.shutdown {
		r.mu.Unlock()
		return nil
	}
	r.shutdown = true
	r.mu.Unlock()

	close(r.done)
	r.wg.Wait() // the poll loop returns within pollTimeout

	r.mu.Lock()
	err := r.n.stop()
	r.mu.Unlock()
	if err == nil {
		err = r.drain(ctx)
	}
	r.logLoss()

	if r.metricReg != nil {
		err = errors.Join(err, r.metricReg.Unregister())
	}
	r.mu.Lock()
	r.n.free()
	r.n = nil
	r.mu.Unlock()
	return err
}

func (r *ebpfReceiver) poll() {
	defer r.wg.Done()
	for {
		select {
		case <-r.done:
			return
		default:
		}
		st, err := r.pollOnce(context.Background(), pollTimeout)
		if err == nil && st == statusStopped {
			err = errors.New("ebpf receiver: the eBPF core stopped on its own")
		}
		if err != nil {
			componentstatus.ReportStatus(r.host, componentstatus.NewFatalErrorEvent(err))
			return
		}
	}
}

// drain consumes what the stopped core still holds until it reports STOPPED.
func (r *ebpfReceiver) drain(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("ebpf receiver: shutdown ended before all spans were drained: %w", err)
		}
		timeout := pollTimeout
		if dl, ok := ctx.Deadline(); ok {
			timeout = max(min(timeout, time.Until(dl)), time.Millisecond)
		}
		st, err := r.pollOnce(ctx, timeout)
		if err != nil || st == statusStopped {
			return err
		}
	}
}

func (r *ebpfReceiver) pollOnce(ctx context.Context, timeout time.Duration) (status, error) {
	b, spans, st, err := r.n.nextBatch(timeout)
	if err == nil && st == statusOK {
		r.consume(ctx, b, spans)
	}
	return st, err
}

func (r *ebpfReceiver) consume(ctx context.Context, b []byte, nativeSpans int) {
	ctx = r.obsrecv.StartTracesOp(ctx)
	fallbacks := r.dec.fallbacks
	td, err := r.dec.unmarshal(b)
	if fallbacks == 0 && r.dec.fallbacks == 1 && err == nil {
		// Said once: every batch of a process with such a resource takes this path.
		r.set.Logger.Info("eBPF receiver: span batches the receiver's own decoder does not read " +
			"(a duplicate attribute key, a field it does not know) are decoded by pdata, more slowly")
	}
	if err != nil {
		r.decodeFailures.Add(1)
		r.set.Logger.Error("Dropping a span batch from the eBPF core that does not decode",
			zap.Int("spans", nativeSpans), zap.Int("bytes", len(b)), zap.Error(err))
		r.obsrecv.EndTracesOp(ctx, obsFormat, nativeSpans, err)
		return
	}
	count := td.SpanCount()
	err = r.next.ConsumeTraces(ctx, td)
	// Refused spans are counted by obsreport; there is no sender to retry them.
	r.obsrecv.EndTracesOp(ctx, obsFormat, count, err)
}

// snapshot reads the core counters, or nil once the core is gone.
func (r *ebpfReceiver) snapshot() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		return nil
	}
	vals, err := r.n.stats()
	if err != nil {
		r.set.Logger.Debug("Reading eBPF core counters failed", zap.Error(err))
		return nil
	}
	return vals
}

// registerMetrics exposes every core counter as otelcol_ebpf_<name>.
func (r *ebpfReceiver) registerMetrics() error {
	meter := r.set.MeterProvider.Meter(metadata.ScopeName)
	names := make([]string, 0)
	for name := range r.snapshot() {
		names = append(names, name)
	}
	slices.Sort(names)

	insts := make(map[string]metric.Int64Observable, len(names))
	all := make([]metric.Observable, 0, len(names)+1)
	for _, name := range names {
		var inst metric.Int64Observable
		var err error
		desc := metric.WithDescription("eBPF core: " + name)
		if gaugeCounters[name] {
			inst, err = meter.Int64ObservableGauge("otelcol_ebpf_"+name, desc)
		} else {
			inst, err = meter.Int64ObservableCounter("otelcol_ebpf_"+name, desc)
		}
		if err != nil {
			return err
		}
		insts[name] = inst
		all = append(all, inst)
	}
	undecodable, err := meter.Int64ObservableCounter("otelcol_ebpf_batches_undecodable",
		metric.WithDescription("Span batches from the eBPF core that failed to decode"))
	if err != nil {
		return err
	}
	all = append(all, undecodable)

	r.metricReg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		vals := r.snapshot()
		for name, inst := range insts {
			if v, ok := vals[name]; ok {
				o.ObserveInt64(inst, int64(v))
			}
		}
		o.ObserveInt64(undecodable, r.decodeFailures.Load())
		return nil
	}, all...)
	return err
}

func (r *ebpfReceiver) watchStats() {
	defer r.wg.Done()
	t := time.NewTicker(r.statsInterval)
	defer t.Stop()
	nt := time.NewTicker(r.noticeInterval)
	defer nt.Stop()
	for {
		select {
		case <-r.done:
			return
		case <-t.C:
			r.logLoss()
		case <-nt.C:
			r.logNotices()
		}
	}
}

// logNotices logs the lines the core has for the collector's log.
func (r *ebpfReceiver) logNotices() {
	for {
		r.mu.Lock()
		var line string
		var ok bool
		if r.n != nil {
			line, ok = r.n.nextNotice()
		}
		r.mu.Unlock()
		if !ok {
			return
		}
		r.set.Logger.Info("eBPF receiver: " + line)
	}
}

// logLoss warns about loss counters that grew since the last call.
func (r *ebpfReceiver) logLoss() {
	vals := r.snapshot()
	if fields := r.grown(vals, lossCounters); len(fields) > 0 {
		r.set.Logger.Warn("eBPF receiver: events dropped or only partly parsed since the last report", fields...)
	}
	if fields := r.grown(vals, contextCounters); len(fields) > 0 {
		r.set.Logger.Warn("eBPF receiver: trace context not carried in some requests since the last report (traces may be split)", fields...)
	}
}

// grown returns a field for each of names that grew since the last call.
func (r *ebpfReceiver) grown(vals map[string]uint64, names []string) []zap.Field {
	var fields []zap.Field
	for _, name := range names {
		v, ok := vals[name]
		if !ok {
			continue
		}
		if prev := r.lastLoss[name]; v > prev {
			fields = append(fields, zap.Uint64(name, v-prev))
		}
		r.lastLoss[name] = v
	}
	return fields
}
