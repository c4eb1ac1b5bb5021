//go:build linux && cgo

package ebpfreceiver

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These exercise the real C ABI without start, which would attach to the host kernel.

func TestNativeLifecycleWithoutStart(t *testing.T) {
	b, err := createDefaultConfig().(*Config).nativeJSON()
	require.NoError(t, err)
	n, err := newNative(b)
	require.NoError(t, err)
	defer n.free()

	vals, err := n.stats()
	require.NoError(t, err)
	for _, name := range append(lossCounters, "spans_emitted", "processes_traced", "connections_tracked") {
		assert.Contains(t, vals, name)
	}
	assert.NotEmpty(t, n.info())
	_, ok := n.nextNotice()
	assert.False(t, ok, "nothing to log before start")

	_, _, st, err := n.nextBatch(10 * time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, statusStopped, st, "a core that never started has nothing to hand over")
	require.NoError(t, n.stop())
	require.NoError(t, n.stop())
}

func TestNativeRejectsBadConfig(t *testing.T) {
	_, err := newNative([]byte(`{"exclude_ports":[0]}`))
	assert.ErrorContains(t, err, "ebpf receiver: create: invalid configuration: invalid config key exclude_ports")

	_, err = newNative([]byte(`{"bogus":1}`))
	assert.ErrorContains(t, err, "invalid configuration")
}
