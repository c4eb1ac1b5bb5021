package ebpfreceiver // import "github.com/otelcol-ebpf/otelcol-ebpf/go-receiver"

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.opentelemetry.io/collector/component"
)

// Config is the configuration of the ebpf receiver.
type Config struct {
	// Discovery selects the processes to trace. Unset: every process except the
	// collector itself and DefaultExclude.
	Discovery *DiscoveryConfig `mapstructure:"discovery"`
	// ExcludePaths are request paths that produce no spans: exact paths, or prefixes
	// written as "/prefix/*".
	ExcludePaths []string `mapstructure:"exclude_paths"`
	// ExcludePorts are ports whose connections (at either end) produce no spans.
	ExcludePorts []int `mapstructure:"exclude_ports"`
	// ContextPropagation is "headers" (insert traceparent into outgoing plaintext
	// HTTP/1 requests of traced processes) or "off" (never touch traffic).
	ContextPropagation string `mapstructure:"context_propagation"`
	// SkipSDKInstrumented: a process seen exporting OTLP itself (an OpenTelemetry SDK)
	// gets no spans from this receiver from then on; its traffic still links its
	// neighbours' spans to its SDK's.
	SkipSDKInstrumented bool `mapstructure:"skip_sdk_instrumented"`
	// Database says how query text is exported in database spans.
	Database DatabaseConfig `mapstructure:"database"`
	// Sampling decides which traces are kept, at their head.
	Sampling SamplingConfig `mapstructure:"sampling"`
	// DefaultExclude lists processes never traced, with or without Discovery: other
	// collectors by default (exe_name "*otelcol*"). Set it to [] to trace them too.
	// Only selectors on the process (no open_ports).
	DefaultExclude []Selector `mapstructure:"default_exclude"`
}

// SamplingConfig: a new trace is kept with probability Ratio, decided from its trace id
// as OpenTelemetry's TraceIdRatioBased sampler does (so SDKs downstream agree); with
// ParentBased an incoming traceparent's sampled flag decides instead. The decision
// travels in the traceparent headers the receiver inserts (flag 00: not sampled).
type SamplingConfig struct {
	Ratio       float64 `mapstructure:"ratio"`
	ParentBased bool    `mapstructure:"parent_based"`
}

// DatabaseConfig: db.query.text is captured (CaptureQueries), with literals replaced by
// "?" (SanitizeQueries; turning it off is an explicit opt-in), cut to MaxQueryLength bytes.
type DatabaseConfig struct {
	CaptureQueries  bool `mapstructure:"capture_queries"`
	SanitizeQueries bool `mapstructure:"sanitize_queries"`
	MaxQueryLength  int  `mapstructure:"max_query_length"`
}

// maxQueryLength bounds database.max_query_length (as the core does).
const maxQueryLength = 65536

// DiscoveryConfig picks processes: one matching any Instrument selector is traced,
// unless it also matches an Exclude selector.
type DiscoveryConfig struct {
	Instrument []Selector `mapstructure:"instrument"`
	Exclude    []Selector `mapstructure:"exclude"`
}

// Selector matches a process when every field that is set matches. Pointers tell an
// unset field from an empty one, which is a mistake worth reporting.
type Selector struct {
	// OpenPorts is a list like "8080-8089,9090": the process listens on, or connects
	// to, one of these ports.
	OpenPorts *string `mapstructure:"open_ports"`
	// ExePath is a glob ("*" and "?", both matching "/" too) on the executable path.
	ExePath *string `mapstructure:"exe_path"`
	// ExeName is a glob on the executable's file name.
	ExeName *string `mapstructure:"exe_name"`
	// CgroupPath is a glob on the process's cgroup v2 path, as /proc/<pid>/cgroup
	// shows it ("/kubepods.slice/...").
	CgroupPath *string `mapstructure:"cgroup_path"`
	// ContainersOnly: only processes whose cgroup names a container (Docker,
	// containerd, CRI-O, podman, Kubernetes pods). false selects nothing by itself.
	ContainersOnly bool `mapstructure:"containers_only"`
}

// collectorFamily is DefaultExclude's default.
func collectorFamily() []Selector {
	return []Selector{{ExeName: ptr("*otelcol*")}}
}

func ptr[T any](v T) *T { return &v }

var _ component.Config = (*Config)(nil)

// Validate reports every problem at once, each prefixed with its key.
func (c *Config) Validate() error {
	var errs []error
	if d := c.Discovery; d != nil {
		if len(d.Instrument) == 0 {
			errs = append(errs, errors.New("discovery.instrument: must list at least one selector (remove discovery to trace every process)"))
		}
		for i, s := range d.Instrument {
			errs = append(errs, s.validate(fmt.Sprintf("discovery.instrument[%d]", i))...)
		}
		for i, s := range d.Exclude {
			errs = append(errs, s.validate(fmt.Sprintf("discovery.exclude[%d]", i))...)
		}
	}
	for i, s := range c.DefaultExclude {
		key := fmt.Sprintf("default_exclude[%d]", i)
		errs = append(errs, s.validate(key)...)
		if s.OpenPorts != nil {
			errs = append(errs, fmt.Errorf("%s.open_ports: not here: select by ports in discovery.exclude", key))
		}
	}
	for i, p := range c.ExcludePaths {
		if err := validatePath(p); err != nil {
			errs = append(errs, fmt.Errorf("exclude_paths[%d]: %w", i, err))
		}
	}
	for i, p := range c.ExcludePorts {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("exclude_ports[%d]: port %d is outside 1-65535", i, p))
		}
	}
	if n := c.Database.MaxQueryLength; n < 1 || n > maxQueryLength {
		errs = append(errs, fmt.Errorf("database.max_query_length: %d is outside 1-%d", n, maxQueryLength))
	}
	if r := c.Sampling.Ratio; !(r >= 0 && r <= 1) {
		errs = append(errs, fmt.Errorf("sampling.ratio: %v is outside 0-1", r))
	}
	switch c.ContextPropagation {
	case "headers", "off":
	default:
		errs = append(errs, fmt.Errorf("context_propagation: %q is not one of \"headers\", \"off\"", c.ContextPropagation))
	}
	return errors.Join(errs...)
}

func (s Selector) validate(key string) []error {
	if s.OpenPorts == nil && s.ExePath == nil && s.ExeName == nil && s.CgroupPath == nil && !s.ContainersOnly {
		return []error{fmt.Errorf("%s: empty selector: set open_ports, exe_path, exe_name, cgroup_path or containers_only", key)}
	}
	var errs []error
	if s.OpenPorts != nil {
		_, perrs := parsePortRanges(*s.OpenPorts)
		for _, err := range perrs {
			errs = append(errs, fmt.Errorf("%s.open_ports: %w", key, err))
		}
	}
	for _, g := range []struct {
		field string
		glob  *string
	}{{"exe_path", s.ExePath}, {"exe_name", s.ExeName}, {"cgroup_path", s.CgroupPath}} {
		if g.glob != nil && *g.glob == "" {
			errs = append(errs, fmt.Errorf("%s.%s: empty glob", key, g.field))
		}
	}
	if p := s.CgroupPath; p != nil && *p != "" && !strings.HasPrefix(*p, "/") && !strings.HasPrefix(*p, "*") {
		errs = append(errs, fmt.Errorf("%s.cgroup_path: %q never matches: cgroup paths start with \"/\"", key, *p))
	}
	return errs
}

func validatePath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q must start with \"/\"", p)
	}
	if i := strings.Index(p, "*"); i >= 0 && (i != len(p)-1 || !strings.HasSuffix(p, "/*")) {
		return fmt.Errorf("%q: \"*\" is only allowed as a trailing \"/*\"", p)
	}
	return nil
}

// parsePortRanges turns "8080-8089,9090" into inclusive ranges, with one error per bad
// element.
func parsePortRanges(s string) ([][2]int, []error) {
	var out [][2]int
	var errs []error
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		l, err := parsePort(lo)
		h := l
		if err == nil && isRange {
			h, err = parsePort(hi)
		}
		if err == nil && l > h {
			err = fmt.Errorf("%d is above %d", l, h)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("invalid port range %q: %w", part, err))
			continue
		}
		out = append(out, [2]int{l, h})
	}
	return out, errs
}

func parsePort(s string) (int, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d is outside 1-65535", n)
	}
	return n, nil
}

// The JSON the Rust core reads (rust-core/src/config.rs). Lists are never null: serde's
// `default` only covers missing keys.
type nativeConfig struct {
	Discovery    *nativeDiscovery `json:"discovery,omitempty"`
	ExcludePaths []string         `json:"exclude_paths"`
	ExcludePorts []int            `json:"exclude_ports"`
	Propagation  string           `json:"context_propagation"`
	SkipSDK      bool             `json:"skip_sdk_instrumented"`
	Database     nativeDatabase   `json:"database"`
	Sampling     nativeSampling   `json:"sampling"`
	Default      []nativeSelector `json:"default_exclude"`
}

type nativeSampling struct {
	Ratio       float64 `json:"ratio"`
	ParentBased bool    `json:"parent_based"`
}

type nativeDatabase struct {
	Capture   bool `json:"capture_queries"`
	Sanitize  bool `json:"sanitize_queries"`
	MaxLength int  `json:"max_query_length"`
}

type nativeDiscovery struct {
	Instrument []nativeSelector `json:"instrument"`
	Exclude    []nativeSelector `json:"exclude"`
}

type nativeSelector struct {
	OpenPorts      [][2]int `json:"open_ports,omitempty"`
	ExePath        *string  `json:"exe_path,omitempty"`
	ExeName        *string  `json:"exe_name,omitempty"`
	CgroupPath     *string  `json:"cgroup_path,omitempty"`
	ContainersOnly bool     `json:"containers_only,omitempty"`
}

// nativeJSON renders the config for the Rust core, with port lists already parsed.
func (c *Config) nativeJSON() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	nc := nativeConfig{
		ExcludePaths: append([]string{}, c.ExcludePaths...),
		ExcludePorts: append([]int{}, c.ExcludePorts...),
		Propagation:  c.ContextPropagation,
		SkipSDK:      c.SkipSDKInstrumented,
		Database: nativeDatabase{
			Capture:   c.Database.CaptureQueries,
			Sanitize:  c.Database.SanitizeQueries,
			MaxLength: c.Database.MaxQueryLength,
		},
		Sampling: nativeSampling{Ratio: c.Sampling.Ratio, ParentBased: c.Sampling.ParentBased},
		Default:  nativeSelectors(c.DefaultExclude),
	}
	if d := c.Discovery; d != nil {
		nc.Discovery = &nativeDiscovery{Instrument: nativeSelectors(d.Instrument), Exclude: nativeSelectors(d.Exclude)}
	}
	return json.Marshal(nc)
}

func nativeSelectors(sels []Selector) []nativeSelector {
	out := make([]nativeSelector, 0, len(sels))
	for _, s := range sels {
		ns := nativeSelector{ExePath: s.ExePath, ExeName: s.ExeName, CgroupPath: s.CgroupPath, ContainersOnly: s.ContainersOnly}
		if s.OpenPorts != nil {
			ns.OpenPorts, _ = parsePortRanges(*s.OpenPorts) // validated by the caller
		}
		out = append(out, ns)
	}
	return out
}
