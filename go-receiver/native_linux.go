//go:build linux && cgo

package ebpfreceiver // import "github.com/otelcol-ebpf/otelcol-ebpf/go-receiver"

/*
#cgo CFLAGS: -I${SRCDIR}/../include
#cgo LDFLAGS: ${SRCDIR}/../build/lib/libotelcol_ebpf_core.a -ldl -lpthread -lm -lgcc_s -lc
#include "otelcol_ebpf.h"
*/
import "C"

import (
	"time"
	"unsafe"
)

const (
	errBufLen  = 2048
	infoBufLen = 4096
)

type cNative struct {
	h     *C.OtelEbpfReceiver
	names []string
	// batch holds the last batch; reused, since nextBatch's bytes only live until the
	// next call (a new slice per batch was a third of the Go side's allocated bytes).
	batch []byte
}

var _ native = (*cNative)(nil)

func newNative(cfgJSON []byte) (native, error) {
	if len(cfgJSON) == 0 {
		cfgJSON = []byte("{}")
	}
	errBuf := make([]byte, errBufLen)
	var h *C.OtelEbpfReceiver
	rc := C.otel_ebpf_receiver_new((*C.uint8_t)(unsafe.Pointer(&cfgJSON[0])), C.size_t(len(cfgJSON)),
		&h, (*C.char)(unsafe.Pointer(&errBuf[0])), C.size_t(len(errBuf)))
	if rc != C.OTEL_EBPF_RESULT_OK {
		return nil, resultError("create", int(rc), cString(errBuf))
	}
	n := &cNative{h: h}
	for i := range int(C.otel_ebpf_stats_count()) {
		if name := C.otel_ebpf_stats_name(C.size_t(i)); name != nil {
			n.names = append(n.names, C.GoString(name))
		}
	}
	return n, nil
}

func (n *cNative) start() error {
	errBuf := make([]byte, errBufLen)
	rc := C.otel_ebpf_receiver_start(n.h, (*C.char)(unsafe.Pointer(&errBuf[0])), C.size_t(len(errBuf)))
	if rc != C.OTEL_EBPF_RESULT_OK {
		return resultError("start", int(rc), cString(errBuf))
	}
	return nil
}

func (n *cNative) nextBatch(timeout time.Duration) ([]byte, int, status, error) {
	var buf C.OtelEbpfBuffer
	rc := C.otel_ebpf_receiver_next_batch(n.h, C.uint32_t(timeout.Milliseconds()), &buf)
	switch rc {
	case C.OTEL_EBPF_RESULT_OK:
		// Copy so the core's buffer can be released at once.
		n.batch = append(n.batch[:0], unsafe.Slice((*byte)(unsafe.Pointer(buf.ptr)), int(buf.len))...)
		spans := int(buf.spans)
		C.otel_ebpf_buffer_free(&buf)
		return n.batch, spans, statusOK, nil
	case C.OTEL_EBPF_RESULT_TIMEOUT:
		return nil, 0, statusTimeout, nil
	case C.OTEL_EBPF_RESULT_STOPPED:
		return nil, 0, statusStopped, nil
	default:
		return nil, 0, 0, resultError("next batch", int(rc), "")
	}
}

func (n *cNative) stats() (map[string]uint64, error) {
	out := make(map[string]uint64, len(n.names))
	if len(n.names) == 0 {
		return out, nil
	}
	vals := make([]C.uint64_t, len(n.names))
	var written C.size_t
	if rc := C.otel_ebpf_receiver_stats(n.h, &vals[0], C.size_t(len(vals)), &written); rc != C.OTEL_EBPF_RESULT_OK {
		return nil, resultError("stats", int(rc), "")
	}
	for i := range int(written) {
		out[n.names[i]] = uint64(vals[i])
	}
	return out, nil
}

func (n *cNative) info() string {
	buf := make([]byte, infoBufLen)
	if rc := C.otel_ebpf_receiver_info(n.h, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf))); rc != C.OTEL_EBPF_RESULT_OK {
		return resultError("info", int(rc), "").Error()
	}
	return cString(buf)
}

func (n *cNative) nextNotice() (string, bool) {
	buf := make([]byte, infoBufLen)
	rc := C.otel_ebpf_receiver_next_notice(n.h, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	if rc != C.OTEL_EBPF_RESULT_OK {
		return "", false
	}
	return cString(buf), true
}

func (n *cNative) stop() error {
	if rc := C.otel_ebpf_receiver_stop(n.h); rc != C.OTEL_EBPF_RESULT_OK {
		return resultError("stop", int(rc), "")
	}
	return nil
}

func (n *cNative) free() {
	C.otel_ebpf_receiver_free(n.h)
	n.h = nil
}

// cString reads a NUL-terminated string the core wrote into a Go buffer.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
