// Package statusutil stands in for go.opentelemetry.io/collector/internal/statusutil
// v0.164.0, which the otlp and otlphttp exporters import but whose module zip the Go
// proxy refuses to serve. otelcol-builder.yaml points a replace directive here. Drop
// it once the upstream module downloads.
package statusutil // import "go.opentelemetry.io/collector/internal/statusutil"

import (
	"net/http"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// httpToGRPC follows https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md,
// except that the collector maps 400 to InvalidArgument and 429 to ResourceExhausted.
var httpToGRPC = map[int]codes.Code{
	http.StatusBadRequest:         codes.InvalidArgument,
	http.StatusUnauthorized:       codes.Unauthenticated,
	http.StatusForbidden:          codes.PermissionDenied,
	http.StatusNotFound:           codes.Unimplemented,
	http.StatusTooManyRequests:    codes.ResourceExhausted,
	http.StatusBadGateway:         codes.Unavailable,
	http.StatusServiceUnavailable: codes.Unavailable,
	http.StatusGatewayTimeout:     codes.Unavailable,
}

// NewStatusFromMsgAndHTTPCode turns an HTTP error response into a gRPC status.
func NewStatusFromMsgAndHTTPCode(errMsg string, statusCode int) *status.Status {
	c, ok := httpToGRPC[statusCode]
	if !ok {
		c = codes.Unknown
	}
	return status.New(c, errMsg)
}

// GetRetryInfo returns the RetryInfo detail of st, or nil.
func GetRetryInfo(st *status.Status) *errdetails.RetryInfo {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri
		}
	}
	return nil
}
