package registry

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"

	"github.com/allot-io/allot/internal/yamlguard"
)

// ParsePool decodes one pool document, YAML or JSON (JSON is YAML),
// strictly: unknown fields, duplicate keys and wrong types fail naming the
// line, and so do a second document and a missing (or null) groups list.
// The text goes through yamlguard.Check first, so aliases cannot expand it,
// and is then parsed once. Errors are *PoolDocumentError, or ErrEmptyPool for
// a document with nothing in it; yamlguard's errors (ErrTooLarge …) come
// as they are. The CLI and the server both read pool files here; they only
// word the answer.
func ParsePool(data []byte) (Pool, error) {
	if err := yamlguard.Check(data); err != nil {
		return Pool{}, err
	}
	// Groups is a pointer so that a document without the list (or with
	// "groups:" and nothing after it) is told apart from "groups: []".
	var doc struct {
		Groups    *[]PoolGroup   `yaml:"groups"`
		Schedules []PoolSchedule `yaml:"schedules,omitempty"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Pool{}, ErrEmptyPool
		}
		return Pool{}, &PoolDocumentError{Problem: yamlguard.Describe(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Pool{}, &PoolDocumentError{Problem: fmt.Sprintf("line %d: a second YAML document; want one document with a groups list", extra.Line)}
	}
	if doc.Groups == nil {
		return Pool{}, &PoolDocumentError{Problem: `no "groups" list (an empty pool is "groups: []")`}
	}
	return Pool{Groups: *doc.Groups, Schedules: doc.Schedules}, nil
}

// PoolGroupLines returns the line of each group of a pool document that
// ParsePool accepted (0 where it cannot tell). It parses the text again, so
// front ends call it only to word a problem, never on the way to a write.
func PoolGroupLines(data []byte) []int {
	var doc struct {
		Groups []yaml.Node `yaml:"groups"`
	}
	if yaml.Unmarshal(data, &doc) != nil {
		return nil
	}
	lines := make([]int, len(doc.Groups))
	for i, g := range doc.Groups {
		lines[i] = g.Line
	}
	return lines
}
