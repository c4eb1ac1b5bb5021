//go:build !linux || !cgo

package ebpfreceiver

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/otelcol-ebpf/otelcol-ebpf/go-receiver/internal/metadata"
)

func TestStartWithoutCgoFails(t *testing.T) {
	f := NewFactory()
	r, err := f.CreateTraces(context.Background(), receivertest.NewNopSettings(metadata.Type), f.CreateDefaultConfig(), consumertest.NewNop())
	require.NoError(t, err)
	err = r.Start(context.Background(), componenttest.NewNopHost())
	assert.ErrorContains(t, err, "the ebpf receiver needs Linux and cgo (built without: ")
	assert.NoError(t, r.Shutdown(context.Background()))
}
