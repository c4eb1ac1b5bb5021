// Offline checks of deploy/: every Kubernetes object decodes strictly (an unknown field
// fails) into the real k8s.io/api types, and the objects, the Helm values and the systemd
// unit agree on what the receiver needs (capabilities, host PIDs, mounts, RBAC).
package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

var root = filepath.Join("..", "..")

func read(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// unitCaps is the unit's AmbientCapabilities, after checking CapabilityBoundingSet is the same.
func unitCaps(t *testing.T) []string {
	t.Helper()
	unit := string(read(t, "deploy/systemd/otelcol-ebpf.service"))
	get := func(key string) []string {
		m := regexp.MustCompile(`(?m)^`+key+`=(.*)$`).FindAllStringSubmatch(unit, -1)
		if len(m) != 1 {
			t.Fatalf("unit: %d %s= lines, want 1", len(m), key)
		}
		return strings.Fields(m[0][1])
	}
	amb, bound := get("AmbientCapabilities"), get("CapabilityBoundingSet")
	if !slices.Equal(amb, bound) {
		t.Fatalf("unit: AmbientCapabilities %v != CapabilityBoundingSet %v", amb, bound)
	}
	return amb
}

// k8sCaps turns [BPF, PERFMON] into [CAP_BPF, CAP_PERFMON].
func k8sCaps(cs []corev1.Capability) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = "CAP_" + string(c)
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

type objects struct {
	ns       []corev1.Namespace
	sa       []corev1.ServiceAccount
	cm       []corev1.ConfigMap
	ds       []appsv1.DaemonSet
	roles    []rbacv1.ClusterRole
	bindings []rbacv1.ClusterRoleBinding
}

// strict decodes one document into v as the API server does: field names are
// case-sensitive, an unknown or duplicate field is an error.
func strict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strictErrs, err := kjson.UnmarshalStrict(j, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

func loadObjects(t *testing.T) objects {
	t.Helper()
	var o objects
	files, _ := filepath.Glob(filepath.Join(root, "deploy/kubernetes/*.yaml"))
	if len(files) == 0 {
		t.Fatal("no manifests in deploy/kubernetes")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
				continue
			}
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
				t.Fatalf("%s #%d: %v", f, i, err)
			}
			where := fmt.Sprintf("%s #%d (%s %s)", filepath.Base(f), i, meta.APIVersion, meta.Kind)
			var err2 error
			switch meta.APIVersion + " " + meta.Kind {
			case "v1 Namespace":
				err2 = decodeInto(doc, &o.ns)
			case "v1 ServiceAccount":
				err2 = decodeInto(doc, &o.sa)
			case "v1 ConfigMap":
				err2 = decodeInto(doc, &o.cm)
			case "apps/v1 DaemonSet":
				err2 = decodeInto(doc, &o.ds)
			case "rbac.authorization.k8s.io/v1 ClusterRole":
				err2 = decodeInto(doc, &o.roles)
			case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
				err2 = decodeInto(doc, &o.bindings)
			default:
				t.Fatalf("%s: a kind this check does not know", where)
			}
			if err2 != nil {
				t.Fatalf("%s: %v", where, err2)
			}
		}
	}
	if len(o.ds) != 1 || len(o.cm) != 1 || len(o.sa) != 1 || len(o.roles) != 1 || len(o.bindings) != 1 {
		t.Fatalf("want one DaemonSet, ConfigMap, ServiceAccount, ClusterRole, ClusterRoleBinding; got %d %d %d %d %d",
			len(o.ds), len(o.cm), len(o.sa), len(o.roles), len(o.bindings))
	}
	return o
}

// checkContainer holds the rules the DaemonSet and the Helm values share.
func checkContainer(t *testing.T, where string, sc *corev1.SecurityContext, mounts []corev1.VolumeMount,
	vols []corev1.Volume, env []corev1.EnvVar, res corev1.ResourceRequirements, caps []string) {
	t.Helper()
	if sc == nil || sc.Capabilities == nil {
		t.Fatalf("%s: no securityContext.capabilities", where)
	}
	if got := k8sCaps(sc.Capabilities.Add); !sameSet(got, caps) {
		t.Errorf("%s: capabilities.add %v, the systemd unit has %v", where, got, caps)
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("%s: capabilities.drop %v, want [ALL]", where, sc.Capabilities.Drop)
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Errorf("%s: privileged must be false, explicitly", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation must be false", where)
	}
	hostPaths := map[string]string{}
	for _, v := range vols {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	for _, want := range []string{"/sys/fs/cgroup", "/sys/kernel/btf"} {
		ok := false
		for _, m := range mounts {
			if m.MountPath == want && m.ReadOnly && hostPaths[m.Name] == want {
				ok = true
			}
		}
		if !ok {
			t.Errorf("%s: no read-only mount of host %s at %s", where, want, want)
		}
	}
	node := false
	for _, e := range env {
		if e.Name == "K8S_NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
			e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			node = true
		}
	}
	if !node {
		t.Errorf("%s: K8S_NODE_NAME is not spec.nodeName from the downward API", where)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := res.Requests[r]; !ok {
			t.Errorf("%s: no %s request", where, r)
		}
		if _, ok := res.Limits[r]; !ok {
			t.Errorf("%s: no %s limit", where, r)
		}
	}
}

func TestDaemonSet(t *testing.T) {
	caps := unitCaps(t)
	o := loadObjects(t)
	ds := o.ds[0]
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("DaemonSet: hostPID must be true (the receiver reads /proc of every process)")
	}
	if spec.ServiceAccountName != o.sa[0].Name || ds.Namespace != o.sa[0].Namespace {
		t.Errorf("DaemonSet: service account %s/%s, the manifest's is %s/%s", ds.Namespace, spec.ServiceAccountName,
			o.sa[0].Namespace, o.sa[0].Name)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("DaemonSet: %d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	checkContainer(t, "DaemonSet", c.SecurityContext, c.VolumeMounts, spec.Volumes, c.Env, c.Resources, caps)
	cfg := false
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == o.cm[0].Name {
			for _, m := range c.VolumeMounts {
				if m.Name == v.Name && slices.Contains(c.Args, m.MountPath+"/config.yaml") {
					cfg = true
				}
			}
		}
	}
	if !cfg {
		t.Error("DaemonSet: --config does not name config.yaml of the mounted ConfigMap")
	}
	sel := ds.Spec.Selector.MatchLabels
	for k, v := range sel {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("DaemonSet: selector %s=%s does not match the pod labels", k, v)
		}
	}
}

func TestRBACCoversK8sAttributes(t *testing.T) {
	o := loadObjects(t)
	need := map[string][]string{"/pods": nil, "/namespaces": nil, "/nodes": nil, "apps/replicasets": nil}
	for _, r := range o.roles[0].Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				if _, ok := need[g+"/"+res]; ok {
					need[g+"/"+res] = append(need[g+"/"+res], r.Verbs...)
				}
			}
		}
	}
	for res, verbs := range need {
		for _, v := range []string{"get", "list", "watch"} {
			if !slices.Contains(verbs, v) {
				t.Errorf("ClusterRole: no %s on %s (k8sattributes needs get, list, watch)", v, res)
			}
		}
	}
	b := o.bindings[0]
	if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != o.roles[0].Name {
		t.Errorf("ClusterRoleBinding: roleRef %s/%s, want ClusterRole/%s", b.RoleRef.Kind, b.RoleRef.Name, o.roles[0].Name)
	}
	if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != o.sa[0].Name ||
		b.Subjects[0].Namespace != o.sa[0].Namespace {
		t.Errorf("ClusterRoleBinding: subjects %+v, want the ServiceAccount %s/%s", b.Subjects, o.sa[0].Namespace, o.sa[0].Name)
	}
}

// collectorConfig is the part of a collector config these checks read.
type collectorConfig struct {
	Receivers  map[string]any            `json:"receivers"`
	Processors map[string]map[string]any `json:"processors"`
	Exporters  map[string]any            `json:"exporters"`
	Service    struct {
		Pipelines map[string]*struct {
			Receivers  []string `json:"receivers"`
			Processors []string `json:"processors"`
			Exporters  []string `json:"exporters"`
		} `json:"pipelines"`
	} `json:"service"`
}

// checkPipeline: ebpf → k8sattributes (association by container.id and k8s.pod.uid),
// resourcedetection (env, system, a cloud) → loadbalancing.
func checkPipeline(t *testing.T, where string, cfg collectorConfig, wantProcs []string, k8sAttrs, resDet, lb string) {
	t.Helper()
	if _, ok := cfg.Receivers["ebpf"]; !ok {
		t.Errorf("%s: no ebpf receiver", where)
	}
	tr := cfg.Service.Pipelines["traces"]
	if tr == nil {
		t.Fatalf("%s: no traces pipeline", where)
	}
	if !slices.Equal(tr.Receivers, []string{"ebpf"}) || !slices.Equal(tr.Exporters, []string{lb}) {
		t.Errorf("%s: traces pipeline %v → %v, want [ebpf] → [%s]", where, tr.Receivers, tr.Exporters, lb)
	}
	if !slices.Equal(tr.Processors, wantProcs) {
		t.Errorf("%s: traces processors %v, want %v", where, tr.Processors, wantProcs)
	}
	if _, ok := cfg.Exporters[lb]; !ok {
		t.Errorf("%s: no %s exporter", where, lb)
	}
	k8s := fmt.Sprint(cfg.Processors[k8sAttrs]["pod_association"])
	for _, a := range []string{"container.id", "k8s.pod.uid"} {
		if !strings.Contains(k8s, "name:"+a) {
			t.Errorf("%s: k8sattributes pod_association lacks %s: %s", where, a, k8s)
		}
	}
	det := fmt.Sprint(cfg.Processors[resDet]["detectors"])
	for _, d := range []string{"env", "system", "ec2", "gcp", "azure"} {
		if !regexp.MustCompile(`[\[ ]` + d + `[\] ]`).MatchString(det) {
			t.Errorf("%s: resourcedetection detectors %s lack %s", where, det, d)
		}
	}
}

func TestConfigMapPipeline(t *testing.T) {
	o := loadObjects(t)
	text, ok := o.cm[0].Data["config.yaml"]
	if !ok {
		t.Fatal("ConfigMap: no config.yaml")
	}
	var cfg collectorConfig
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatalf("ConfigMap config.yaml: %v", err)
	}
	checkPipeline(t, "ConfigMap", cfg,
		[]string{"memory_limiter", "resource", "k8s_attributes", "resource_detection", "batch"},
		"k8s_attributes", "resource_detection", "load_balancing")
	if f := fmt.Sprint(cfg.Processors["k8s_attributes"]["filter"]); f != "map[node_from_env_var:K8S_NODE_NAME]" {
		t.Errorf("ConfigMap: k8sattributes filter %s, want the node from K8S_NODE_NAME", f)
	}
}

// helmValues holds the keys of the opentelemetry-collector chart's values.yaml that
// deploy/helm/values.yaml sets (names from the chart's values.yaml and templates);
// anything else in the file is refused. Kubernetes parts decode into the real types.
type helmValues struct {
	Mode  string `json:"mode"`
	Image struct {
		Repository string `json:"repository"`
		Tag        string `json:"tag"`
		PullPolicy string `json:"pullPolicy"`
	} `json:"image"`
	Command struct {
		Name      string   `json:"name"`
		ExtraArgs []string `json:"extraArgs"`
	} `json:"command"`
	HostPID           bool                `json:"hostPID"`
	HostNetwork       bool                `json:"hostNetwork"`
	PriorityClassName string              `json:"priorityClassName"`
	Tolerations       []corev1.Toleration `json:"tolerations"`
	Presets           struct {
		KubernetesAttributes struct {
			Enabled bool `json:"enabled"`
		} `json:"kubernetesAttributes"`
	} `json:"presets"`
	SecurityContext   corev1.SecurityContext      `json:"securityContext"`
	ExtraVolumes      []corev1.Volume             `json:"extraVolumes"`
	ExtraVolumeMounts []corev1.VolumeMount        `json:"extraVolumeMounts"`
	ExtraEnvs         []corev1.EnvVar             `json:"extraEnvs"`
	Resources         corev1.ResourceRequirements `json:"resources"`
	Ports             map[string]struct {
		Enabled       bool   `json:"enabled"`
		ContainerPort int32  `json:"containerPort"`
		ServicePort   int32  `json:"servicePort"`
		HostPort      int32  `json:"hostPort"`
		Protocol      string `json:"protocol"`
	} `json:"ports"`
	Config map[string]any `json:"config"`
}

func TestHelmValues(t *testing.T) {
	caps := unitCaps(t)
	var v helmValues
	if err := strict(read(t, "deploy/helm/values.yaml"), &v); err != nil {
		t.Fatalf("deploy/helm/values.yaml: %v", err)
	}
	if v.Mode != "daemonset" || !v.HostPID || !v.Presets.KubernetesAttributes.Enabled {
		t.Errorf("helm: mode %q hostPID %v presets.kubernetesAttributes %v; want daemonset, true, true",
			v.Mode, v.HostPID, v.Presets.KubernetesAttributes.Enabled)
	}
	// The chart runs /<command.name>: the Dockerfile must put the binary there.
	docker := string(read(t, "Dockerfile"))
	if !strings.Contains(docker, " /"+v.Command.Name+"\n") {
		t.Errorf("helm: command.name %q, but the Dockerfile copies no binary to /%s", v.Command.Name, v.Command.Name)
	}
	ds := loadObjects(t).ds[0]
	if img := v.Image.Repository + ":" + v.Image.Tag; img != ds.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("helm image %s, DaemonSet image %s", img, ds.Spec.Template.Spec.Containers[0].Image)
	}
	sc := v.SecurityContext
	checkContainer(t, "helm", &sc, v.ExtraVolumeMounts, v.ExtraVolumes, v.ExtraEnvs, v.Resources, caps)
	var cfg collectorConfig
	b, _ := yaml.Marshal(v.Config)
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	// memory_limiter and batch come from the chart's default config.
	checkPipeline(t, "helm config", cfg,
		[]string{"memory_limiter", "resource", "k8sattributes", "resourcedetection", "batch"},
		"k8sattributes", "resourcedetection", "loadbalancing")
	for _, r := range []string{"otlp", "jaeger", "zipkin", "prometheus"} {
		if x, ok := cfg.Receivers[r]; !ok || x != nil {
			t.Errorf("helm config: the chart's default receiver %s is not switched off (null)", r)
		}
	}
	if !bytes.Contains(read(t, "deploy/helm/values.yaml"), []byte("appArmorProfile")) {
		t.Error("helm: appArmorProfile missing")
	}
}

// decodeInto decodes one document strictly and appends it to list.
func decodeInto[T any](doc string, list *[]T) error {
	var x T
	err := strict([]byte(doc), &x)
	*list = append(*list, x)
	return err
}
