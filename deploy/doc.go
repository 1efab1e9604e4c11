// Package deploy holds allot's container and deployment files, and the tests
// that keep them true; it has no code of its own.
//
//   - Containerfile, node.Containerfile and build-image.sh: `make image` and
//     `make image-node` build allot:VERSION and allot-node:VERSION FROM
//     scratch from a static binary built on the host (no registry pull).
//   - kubernetes/: allot serve (Deployment, Service, PodDisruptionBudget,
//     Secret) and an example node Deployment.
//   - compose.yaml: Redis, allot serve and three example nodes.
//   - monitoring/: a Grafana dashboard and Prometheus alerting rules over
//     allot serve's /metrics.
//
// container_test.go builds the image and runs it with podman against a
// redis-server of internal/redistest; manifests_test.go parses every YAML
// document here and checks the fields README's "Deploy" section promises;
// monitoring_test.go checks the alerting rules with promtool and that every
// metric the dashboard and the rules query is exported.
package deploy
