package ebpfreceiver

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/otelcol-ebpf/otelcol-ebpf/go-receiver/internal/metadata"
)

// loadConfig unmarshals the receiver with the given id from a testdata file onto the
// factory's default config, as the collector does.
func loadConfig(t *testing.T, file, id string) (*Config, error) {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", file))
	require.NoError(t, err)
	sub, err := cm.Sub(id)
	require.NoError(t, err)
	cfg := NewFactory().CreateDefaultConfig()
	if err := sub.Unmarshal(cfg); err != nil {
		return nil, err
	}
	return cfg.(*Config), nil
}

func TestLoadConfig(t *testing.T) {
	cfg, err := loadConfig(t, "config.yaml", component.NewID(metadata.Type).String())
	require.NoError(t, err)
	assert.Equal(t, createDefaultConfig(), cfg)
	assert.True(t, cfg.SkipSDKInstrumented, "SDK-instrumented processes are skipped by default")
	assert.NoError(t, confmap.Validate(cfg))

	cfg, err = loadConfig(t, "config.yaml", component.NewIDWithName(metadata.Type, "full").String())
	require.NoError(t, err)
	assert.Equal(t, &Config{
		Discovery: &DiscoveryConfig{
			Instrument: []Selector{
				{OpenPorts: ptr("8080-8089,9090")},
				{ExePath: ptr("*/python3*")},
				{OpenPorts: ptr("443"), ExePath: ptr("/usr/bin/node")},
			},
			Exclude: []Selector{{ExePath: ptr("*/sshd")}},
		},
		ExcludePaths:        []string{"/health", "/metrics", "/static/*"},
		ExcludePorts:        []int{22},
		ContextPropagation:  "off",
		SkipSDKInstrumented: false,
		Database:            DatabaseConfig{CaptureQueries: true, SanitizeQueries: false, MaxQueryLength: 256},
		Sampling:            SamplingConfig{Ratio: 0.25, ParentBased: false},
		DefaultExclude:      collectorFamily(),
	}, cfg)
	assert.NoError(t, confmap.Validate(cfg))

	cfg, err = loadConfig(t, "config.yaml", component.NewIDWithName(metadata.Type, "containers").String())
	require.NoError(t, err)
	assert.Equal(t, &DiscoveryConfig{
		Instrument: []Selector{
			{ContainersOnly: true},
			{CgroupPath: ptr("/kubepods.slice/*"), OpenPorts: ptr("8080")},
		},
		Exclude: []Selector{{ExeName: ptr("sshd")}, {ContainersOnly: true, CgroupPath: ptr("*/crio-*")}},
	}, cfg.Discovery)
	assert.Equal(t, []Selector{{ExeName: ptr("*otelcol*")}, {ExePath: ptr("/opt/agent/*")}}, cfg.DefaultExclude)
	assert.NoError(t, confmap.Validate(cfg))

	// default_exclude: [] traces collectors too.
	cfg, err = loadConfig(t, "config.yaml", component.NewIDWithName(metadata.Type, "collectors").String())
	require.NoError(t, err)
	assert.Empty(t, cfg.DefaultExclude)
	assert.NoError(t, confmap.Validate(cfg))
	b, err := cfg.nativeJSON()
	require.NoError(t, err)
	assert.Contains(t, string(b), `"default_exclude":[]`)
}

func TestUnknownKeyRefused(t *testing.T) {
	_, err := loadConfig(t, "unknown_key.yaml", "ebpf")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "'discovery.instrument[0]' has invalid keys: exe_paht")
}

func TestValidate(t *testing.T) {
	tests := []struct {
		file string
		want []string // each must appear in the error text
	}{
		{"bad_port_range.yaml", []string{`discovery.instrument[0].open_ports: invalid port range "90-80"`}},
		{"port_too_big.yaml", []string{`discovery.instrument[0].open_ports: invalid port range "70000"`}},
		{"not_a_port.yaml", []string{`discovery.instrument[0].open_ports: invalid port range "abc"`}},
		{"empty_ports.yaml", []string{`discovery.instrument[0].open_ports: invalid port range ""`}},
		{"empty_selector.yaml", []string{`discovery.instrument[1]: empty selector`}},
		{"empty_exe_path.yaml", []string{`discovery.exclude[0].exe_path: empty glob`}},
		{"bad_cgroup_path.yaml", []string{
			`discovery.instrument[0].cgroup_path: "kubepods*" never matches: cgroup paths start with "/"`,
			`discovery.exclude[0].exe_name: empty glob`,
		}},
		{"containers_only_false.yaml", []string{`discovery.instrument[0]: empty selector`}},
		{"bad_default_exclude.yaml", []string{
			`default_exclude[0].open_ports: not here`,
			`default_exclude[1]: empty selector`,
		}},
		{"empty_instrument.yaml", []string{`discovery.instrument: must list at least one selector`}},
		{"path_no_slash.yaml", []string{`exclude_paths[1]: "metrics" must start with "/"`}},
		{"bad_glob_path.yaml", []string{`exclude_paths[0]: "/api/*/users": "*" is only allowed as a trailing "/*"`}},
		{"bad_exclude_port.yaml", []string{`exclude_ports[1]: port 0 is outside 1-65535`}},
		{"bad_propagation.yaml", []string{`context_propagation: "inject" is not one of "headers", "off"`}},
		{"bad_max_query_length.yaml", []string{`database.max_query_length: 0 is outside 1-65536`}},
		{"bad_sampling_ratio.yaml", []string{`sampling.ratio: 1.5 is outside 0-1`}},
		{"many_errors.yaml", []string{
			`discovery.instrument[0].open_ports: invalid port range "90-80"`,
			`discovery.exclude[0]: empty selector`,
			`exclude_paths[0]: "health" must start with "/"`,
			`exclude_ports[0]: port 70000 is outside 1-65535`,
		}},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".yaml"), func(t *testing.T) {
			cfg, err := loadConfig(t, tt.file, "ebpf")
			require.NoError(t, err)
			err = confmap.Validate(cfg)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Len(t, strings.Split(err.Error(), "\n"), len(tt.want), "one line per problem")
		})
	}
}

func TestValidatePorts(t *testing.T) {
	for _, good := range []string{"1", "65535", "8080-8089", "80, 443 ,8000-8999", "7-7"} {
		_, errs := parsePortRanges(good)
		assert.Empty(t, errs, good)
	}
	for _, bad := range []string{"", "0", "65536", "-1", "1-", "-80", "90-80", "a-b", "80,", "1-2-3"} {
		_, errs := parsePortRanges(bad)
		assert.NotEmpty(t, errs, bad)
	}
}

func TestNativeJSON(t *testing.T) {
	cfg := &Config{
		Discovery: &DiscoveryConfig{
			Instrument: []Selector{{OpenPorts: ptr("8080-8089,9090"), ExePath: ptr("*/python3*")}},
			Exclude:    []Selector{{ExePath: ptr("*/sshd")}},
		},
		ExcludePaths:       []string{"/health"},
		ExcludePorts:       []int{22},
		ContextPropagation: "off",
		Database:           DatabaseConfig{CaptureQueries: true, MaxQueryLength: 64},
		Sampling:           SamplingConfig{Ratio: 0.1},
	}
	b, err := cfg.nativeJSON()
	require.NoError(t, err)
	assert.JSONEq(t, `{"discovery":{"instrument":[{"open_ports":[[8080,8089],[9090,9090]],"exe_path":"*/python3*"}],"exclude":[{"exe_path":"*/sshd"}]},"exclude_paths":["/health"],"exclude_ports":[22],"context_propagation":"off","skip_sdk_instrumented":false,"database":{"capture_queries":true,"sanitize_queries":false,"max_query_length":64},"sampling":{"ratio":0.1,"parent_based":false},"default_exclude":[]}`, string(b))

	// No discovery: the key is left out and lists are empty, never null.
	b, err = createDefaultConfig().(*Config).nativeJSON()
	require.NoError(t, err)
	assert.JSONEq(t, `{"exclude_paths":[],"exclude_ports":[],"context_propagation":"headers","skip_sdk_instrumented":true,"database":{"capture_queries":true,"sanitize_queries":true,"max_query_length":1024},"sampling":{"ratio":1,"parent_based":true},"default_exclude":[{"exe_name":"*otelcol*"}]}`, string(b))

	cfg = createDefaultConfig().(*Config)
	cfg.Discovery = &DiscoveryConfig{Instrument: []Selector{{OpenPorts: ptr("443")}}}
	b, err = cfg.nativeJSON()
	require.NoError(t, err)
	assert.JSONEq(t, `{"discovery":{"instrument":[{"open_ports":[[443,443]]}],"exclude":[]},"exclude_paths":[],"exclude_ports":[],"context_propagation":"headers","skip_sdk_instrumented":true,"database":{"capture_queries":true,"sanitize_queries":true,"max_query_length":1024},"sampling":{"ratio":1,"parent_based":true},"default_exclude":[{"exe_name":"*otelcol*"}]}`, string(b))

	cfg.ExcludePorts = []int{0}
	_, err = cfg.nativeJSON()
	assert.ErrorContains(t, err, "exclude_ports[0]")
}

func TestResultError(t *testing.T) {
	err := resultError("start", resultPermission, "permission denied: loading programs")
	assert.EqualError(t, err, "ebpf receiver: start: insufficient privileges: permission denied: loading programs")
	assert.ErrorContains(t, resultError("next batch", resultPanic, ""), "the eBPF core panicked: no details")
	assert.ErrorContains(t, resultError("x", 42, "m"), "unexpected result 42")
}
