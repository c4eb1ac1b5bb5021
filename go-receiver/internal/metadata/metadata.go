// Package metadata holds what mdatagen would generate from metadata.yaml; it is written
// by hand so the build does not need mdatagen.
package metadata // import "github.com/otelcol-ebpf/otelcol-ebpf/go-receiver/internal/metadata"

import "go.opentelemetry.io/collector/component"

var (
	Type      = component.MustNewType("ebpf")
	ScopeName = "github.com/otelcol-ebpf/otelcol-ebpf/go-receiver"
)

const TracesStability = component.StabilityLevelAlpha
