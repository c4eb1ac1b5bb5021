//go:build !linux || !cgo

package ebpfreceiver // import "github.com/otelcol-ebpf/otelcol-ebpf/go-receiver"

import (
	"fmt"
	"runtime"
)

func newNative([]byte) (native, error) {
	missing := "cgo, CGO_ENABLED=0"
	if runtime.GOOS != "linux" {
		missing = "Linux, GOOS=" + runtime.GOOS
	}
	return nil, fmt.Errorf("the ebpf receiver needs Linux and cgo (built without: %s)", missing)
}
