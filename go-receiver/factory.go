package ebpfreceiver // import "github.com/otelcol-ebpf/otelcol-ebpf/go-receiver"

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/receiver"

	"github.com/otelcol-ebpf/otelcol-ebpf/go-receiver/internal/metadata"
)

// NewFactory creates the factory of the ebpf receiver.
func NewFactory() receiver.Factory {
	return receiver.NewFactory(
		metadata.Type,
		createDefaultConfig,
		receiver.WithTraces(createTraces, metadata.TracesStability))
}

func createDefaultConfig() component.Config {
	return &Config{
		ContextPropagation:  "headers",
		SkipSDKInstrumented: true,
		Database:            DatabaseConfig{CaptureQueries: true, SanitizeQueries: true, MaxQueryLength: 1024},
		Sampling:            SamplingConfig{Ratio: 1, ParentBased: true},
		DefaultExclude:      collectorFamily(),
	}
}

func createTraces(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Traces) (receiver.Traces, error) {
	return newReceiver(cfg.(*Config), set, next, newNative)
}
