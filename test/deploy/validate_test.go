package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// collectorValidate runs the built distribution's `validate` on a config: every
// component exists in it and every key is one the component knows.
func collectorValidate(t *testing.T, config []byte) {
	t.Helper()
	bin := filepath.Join(root, "bin", "otelcol-ebpf")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run make build first", bin)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "validate", "--config", path)
	cmd.Env = append(os.Environ(), "K8S_NODE_NAME=node-1", "MY_POD_IP=10.0.0.7")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("otelcol-ebpf validate: %v\n%s", err, out)
	}
}

func TestConfigMapConfigValidates(t *testing.T) {
	collectorValidate(t, []byte(loadObjects(t).cm[0].Data["config.yaml"]))
}

func TestSystemdConfigValidates(t *testing.T) {
	collectorValidate(t, read(t, "deploy/systemd/config.yaml"))
}
