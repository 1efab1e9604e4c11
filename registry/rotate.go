package registry

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/redis/go-redis/v9"
)

//go:embed rotate.lua
var rotateLua string

var rotateScript = newScript(rotateLua)

// DefaultRotateBatch is how many stored texts one rotate script replaces
// when RotateSecrets is given no batch size.
const DefaultRotateBatch = 100

// MaxRotateBatch bounds a rotate batch: one script blocks Redis while it
// runs.
const MaxRotateBatch = 1000

// rotatePasses bounds the rewrite passes of RotateSecrets: a pass redoes
// only what writers changed during the one before.
const rotatePasses = 5

// rotateHook, when set, runs before each rotate script (tests only: a
// write between the read and the rewrite).
var rotateHook func()

// groupsPerScan is how many groups' documents and histories one scan step
// reads (one pipelined round trip).
const groupsPerScan = 20

// SecretCounts counts secret values in one place of the namespace.
type SecretCounts struct {
	// Plaintext counts the values stored in plain text.
	Plaintext int `json:"plaintext" yaml:"plaintext"`
	// Sealed counts the sealed values by key ID.
	Sealed map[string]int `json:"sealed" yaml:"sealed"`
}

func (c *SecretCounts) add(v string) {
	if id, ok := SealedKeyID(v); ok {
		if c.Sealed == nil {
			c.Sealed = map[string]int{}
		}
		c.Sealed[id]++
		return
	}
	c.Plaintext++
}

func (c SecretCounts) plus(o SecretCounts) SecretCounts {
	out := SecretCounts{Plaintext: c.Plaintext + o.Plaintext, Sealed: map[string]int{}}
	for _, m := range []map[string]int{c.Sealed, o.Sealed} {
		for id, n := range m {
			out.Sealed[id] += n
		}
	}
	return out
}

// SecretsStatus is what `allot secrets status` shows: how this process
// stores secret values, and how the namespace holds them.
type SecretsStatus struct {
	// AtRest is how this process writes secret values: AtRestEncrypted
	// (with secret keys) or AtRestPlaintext.
	AtRest string `json:"secrets_at_rest" yaml:"secrets_at_rest"`
	// Encrypts is the ID of the key new values are sealed with ("" = none).
	Encrypts string `json:"encrypts,omitempty" yaml:"encrypts,omitempty"`
	// Keys are the key IDs this process has, the first one encrypting.
	Keys []string `json:"keys" yaml:"keys"`
	// Documents counts the values of secret keys in the group documents.
	Documents SecretCounts `json:"documents" yaml:"documents"`
	// History counts them in the kept versions (a key secret in any kept
	// version of its group counts in every one, as History masks it).
	History SecretCounts `json:"history" yaml:"history"`
	// Schedules counts every value pending scheduled updates set (all are
	// sealed: a key may become secret before the update applies).
	Schedules SecretCounts `json:"schedules" yaml:"schedules"`
	// Total is the sum of the three.
	Total SecretCounts `json:"total" yaml:"total"`
	// Unknown are the key IDs values are sealed with that this process
	// does not have, sorted: it cannot open them, nor rotate them.
	Unknown []string `json:"unknown_keys" yaml:"unknown_keys"`
}

// storedKind is where a stored text lives.
type storedKind string

const (
	storedDocument storedKind = "string" // a group document
	storedHistory  storedKind = "list"   // a kept version in a group's history
	storedSchedule storedKind = "hash"   // a scheduled change
)

// storedText is one stored text that may hold secret values.
type storedText struct {
	kind  storedKind
	key   string // the Redis key
	field string // the schedule ID (storedSchedule)
	group string
	where string // "document", "history version N", "schedule ID"
	text  string
	// secret are the config keys whose values are secret here (documents
	// and history); a scheduled update's values all are.
	secret []string
}

// storedDoc is the part of a stored group document scan reads.
type storedDoc struct {
	Version    int64             `json:"version"`
	Config     map[string]string `json:"config"`
	SecretKeys []string          `json:"secret_keys"`
}

// storedItem is the part of a stored scheduled change scan reads.
type storedItem struct {
	ID     string `json:"id"`
	Group  string `json:"group"`
	Change struct {
		Set map[string]string `json:"set"`
	} `json:"change"`
}

// secretValues are the values of t that count as secret: of its secret
// keys, and any value sealed.
func (t storedText) secretValues() (map[string]string, error) {
	var cfg map[string]string
	all := false
	if t.kind == storedSchedule {
		var it storedItem
		if err := json.Unmarshal([]byte(t.text), &it); err != nil {
			return nil, fmt.Errorf("registry: decode scheduled change %q: %w", t.field, err)
		}
		cfg, all = it.Change.Set, true
	} else {
		var d storedDoc
		if err := json.Unmarshal([]byte(t.text), &d); err != nil {
			return nil, fmt.Errorf("registry: decode group %q (%s): %w", t.group, t.where, err)
		}
		cfg = d.Config
	}
	out := map[string]string{}
	for k, v := range cfg {
		if all || IsSealed(v) || slices.Contains(t.secret, k) {
			out[k] = v
		}
	}
	return out, nil
}

// scanSecrets reads every stored text of the namespace that may hold secret
// values — group documents, their history, scheduled changes — and calls fn
// with them a few groups at a time.
func (r *Registry) scanSecrets(ctx context.Context, fn func([]storedText) error) error {
	k := r.keys
	names, err := r.rdb.SMembers(ctx, k.Groups()).Result()
	if err != nil {
		return err
	}
	slices.Sort(names)
	for chunk := range slices.Chunk(names, groupsPerScan) {
		pipe := r.rdb.Pipeline()
		docs := make([]*redis.StringCmd, len(chunk))
		hists := make([]*redis.StringSliceCmd, len(chunk))
		for i, n := range chunk {
			docs[i] = pipe.Get(ctx, k.Group(n))
			hists[i] = pipe.LRange(ctx, k.History(n), 0, -1)
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		var texts []storedText
		for i, n := range chunk {
			doc, err := docs[i].Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			hist, err := hists[i].Result()
			if err != nil {
				return err
			}
			if doc != "" {
				var d storedDoc
				if err := json.Unmarshal([]byte(doc), &d); err != nil {
					return fmt.Errorf("registry: decode group %q: %w", n, err)
				}
				texts = append(texts, storedText{kind: storedDocument, key: k.Group(n), group: n, where: "document", text: doc, secret: d.SecretKeys})
			}
			// Marks are sticky in the history: a key secret in any kept
			// version is secret in all of them (MaskHistory).
			versions := make([]storedDoc, len(hist))
			var union []string
			for j, h := range hist {
				if err := json.Unmarshal([]byte(h), &versions[j]); err != nil {
					return fmt.Errorf("registry: decode history of group %q: %w", n, err)
				}
				for _, s := range versions[j].SecretKeys {
					if !slices.Contains(union, s) {
						union = append(union, s)
					}
				}
			}
			for j, h := range hist {
				texts = append(texts, storedText{kind: storedHistory, key: k.History(n), group: n,
					where: fmt.Sprintf("history version %d", versions[j].Version), text: h, secret: union})
			}
		}
		if err := fn(texts); err != nil {
			return err
		}
	}
	items, err := r.rdb.HGetAll(ctx, k.ScheduleItems()).Result()
	if err != nil {
		return err
	}
	ids := slices.Sorted(maps.Keys(items))
	for chunk := range slices.Chunk(ids, groupsPerScan*10) {
		texts := make([]storedText, 0, len(chunk))
		for _, id := range chunk {
			var it storedItem
			if err := json.Unmarshal([]byte(items[id]), &it); err != nil {
				return fmt.Errorf("registry: decode scheduled change %q: %w", id, err)
			}
			texts = append(texts, storedText{kind: storedSchedule, key: k.ScheduleItems(), field: id, group: it.Group,
				where: "schedule " + id, text: items[id]})
		}
		if err := fn(texts); err != nil {
			return err
		}
	}
	return nil
}

// SecretsStatus counts the namespace's secret values per key ID and in
// plain text, in group documents, history and scheduled changes. It opens
// nothing: it reads the key IDs the sealed values name.
func (r *Registry) SecretsStatus(ctx context.Context) (SecretsStatus, error) {
	st := SecretsStatus{AtRest: r.SecretsAtRest(), Encrypts: r.secrets.Primary(), Keys: r.secrets.IDs()}
	if st.Keys == nil {
		st.Keys = []string{}
	}
	err := r.scanSecrets(ctx, func(texts []storedText) error {
		for _, t := range texts {
			vals, err := t.secretValues()
			if err != nil {
				return err
			}
			c := map[storedKind]*SecretCounts{storedDocument: &st.Documents, storedHistory: &st.History, storedSchedule: &st.Schedules}[t.kind]
			for _, v := range vals {
				c.add(v)
			}
		}
		return nil
	})
	if err != nil {
		return SecretsStatus{}, wrap(err, "secrets status")
	}
	st.Total = st.Documents.plus(st.History).plus(st.Schedules)
	for _, c := range []*SecretCounts{&st.Documents, &st.History, &st.Schedules} {
		if c.Sealed == nil {
			c.Sealed = map[string]int{}
		}
	}
	st.Unknown = []string{}
	for _, id := range slices.Sorted(maps.Keys(st.Total.Sealed)) {
		if !r.secrets.Has(id) {
			st.Unknown = append(st.Unknown, id)
		}
	}
	return st, nil
}

// RotateResult is what RotateSecrets did.
type RotateResult struct {
	// Resealed counts the values sealed anew with the first key (values
	// that were plain text included).
	Resealed int `json:"resealed" yaml:"resealed"`
	// Documents, HistoryEntries and Schedules count the texts rewritten.
	Documents      int `json:"documents" yaml:"documents"`
	HistoryEntries int `json:"history_entries" yaml:"history_entries"`
	Schedules      int `json:"schedules" yaml:"schedules"`
	// Changed counts the texts a writer replaced between their read and
	// their rewrite; a later pass took them up again.
	Changed int `json:"changed" yaml:"changed"`
	// Passes counts the rewrite passes.
	Passes int `json:"passes" yaml:"passes"`
}

// RotateSecrets seals every secret value of the namespace — group documents,
// history, scheduled changes — with the first secret key: values sealed with
// another key are opened and sealed anew, plain ones sealed. It first opens
// every sealed value, and when one cannot be opened (its key is not in the
// list, or it fails authentication) it writes nothing and returns a
// *RotateError naming them. It then rewrites in batches of at most batch
// texts (<= 0: DefaultRotateBatch; at most MaxRotateBatch), each batch one
// script that replaces a text only if it is still exactly the one read:
// versions, revisions and events stay as they are, since the plain values
// do not change, so nodes keep serving what they hold. Texts that writers
// changed meanwhile are taken up by another pass (at most 5).
func (r *Registry) RotateSecrets(ctx context.Context, batch int) (RotateResult, error) {
	res, err := r.rotateSecrets(ctx, batch)
	return res, wrap(err, "rotate secrets")
}

func (r *Registry) rotateSecrets(ctx context.Context, batch int) (RotateResult, error) {
	var res RotateResult
	if r.secrets == nil {
		return res, ErrNoSecretKeys
	}
	if batch <= 0 {
		batch = DefaultRotateBatch
	}
	batch = min(batch, MaxRotateBatch)
	if err := r.checkOpenAll(ctx); err != nil {
		return res, err
	}
	for res.Passes < rotatePasses {
		res.Passes++
		changed := 0
		var pending []rewrite
		flush := func() error {
			for chunk := range slices.Chunk(pending, batch) {
				if rotateHook != nil {
					rotateHook()
				}
				done, err := r.runRotate(ctx, chunk)
				if err != nil {
					return err
				}
				for i, w := range chunk {
					if !done[i] {
						changed++
						continue
					}
					res.Resealed += w.resealed
					*res.kindCount(w.t.kind)++
				}
			}
			pending = pending[:0]
			return nil
		}
		err := r.scanSecrets(ctx, func(texts []storedText) error {
			for _, t := range texts {
				w, ok, err := r.reseal(t)
				if err != nil {
					return &RotateError{Problems: []error{err}, Written: res.written()}
				}
				if ok {
					pending = append(pending, w)
				}
				if len(pending) >= batch {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return res, err
		}
		res.Changed += changed
		if changed == 0 {
			break
		}
	}
	return res, nil
}

// rewrite is one stored text sealed anew.
type rewrite struct {
	t        storedText
	new      string
	resealed int
}

// written counts the texts rewritten so far.
func (res *RotateResult) written() int { return res.Documents + res.HistoryEntries + res.Schedules }

// maxRotateProblems bounds the values a RotateError lists; the rest are
// counted.
const maxRotateProblems = 100

// checkOpenAll opens every sealed value of the namespace and returns a
// *RotateError naming those that cannot be.
func (r *Registry) checkOpenAll(ctx context.Context) error {
	re := &RotateError{}
	err := r.scanSecrets(ctx, func(texts []storedText) error {
		for _, t := range texts {
			vals, err := t.secretValues()
			if err != nil {
				return err
			}
			for _, k := range slices.Sorted(maps.Keys(vals)) {
				if !IsSealed(vals[k]) {
					continue
				}
				_, id, opened, err := r.secrets.open(r.Namespace(), t.group, k, vals[k])
				if err == nil && !opened {
					err = ErrSecretKeyMissing
				}
				switch {
				case err == nil:
				case len(re.Problems) < maxRotateProblems:
					re.Problems = append(re.Problems, &SecretValueError{Group: t.group, Where: t.where, Key: k, KeyID: id, Err: err})
				default:
					re.More++
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(re.Problems) > 0 {
		return re
	}
	return nil
}

// reseal returns t with every secret value sealed with the first key; ok is
// false when every one already is.
func (r *Registry) reseal(t storedText) (rewrite, bool, error) {
	vals, err := t.secretValues()
	if err != nil {
		return rewrite{}, false, err
	}
	primary := r.secrets.Primary()
	next := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(vals)) {
		v := vals[k]
		if id, ok := SealedKeyID(v); ok && id == primary {
			continue
		}
		plain := v
		if IsSealed(v) {
			p, id, opened, err := r.secrets.open(r.Namespace(), t.group, k, v)
			if err == nil && !opened {
				err = ErrSecretKeyMissing
			}
			if err != nil {
				return rewrite{}, false, &SecretValueError{Group: t.group, Where: t.where, Key: k, KeyID: id, Err: err}
			}
			plain = p
		}
		s, err := r.secrets.seal(r.Namespace(), t.group, k, plain)
		if err != nil {
			return rewrite{}, false, err
		}
		next[k] = s
	}
	if len(next) == 0 {
		return rewrite{}, false, nil
	}
	text, err := replaceConfig(t.text, t.kind == storedSchedule, next)
	if err != nil {
		return rewrite{}, false, fmt.Errorf("registry: rewrite group %q (%s): %w", t.group, t.where, err)
	}
	return rewrite{t: t, new: text, resealed: len(next)}, true, nil
}

// replaceConfig returns the stored JSON text with the config values of next
// replaced (for a scheduled change, the values its update sets), every
// other field kept as it is.
func replaceConfig(text string, schedule bool, next map[string]string) (string, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		return "", err
	}
	edit := func(raw json.RawMessage) (json.RawMessage, error) {
		var cfg map[string]string
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return nil, err
		}
		maps.Copy(cfg, next)
		return marshalPlain(cfg)
	}
	var err error
	if !schedule {
		if doc["config"], err = edit(doc["config"]); err != nil {
			return "", err
		}
	} else {
		var change map[string]json.RawMessage
		if err := json.Unmarshal(doc["change"], &change); err != nil {
			return "", err
		}
		if change["set"], err = edit(change["set"]); err != nil {
			return "", err
		}
		if doc["change"], err = marshalPlain(change); err != nil {
			return "", err
		}
	}
	out, err := marshalPlain(doc)
	return string(out), err
}

// marshalPlain is json.Marshal without HTML escaping, so a rewritten text
// keeps the other values byte for byte.
func marshalPlain(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// runRotate runs rotate.lua for ws: done[i] reports whether ws[i] was
// stored.
func (r *Registry) runRotate(ctx context.Context, ws []rewrite) (done []bool, err error) {
	keys := make([]string, len(ws))
	args := make([]any, 0, 4*len(ws))
	for i, w := range ws {
		keys[i] = w.t.key
		args = append(args, string(w.t.kind), w.t.field, w.t.text, w.new)
	}
	n, err := rotateScript.Run(ctx, r.rdb, keys, args...).Int64Slice()
	if err != nil {
		return nil, err
	}
	if len(n) != len(ws) {
		return nil, errMalformed
	}
	done = make([]bool, len(n))
	for i, x := range n {
		done[i] = x == 1
	}
	return done, nil
}

// kindCount is the RotateResult counter of kind.
func (res *RotateResult) kindCount(kind storedKind) *int {
	switch kind {
	case storedDocument:
		return &res.Documents
	case storedHistory:
		return &res.HistoryEntries
	}
	return &res.Schedules
}
