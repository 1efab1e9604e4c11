package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/allot-io/allot/client"
)

// The shapes below name only the fields the tests check; unknown fields are
// ignored, so the checks below say explicitly what must be there.

// object is any Kubernetes object.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	// The kind-specific parts, decoded by kind.
	Spec       yaml.Node         `yaml:"spec"`
	StringData map[string]string `yaml:"stringData"`
}

type selector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type deploymentSpec struct {
	Replicas int      `yaml:"replicas"`
	Selector selector `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec podSpec `yaml:"spec"`
	} `yaml:"template"`
}

type podSpec struct {
	AutomountServiceAccountToken  *bool `yaml:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds *int  `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		RunAsUser    int   `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Containers []containerSpec `yaml:"containers"`
	Volumes    []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

type containerSpec struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env          []envVar `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
}

type envVar struct {
	Name      string  `yaml:"name"`
	Value     *string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name     string `yaml:"name"`
			Key      string `yaml:"key"`
			Optional bool   `yaml:"optional"`
		} `yaml:"secretKeyRef"`
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
	} `yaml:"valueFrom"`
}

type probe struct {
	HTTPGet *struct {
		Path   string `yaml:"path"`
		Port   string `yaml:"port"`
		Scheme string `yaml:"scheme"`
	} `yaml:"httpGet"`
}

type serviceSpec struct {
	Selector map[string]string `yaml:"selector"`
	Ports    []struct {
		Port       int    `yaml:"port"`
		TargetPort string `yaml:"targetPort"`
	} `yaml:"ports"`
}

type pdbSpec struct {
	MinAvailable int      `yaml:"minAvailable"`
	Selector     selector `yaml:"selector"`
}

// documents parses every YAML document of path; an empty or unparsable one
// fails the test.
// serveShutdownTimeout is allot serve's own bound on a graceful shutdown
// (shutdownTimeout in cmd/allot/serve.go): SIGTERM must stop it within that
// plus podman's overhead (container test), and the pod's grace period must
// cover it after the preStop sleep (manifests test).
const serveShutdownTimeout = 10 * time.Second

func documents(t *testing.T, path string) []*yaml.Node {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "%s, document %d", path, len(docs)+1)
		require.NotEmpty(t, n.Content, "%s: document %d is empty", path, len(docs)+1)
		require.Equal(t, yaml.MappingNode, n.Content[0].Kind, "%s: document %d is not a mapping", path, len(docs)+1)
		docs = append(docs, &n)
	}
	require.NotEmpty(t, docs, "%s has no YAML document", path)
	return docs
}

// yamlFiles lists every YAML file under deploy/.
func yamlFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	require.NoError(t, filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return err
	}))
	return files
}

// manifests decodes every Kubernetes object under kubernetes/, by kind/name.
func manifests(t *testing.T) map[string]object {
	t.Helper()
	objs := map[string]object{}
	paths, err := filepath.Glob("kubernetes/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	for _, path := range paths {
		for i, doc := range documents(t, path) {
			var o object
			require.NoError(t, doc.Decode(&o), "%s, document %d", path, i+1)
			require.NotEmpty(t, o.APIVersion, "%s, document %d: apiVersion", path, i+1)
			require.NotEmpty(t, o.Kind, "%s, document %d: kind", path, i+1)
			require.NotEmpty(t, o.Metadata.Name, "%s, document %d: metadata.name", path, i+1)
			id := o.Kind + "/" + o.Metadata.Name
			require.NotContains(t, objs, id, "%s defined twice", id)
			objs[id] = o
		}
	}
	return objs
}

func spec[T any](t *testing.T, objs map[string]object, id string) T {
	t.Helper()
	o, ok := objs[id]
	require.True(t, ok, "no %s in deploy/kubernetes", id)
	var s T
	require.NoError(t, o.Spec.Decode(&s), id)
	return s
}

func TestEveryYAMLDocumentParses(t *testing.T) {
	files := yamlFiles(t)
	for _, want := range []string{"compose.yaml", "kubernetes/serve.yaml", "kubernetes/node.yaml", "kubernetes/secrets.example.yaml",
		"kubernetes/networkpolicy.yaml", "kubernetes/certificate.example.yaml"} {
		assert.Contains(t, files, want)
	}
	for _, f := range files {
		documents(t, f)
	}
}

// env finds the variable name of c; it fails the test when it is missing.
func env(t *testing.T, c containerSpec, name string) envVar {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == name {
			return e
		}
	}
	require.Failf(t, "missing env", "container %s has no %s", c.Name, name)
	return envVar{}
}

// fromSecret checks that e comes from a key of one of the example Secrets.
func fromSecret(t *testing.T, objs map[string]object, e envVar, optional bool) {
	t.Helper()
	require.NotNil(t, e.ValueFrom, "%s must come from a Secret", e.Name)
	require.NotNil(t, e.ValueFrom.SecretKeyRef, "%s must come from a Secret", e.Name)
	assert.Nil(t, e.Value, "%s has a literal value", e.Name)
	ref := e.ValueFrom.SecretKeyRef
	assert.Equal(t, optional, ref.Optional, "%s: optional", e.Name)
	secret, ok := objs["Secret/"+ref.Name]
	require.True(t, ok, "%s reads Secret %s, which secrets.example.yaml does not define", e.Name, ref.Name)
	assert.Contains(t, secret.StringData, ref.Key, "%s reads key %s of Secret %s", e.Name, ref.Key, ref.Name)
}

// fromField checks that e comes from the downward API field path.
func fromField(t *testing.T, e envVar, path string) {
	t.Helper()
	require.NotNil(t, e.ValueFrom, "%s must come from the downward API", e.Name)
	require.NotNil(t, e.ValueFrom.FieldRef, "%s must come from the downward API", e.Name)
	assert.Equal(t, path, e.ValueFrom.FieldRef.FieldPath, e.Name)
}

// pinnedImage matches an image pinned to a release version: never :latest,
// so every replica runs the same build and a rollback is a tag change.
var pinnedImage = regexp.MustCompile(`^[a-z0-9./-]+:v\d+\.\d+\.\d+$`)

// hardened checks what every pod of allot runs with: no service account
// token (allot never calls the Kubernetes API), the image's non-root user, no
// privilege escalation, no capabilities, a read-only root, resources, and an
// image pinned to a version.
func hardened(t *testing.T, id string, p podSpec) containerSpec {
	t.Helper()
	require.NotNil(t, p.AutomountServiceAccountToken, "%s: automountServiceAccountToken", id)
	assert.False(t, *p.AutomountServiceAccountToken, "%s: automountServiceAccountToken", id)
	require.NotNil(t, p.SecurityContext.RunAsNonRoot, "%s: runAsNonRoot", id)
	assert.True(t, *p.SecurityContext.RunAsNonRoot, "%s: runAsNonRoot", id)
	assert.Equal(t, 65532, p.SecurityContext.RunAsUser, "%s: the image's USER", id)
	require.Len(t, p.Containers, 1, id)
	c := p.Containers[0]
	require.NotNil(t, c.SecurityContext.AllowPrivilegeEscalation, id)
	assert.False(t, *c.SecurityContext.AllowPrivilegeEscalation, "%s: allowPrivilegeEscalation", id)
	require.NotNil(t, c.SecurityContext.ReadOnlyRootFilesystem, id)
	assert.True(t, *c.SecurityContext.ReadOnlyRootFilesystem, "%s: readOnlyRootFilesystem", id)
	assert.Equal(t, []string{"ALL"}, c.SecurityContext.Capabilities.Drop, "%s: capabilities", id)
	assert.NotEmpty(t, c.Resources.Requests["cpu"], "%s: cpu request", id)
	assert.NotEmpty(t, c.Resources.Requests["memory"], "%s: memory request", id)
	assert.NotEmpty(t, c.Resources.Limits["memory"], "%s: memory limit", id)
	assert.Regexp(t, pinnedImage, c.Image, "%s: image pinned to a version", id)
	return c
}

// selects reports whether every label of sel is on labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetesServe(t *testing.T) {
	objs := manifests(t)
	d := spec[deploymentSpec](t, objs, "Deployment/allot")
	pods := d.Template.Metadata.Labels
	assert.True(t, selects(d.Selector.MatchLabels, pods), "the Deployment's selector matches its pods")
	c := hardened(t, "Deployment/allot", d.Template.Spec)

	assert.Regexp(t, `^allot:`, c.Image)
	require.NotEmpty(t, c.Args)
	assert.Equal(t, "serve", c.Args[0])
	args := strings.Join(c.Args, " ")
	assert.Contains(t, args, "--listen 0.0.0.0:7070")
	// TLS from the Secret allot-tls, at the paths the image's default
	// command reads too.
	assert.Contains(t, args, "--tls-cert /etc/allot/tls/tls.crt --tls-key /etc/allot/tls/tls.key")
	assert.NotContains(t, args, "--tls-disable")
	require.Len(t, c.VolumeMounts, 1)
	assert.Equal(t, "/etc/allot/tls", c.VolumeMounts[0].MountPath)
	assert.True(t, c.VolumeMounts[0].ReadOnly)
	vols := d.Template.Spec.Volumes
	require.Len(t, vols, 1)
	assert.Equal(t, c.VolumeMounts[0].Name, vols[0].Name)
	require.NotNil(t, vols[0].Secret)
	assert.Equal(t, "allot-tls", vols[0].Secret.SecretName)
	cert := objs["Certificate/allot"]
	assert.Equal(t, "cert-manager.io/v1", cert.APIVersion, "certificate.example.yaml issues allot-tls")
	var certSpec struct {
		SecretName string `yaml:"secretName"`
	}
	require.NoError(t, cert.Spec.Decode(&certSpec))
	assert.Equal(t, "allot-tls", certSpec.SecretName)

	require.Len(t, c.Ports, 1)
	assert.Equal(t, 7070, c.Ports[0].ContainerPort)
	assert.Equal(t, "https", c.Ports[0].Name)

	for name, p := range map[string]*probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		require.NotNil(t, p, name)
		require.NotNil(t, p.HTTPGet, "%s is an HTTP GET", name)
		assert.Equal(t, name, p.HTTPGet.Path)
		assert.Equal(t, "https", p.HTTPGet.Port)
		assert.Equal(t, "HTTPS", p.HTTPGet.Scheme, "%s: serve answers TLS only", name)
	}

	fromSecret(t, objs, env(t, c, client.EnvRedisURL), false)
	fromSecret(t, objs, env(t, c, "ALLOT_ADMIN_TOKEN"), false)
	fromSecret(t, objs, env(t, c, "ALLOT_READ_TOKEN"), true)
	fromSecret(t, objs, env(t, c, "ALLOT_NODE_TOKEN"), true)

	// SIGTERM: the preStop sleep, then serve's own 10s shutdown, fit in the
	// grace period.
	require.NotNil(t, c.Lifecycle.PreStop, "preStop")
	require.NotNil(t, c.Lifecycle.PreStop.Sleep, "preStop sleep (the image has no shell)")
	grace := d.Template.Spec.TerminationGracePeriodSeconds
	require.NotNil(t, grace, "terminationGracePeriodSeconds")
	assert.Greater(t, *grace, c.Lifecycle.PreStop.Sleep.Seconds+int(serveShutdownTimeout.Seconds()))

	svc := spec[serviceSpec](t, objs, "Service/allot")
	assert.True(t, selects(svc.Selector, pods), "the Service selects serve's pods")
	require.Len(t, svc.Ports, 1)
	assert.Equal(t, "https", svc.Ports[0].TargetPort)

	pdb := spec[pdbSpec](t, objs, "PodDisruptionBudget/allot")
	assert.True(t, selects(pdb.Selector.MatchLabels, pods), "the PodDisruptionBudget selects serve's pods")
	assert.GreaterOrEqual(t, pdb.MinAvailable, 1)
	assert.Less(t, pdb.MinAvailable, d.Replicas, "a drain can still evict one replica")
	assert.Equal(t, "policy/v1", objs["PodDisruptionBudget/allot"].APIVersion)
}

func TestKubernetesNode(t *testing.T) {
	objs := manifests(t)
	d := spec[deploymentSpec](t, objs, "Deployment/allot-node")
	pods := d.Template.Metadata.Labels
	assert.True(t, selects(d.Selector.MatchLabels, pods), "the Deployment's selector matches its pods")
	serve := spec[deploymentSpec](t, objs, "Deployment/allot")
	assert.False(t, selects(serve.Selector.MatchLabels, pods), "serve's selector must not take the node pods")
	assert.False(t, selects(spec[serviceSpec](t, objs, "Service/allot").Selector, pods), "the Service must not route to nodes")
	c := hardened(t, "Deployment/allot-node", d.Template.Spec)

	assert.Regexp(t, `^allot-node:`, c.Image)
	fromSecret(t, objs, env(t, c, client.EnvRedisURL), false)
	fromField(t, env(t, c, client.EnvNodeID), "metadata.name")
	fromField(t, env(t, c, client.EnvNodeIP), "status.podIP")

	// SIGTERM -> Close -> leave; examples/node gives Close 10s.
	grace := d.Template.Spec.TerminationGracePeriodSeconds
	require.NotNil(t, grace, "terminationGracePeriodSeconds")
	assert.Greater(t, *grace, 10)
}

// networkPolicySpec is the part of a NetworkPolicy the tests check.
type networkPolicySpec struct {
	PodSelector selector `yaml:"podSelector"`
	PolicyTypes []string `yaml:"policyTypes"`
	Ingress     []struct {
		From  []yaml.Node  `yaml:"from"`
		Ports []policyPort `yaml:"ports"`
	} `yaml:"ingress"`
	Egress []struct {
		To    []yaml.Node  `yaml:"to"`
		Ports []policyPort `yaml:"ports"`
	} `yaml:"egress"`
}

type policyPort struct {
	Protocol string `yaml:"protocol"`
	Port     int    `yaml:"port"`
}

// TestKubernetesNetworkPolicy: serve's pods take connections on 7070 only,
// from named sources, and reach out only to Redis (6379) and DNS (53).
func TestKubernetesNetworkPolicy(t *testing.T) {
	objs := manifests(t)
	serve := spec[deploymentSpec](t, objs, "Deployment/allot")
	np := spec[networkPolicySpec](t, objs, "NetworkPolicy/allot")
	assert.True(t, selects(np.PodSelector.MatchLabels, serve.Template.Metadata.Labels), "the policy applies to serve's pods")
	assert.False(t, selects(np.PodSelector.MatchLabels, spec[deploymentSpec](t, objs, "Deployment/allot-node").Template.Metadata.Labels))
	assert.ElementsMatch(t, []string{"Ingress", "Egress"}, np.PolicyTypes, "both directions are closed by default")

	require.NotEmpty(t, np.Ingress)
	for _, rule := range np.Ingress {
		assert.NotEmpty(t, rule.From, "every ingress rule names its sources")
		require.NotEmpty(t, rule.Ports, "every ingress rule names its ports")
		for _, p := range rule.Ports {
			assert.Equal(t, policyPort{"TCP", 7070}, p)
		}
	}
	egress := map[int]bool{}
	for _, rule := range np.Egress {
		assert.NotEmpty(t, rule.To, "every egress rule names its destinations")
		require.NotEmpty(t, rule.Ports, "every egress rule names its ports")
		for _, p := range rule.Ports {
			egress[p.Port] = true
		}
	}
	assert.Equal(t, map[int]bool{6379: true, 53: true}, egress, "serve reaches Redis and DNS, nothing else")
}

// composeFile is the part of compose.yaml the tests check.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		DependsOn   map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Ports           []string `yaml:"ports"`
		StopGracePeriod string   `yaml:"stop_grace_period"`
		ReadOnly        bool     `yaml:"read_only"`
		CapDrop         []string `yaml:"cap_drop"`
		CapAdd          []string `yaml:"cap_add"`
		MemLimit        string   `yaml:"mem_limit"`
		Healthcheck     *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

func TestCompose(t *testing.T) {
	docs := documents(t, "compose.yaml")
	require.Len(t, docs, 1)
	var c composeFile
	require.NoError(t, docs[0].Decode(&c))

	for name, svc := range c.Services {
		assert.True(t, svc.ReadOnly, "%s: read_only", name)
		assert.Equal(t, []string{"ALL"}, svc.CapDrop, "%s: cap_drop", name)
		assert.Empty(t, svc.CapAdd, "%s: cap_add", name)
		assert.NotEmpty(t, svc.MemLimit, "%s: mem_limit", name)
	}

	redis, ok := c.Services["redis"]
	require.True(t, ok, "a redis service")
	assert.NotNil(t, redis.Healthcheck, "redis has a healthcheck the others wait for")
	assert.Contains(t, strings.Join(redis.Command, " "), "--requirepass ${ALLOT_REDIS_PASSWORD:?", "Redis has a password the caller must set")
	const url = "redis://:${ALLOT_REDIS_PASSWORD}@redis:6379/0"

	serve, ok := c.Services["allot"]
	require.True(t, ok, "an allot service")
	assert.Equal(t, "allot:latest", serve.Image)
	// Published on loopback only, so plain HTTP is an explicit choice.
	assert.Equal(t, []string{"serve", "--listen", "0.0.0.0:7070", "--tls-disable"}, serve.Command)
	assert.Equal(t, url, serve.Environment[client.EnvRedisURL])
	assert.Contains(t, serve.Environment["ALLOT_ADMIN_TOKEN"], ":?", "the admin token is required from the caller")
	assert.Equal(t, []string{"127.0.0.1:7070:7070"}, serve.Ports, "published on loopback only")
	assert.Equal(t, "service_healthy", serve.DependsOn["redis"].Condition)

	ids := map[string]bool{}
	for _, name := range []string{"node-1", "node-2", "node-3"} {
		n, ok := c.Services[name]
		require.True(t, ok, "service %s", name)
		assert.Equal(t, "allot-node:latest", n.Image, name)
		assert.Equal(t, url, n.Environment[client.EnvRedisURL], name)
		ids[n.Environment[client.EnvNodeID]] = true
		assert.NotEmpty(t, n.StopGracePeriod, "%s: time to leave on SIGTERM", name)
		assert.Equal(t, "service_healthy", n.DependsOn["redis"].Condition, name)
	}
	assert.Len(t, ids, 3, "three distinct node IDs")
}

// TestReadmeNamesDeployFiles: every deploy/ path README.md names exists, and
// README names the files of the deploy section.
func TestReadmeNamesDeployFiles(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	named := regexp.MustCompile(`deploy/[A-Za-z0-9_./-]*[A-Za-z0-9_]`).FindAllString(string(readme), -1)
	for _, want := range []string{"deploy/kubernetes/serve.yaml", "deploy/kubernetes/node.yaml", "deploy/compose.yaml"} {
		assert.Contains(t, named, want)
	}
	for _, p := range named {
		_, err := os.Stat(filepath.Join("..", p))
		assert.NoError(t, err, "README names %s", p)
	}
}
