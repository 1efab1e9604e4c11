// Package server is allot's HTTP face: the JSON API under /v1, Server-Sent
// Events, the HTTP node protocol for non-Go nodes, Prometheus metrics and the
// embedded web UI.
package server
