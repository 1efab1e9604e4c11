package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/allot-io/allot/internal/yamlguard"
	"github.com/allot-io/allot/registry"
)

// Pool is the document of GET /v1/export and POST /v1/import — the same
// document `allot export` writes and `allot import` reads: every group's
// settings, as YAML or JSON.
type Pool = registry.Pool

// PoolGroup is one group of a Pool.
type PoolGroup = registry.PoolGroup

// ImportReport says what an import changed (or, dry, would change). Its
// JSON is the one of `allot import -o json`.
type ImportReport struct {
	DryRun bool `json:"dry_run"`
	registry.ImportPlan
}

// GroupChanges is the field-level diff of one changed group.
type GroupChanges = registry.GroupChanges

// FieldChange is one field that differs. Old is nil for an added config
// key, New for a removed one. Secret values are shown as "****".
type FieldChange = registry.FieldChange

func (s *Server) export(w http.ResponseWriter, r *http.Request) error {
	show, err := reveal(r)
	if err != nil {
		return err
	}
	format, err := exportFormat(r)
	if err != nil {
		return err
	}
	p, err := s.reg.Export(r.Context(), show)
	if err != nil {
		return err
	}
	if format == "json" {
		writeJSON(w, http.StatusOK, p)
		return nil
	}
	var buf bytes.Buffer
	if !show && slices.ContainsFunc(p.Groups, func(g PoolGroup) bool { return len(g.SecretKeys) > 0 }) {
		buf.WriteString("# Secret values are masked: this file re-imports over the same pool (masked\n" +
			"# values keep the stored secret) but cannot create those groups anew.\n" +
			"# An admin exports them with ?reveal=true.\n")
	}
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return err
	}
	_ = enc.Close()
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// exportFormat picks yaml or json from ?format= or else the Accept header
// (default yaml, the format of `allot export`).
func exportFormat(r *http.Request) (string, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "yaml", "yml":
		return "yaml", nil
	case "json":
		return "json", nil
	case "":
	default:
		return "", errBadRequest("format=%q: want yaml or json", f)
	}
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		mt, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
		switch {
		case mt == "application/json":
			return "json", nil
		case strings.Contains(mt, "yaml"):
			return "yaml", nil
		}
	}
	return "yaml", nil
}

// importPool makes the pool match a Pool document, all or nothing: every
// group is validated and the whole diff computed before anything is
// written; ?dry_run=true only reports it; ?prune=true deletes groups the
// document does not list. Adds and updates come first and are undone if a
// later write fails; retires and deletes, which cannot be undone, come last.
func (s *Server) importPool(w http.ResponseWriter, r *http.Request) error {
	dry, err := boolParam(r, "dry_run")
	if err != nil {
		return err
	}
	prune, err := boolParam(r, "prune")
	if err != nil {
		return err
	}
	p, err := decodePool(w, r)
	if err != nil {
		return err
	}
	have, err := s.reg.List(r.Context())
	if err != nil {
		return err
	}
	pending, err := s.reg.Schedules(r.Context())
	if err != nil {
		return err
	}
	plan, err := registry.PlanImport(p, have, prune, registry.WithPending(pending, time.Now()))
	var pe *registry.PoolError
	if errors.As(err, &pe) {
		return poolProblems(pe)
	}
	if err != nil {
		return err
	}
	if !dry && plan.Writes() > 0 {
		err := plan.Apply(r.Context(), s.reg, actor(r), registry.WithUndoBy("import-undo"))
		var ae *registry.ApplyError
		if errors.As(err, &ae) {
			return applyError(ae)
		}
		if err != nil {
			return err
		}
		s.log.Info("pool imported", "added", len(plan.Added), "changed", len(plan.Changed),
			"removed", len(plan.Removed), "by", actor(r))
		s.Nudge()
	}
	writeJSON(w, http.StatusOK, ImportReport{DryRun: dry, ImportPlan: plan})
	return nil
}

// decodePool reads a YAML or JSON Pool (registry.ParsePool: strict, one
// document with a groups list), up to MaxImportBytes: a longer body is
// refused before the parser sees it.
func decodePool(w http.ResponseWriter, r *http.Request) (Pool, error) {
	if r.ContentLength > MaxImportBytes {
		return Pool{}, errTooLarge(MaxImportBytes) // before reading a byte
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxImportBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return Pool{}, errTooLarge(mbe.Limit)
		}
		return Pool{}, errBadRequest("read body: %v", err)
	}
	p, err := registry.ParsePool(body)
	var de *registry.PoolDocumentError
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, yamlguard.ErrTooLarge):
		return Pool{}, errTooLarge(MaxImportBytes)
	case errors.Is(err, registry.ErrEmptyPool):
		return Pool{}, errBadRequest("empty request body: want a pool document (groups: [...])")
	case errors.As(err, &de):
		return Pool{}, errBadRequest("malformed pool document: %s", de.Problem)
	}
	return Pool{}, errBadRequest("malformed pool document: %v", err)
}

// poolProblems is the answer to a document with invalid groups: every
// problem at once, each with the API's way out.
func poolProblems(pe *registry.PoolError) error {
	msgs := make([]string, len(pe.Problems))
	for i, p := range pe.Problems {
		msg := p.Err.Error()
		switch {
		case errors.Is(p.Err, registry.ErrMaskedSecret):
			msg += "; export with ?reveal=true, or put the real value in the document"
		case errors.Is(p.Err, registry.ErrUnmarkSecret):
			msg += " (unset it first, then import)"
		}
		msgs[i] = fmt.Sprintf("groups[%d] %q: %s", p.Index, p.Name, msg)
	}
	return errInvalid("import rejected, nothing written: %s", strings.Join(msgs, "; "))
}

// applyError is the answer to an import that stopped at a failed write:
// the status of that write's error, and what the undo left.
func applyError(ae *registry.ApplyError) error {
	cause := fmt.Errorf("import stopped at group %q: %w", ae.Group, ae.Err)
	api := toAPIError(cause)
	msg := cause.Error()
	if api.status >= 500 {
		msg = "import stopped: " + api.message
	}
	if len(ae.Standing) == 0 {
		msg += fmt.Sprintf("; the %d writes before it were undone, the pool is as it was", ae.Undone)
	} else {
		kept := make([]string, len(ae.Standing))
		for i, w := range ae.Standing {
			kept[i] = w.Group
		}
		msg += fmt.Sprintf("; %d writes undone, these groups keep their new state: %s", ae.Undone, strings.Join(kept, ", "))
	}
	return &apiError{status: api.status, code: api.code, message: msg, err: cause}
}
