package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/allot-io/allot/registry"
)

func init() { commandFactories = append(commandFactories, newSecretsCommand) }

// envSecretKeys holds the key list when --secret-keys is not given.
const envSecretKeys = "ALLOT_SECRET_KEYS"

// resolveSecretKeys reads the key list of --secret-keys FILE, else of
// ALLOT_SECRET_KEYS (the flag wins, as --redis does over its variable).
// A list that does not parse stops every command before Redis is touched;
// no message shows key material.
func (a *app) resolveSecretKeys() error {
	spec, from := a.getenv(envSecretKeys), envSecretKeys
	if a.secretKeysFile != "" {
		b, err := os.ReadFile(a.secretKeysFile)
		if err != nil {
			return usageErrorf("invalid --secret-keys %s: %s", a.secretKeysFile, oneLine(err.Error()))
		}
		spec, from = string(b), "--secret-keys "+a.secretKeysFile
	}
	if strings.TrimSpace(spec) == "" && a.secretKeysFile == "" {
		return nil
	}
	k, err := registry.ParseSecretKeys(spec)
	if err != nil {
		return usageErrorf("invalid %s: %s", from, registry.Reason(err))
	}
	a.secretSpec, a.secrets = spec, k
	return nil
}

func newSecretsCommand(a *app) *cobra.Command {
	cmd := noun(&cobra.Command{
		Use:   "secrets",
		Short: "Encryption at rest of secret values: status, rotate, keygen",
		Long: `Secret config values (those of secret keys) are stored encrypted when the CLI,
serve and nodes are given secret keys: --secret-keys FILE or ALLOT_SECRET_KEYS,
"id:base64-of-32-bytes" entries, comma-separated. The first key encrypts; every
key decrypts. Without keys they are stored in plain text. See docs/security.md.`,
	})
	cmd.AddCommand(newSecretsStatusCommand(a), newSecretsRotateCommand(a), newSecretsKeygenCommand(a))
	return cmd
}

func newSecretsStatusCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Count secret values per key ID and in plain text (documents, history, schedules)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				st, err := reg.SecretsStatus(ctx)
				if err != nil {
					return err
				}
				return a.print(st, func() table { return secretsStatusTable(st) })
			})
		},
	}
}

// secretsStatusTable is the table of `secrets status`: one row per place,
// one column per key ID (this process's first, in list order).
func secretsStatusTable(st registry.SecretsStatus) table {
	ids := slices.Clone(st.Keys)
	for _, id := range slices.Sorted(maps.Keys(st.Total.Sealed)) {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	t := table{header: append([]string{"WHERE", "PLAINTEXT"}, ids...)}
	if st.AtRest == registry.AtRestPlaintext {
		t.title = []string{"secrets at rest: plain text (ALLOT_SECRET_KEYS encrypts new values)"}
	} else {
		t.title = []string{fmt.Sprintf("secrets at rest: encrypted with key %s (keys: %s)", st.Encrypts, strings.Join(st.Keys, ","))}
	}
	for _, r := range []struct {
		name string
		c    registry.SecretCounts
	}{{"documents", st.Documents}, {"history", st.History}, {"schedules", st.Schedules}, {"total", st.Total}} {
		row := []string{r.name, strconv.Itoa(r.c.Plaintext)}
		for _, id := range ids {
			row = append(row, strconv.Itoa(r.c.Sealed[id]))
		}
		t.rows = append(t.rows, row)
	}
	if len(st.Unknown) > 0 {
		t.footer = append(t.footer, fmt.Sprintf("sealed with keys not here: %s (add them to read or rotate those)", strings.Join(st.Unknown, ",")))
	}
	if st.Total.Plaintext > 0 && st.AtRest == registry.AtRestEncrypted {
		t.footer = append(t.footer, "plain-text values remain: 'allot secrets rotate' encrypts them")
	} else if n := sealedNotWith(st.Total, st.Encrypts); n > 0 {
		t.footer = append(t.footer, fmt.Sprintf("%d values sealed with another key: 'allot secrets rotate' reseals them", n))
	}
	return t
}

// sealedNotWith counts the sealed values of c under another key than id.
func sealedNotWith(c registry.SecretCounts, id string) int {
	n := 0
	for k, v := range c.Sealed {
		if k != id {
			n += v
		}
	}
	return n
}

func newSecretsRotateCommand(a *app) *cobra.Command {
	var batch int
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Encrypt every secret value with the first key (plain ones included), while nodes keep serving",
		Long: `rotate seals every secret value of the namespace (group documents, their
history, pending scheduled changes) with the first key of the key list: values
sealed with another key are decrypted and sealed anew, plain ones encrypted.
It first decrypts every value and, when one cannot be (its key is not in the
list, or it was tampered with), writes nothing and names it. Then it rewrites
in batches, each one script that replaces a text only if it is unchanged:
versions, revisions and events stay as they are, so nodes keep serving.

To rotate: give every process "new,old" (nodes, serve, the CLI), run rotate,
check 'allot secrets status', then drop "old" everywhere.`,
		Example: "  ALLOT_SECRET_KEYS=k2:...,k1:... allot secrets rotate",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if batch <= 0 || batch > registry.MaxRotateBatch {
				return usageErrorf("invalid --batch %d: want 1 to %d", batch, registry.MaxRotateBatch)
			}
			if a.secrets == nil {
				return usageErrorf("no secret keys: give --secret-keys FILE or ALLOT_SECRET_KEYS (the first key encrypts)")
			}
			return a.withRegistry(cmd, func(ctx context.Context, reg *registry.Registry) error {
				res, err := reg.RotateSecrets(ctx, batch)
				if err != nil {
					return err
				}
				return a.print(res, func() table {
					t := table{title: []string{fmt.Sprintf("rotated: %d values sealed with key %s in %d documents, %d history entries, %d scheduled changes",
						res.Resealed, a.secrets.Primary(), res.Documents, res.HistoryEntries, res.Schedules)}}
					if res.Changed > 0 {
						t.title = append(t.title, fmt.Sprintf("%d texts written by others meanwhile were taken up again (%d passes)", res.Changed, res.Passes))
					}
					return t
				})
			})
		},
	}
	cmd.Flags().IntVar(&batch, "batch", registry.DefaultRotateBatch, "texts rewritten per script (each script blocks Redis while it runs)")
	return cmd
}

var keygenID = regexp.MustCompile(registry.SecretKeyIDRule)

func newSecretsKeygenCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "keygen ID",
		Short: "Print a new random key as ID:base64 (put it first in the key list to encrypt with it)",
		Args:  exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !keygenID.MatchString(args[0]) {
				return usageErrorf("invalid key ID %q: want %s", args[0], registry.SecretKeyIDRule)
			}
			b := make([]byte, registry.SecretKeyBytes)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			_, err := fmt.Fprintf(a.stdout, "%s:%s\n", args[0], base64.StdEncoding.EncodeToString(b))
			return err
		},
	}
}
