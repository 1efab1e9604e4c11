package registry

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"regexp"
	"strings"
	"sync"
)

// Encryption at rest (docs/security.md, "Encryption at rest"). With secret
// keys, every value of a secret config key is stored sealed: AES-256-GCM
// under the first key, a random 96-bit nonce, and additional data that binds
// the namespace, the group, the config key and the key ID, so a sealed value
// opens only where it was written. The stored text describes itself:
//
//	allot:enc:v1:<key id>:<base64 of nonce || ciphertext>
//
// Every key of the list opens; the first one seals. A reader that lacks a
// value's key keeps the sealed text (Group.Sealed reports it) and a writer
// that lacks it carries the text unchanged, so a rotation can roll out key
// lists process by process.

// SealedPrefix starts every sealed value. A value a user writes may not
// start with it (ErrInvalidConfig).
const SealedPrefix = "allot:enc:v1:"

// SecretKeyBytes is the size of a secret key: 256 bits.
const SecretKeyBytes = 32

// MaxSecretKeys bounds a key list.
const MaxSecretKeys = 64

// At-rest states of secret values, as Registry.SecretsAtRest and the status
// outputs (secrets_at_rest) say them.
const (
	// AtRestPlaintext: no key is configured; secret values are stored as
	// they are given.
	AtRestPlaintext = "plaintext"
	// AtRestEncrypted: values of secret keys are sealed when written.
	AtRestEncrypted = "encrypted"
)

// SecretKeyIDRule is the rule of a key ID.
const SecretKeyIDRule = `^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$`

var secretKeyID = regexp.MustCompile(SecretKeyIDRule)

const (
	gcmNonceBytes = 12
	gcmTagBytes   = 16
)

// SecretKeys is a parsed key list: the first key seals, every key opens.
// It is safe for concurrent use, and its String never shows key material.
type SecretKeys struct {
	ids  []string
	aead map[string]cipher.AEAD

	// opened remembers values already opened, by sealed text: a node
	// reads the same documents again and again (every assignment read,
	// every event's document), and a hit costs a map lookup instead of
	// base64 and AES-GCM. An entry holds for the namespace, group and
	// key it was authenticated for only. Cleared when full.
	mu     sync.Mutex
	opened map[string]openedValue
}

// openedValue is a cached open: plain is the value of sealed text for
// config key key of group in namespace ns.
type openedValue struct{ ns, group, key, plain string }

// maxOpened bounds the cache of opened values (about 1 MB of API keys).
const maxOpened = 8192

// ParseSecretKeys reads a key list: entries "id:base64" separated by commas
// (or new lines, as in a file; blank entries are skipped), each a key ID
// (SecretKeyIDRule) and 32 bytes in standard base64 (`openssl rand -base64
// 32`). A list without a key, an entry without a colon, a bad ID, an ID given twice, bad base64 or a key that is not
// 32 bytes is an error wrapping ErrInvalidSecretKeys; no message shows key
// material.
func ParseSecretKeys(spec string) (*SecretKeys, error) {
	var entries []string
	for _, e := range strings.FieldsFunc(spec, func(r rune) bool { return r == ',' || r == '\n' }) {
		if e = strings.TrimSpace(e); e != "" {
			entries = append(entries, e)
		}
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: no key given (want id:base64-of-32-bytes, comma-separated)", ErrInvalidSecretKeys)
	}
	if len(entries) > MaxSecretKeys {
		return nil, fmt.Errorf("%w: %d keys, at most %d", ErrInvalidSecretKeys, len(entries), MaxSecretKeys)
	}
	k := &SecretKeys{aead: make(map[string]cipher.AEAD, len(entries))}
	for i, e := range entries {
		id, b64, ok := strings.Cut(e, ":")
		if !ok {
			return nil, fmt.Errorf("%w: entry %d: want id:base64-of-32-bytes", ErrInvalidSecretKeys, i+1)
		}
		if !secretKeyID.MatchString(id) {
			// The text may be key material written the wrong way round:
			// never echo it.
			return nil, fmt.Errorf("%w: entry %d: invalid key ID (want %s)", ErrInvalidSecretKeys, i+1, SecretKeyIDRule)
		}
		if _, dup := k.aead[id]; dup {
			return nil, fmt.Errorf("%w: key ID %q given twice", ErrInvalidSecretKeys, id)
		}
		raw, err := decodeKey(strings.TrimSpace(b64))
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: not valid base64", ErrInvalidSecretKeys, id)
		}
		if len(raw) != SecretKeyBytes {
			return nil, fmt.Errorf("%w: key %q is %d bytes, want %d (256 bits)", ErrInvalidSecretKeys, id, len(raw), SecretKeyBytes)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %w", ErrInvalidSecretKeys, id, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q: %w", ErrInvalidSecretKeys, id, err)
		}
		k.ids = append(k.ids, id)
		k.aead[id] = aead
	}
	return k, nil
}

// decodeKey reads standard base64, padded or not.
func decodeKey(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") {
		return base64.StdEncoding.Strict().DecodeString(s)
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}

// Primary is the ID of the key that seals ("" for a nil list).
func (k *SecretKeys) Primary() string {
	if k == nil {
		return ""
	}
	return k.ids[0]
}

// IDs are the key IDs in list order (the first seals).
func (k *SecretKeys) IDs() []string {
	if k == nil {
		return nil
	}
	return append([]string(nil), k.ids...)
}

// Has reports whether the list holds key id.
func (k *SecretKeys) Has(id string) bool {
	if k == nil {
		return false
	}
	_, ok := k.aead[id]
	return ok
}

// String is the key IDs, comma-separated: never key material.
func (k *SecretKeys) String() string { return strings.Join(k.IDs(), ",") }

// IsSealed reports whether v is a sealed value (it starts with SealedPrefix).
func IsSealed(v string) bool { return strings.HasPrefix(v, SealedPrefix) }

// SealedKeyID is the ID of the key v is sealed with; false when v is not
// sealed.
func SealedKeyID(v string) (string, bool) {
	rest, ok := strings.CutPrefix(v, SealedPrefix)
	if !ok {
		return "", false
	}
	id, _, _ := strings.Cut(rest, ":")
	return id, true
}

// validKeyID is SecretKeyIDRule without a regexp (open runs on every
// read of a held group).
func validKeyID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// sealAD is the additional data of a value: the format, the namespace, the
// group, the config key and the key ID, each length-prefixed so no two
// tuples share an encoding.
func sealAD(ns, group, key, id string) []byte {
	parts := []string{strings.TrimSuffix(SealedPrefix, ":"), ns, group, key, id}
	n := 0
	for _, p := range parts {
		n += 4 + len(p)
	}
	ad := make([]byte, 0, n)
	for _, p := range parts {
		ad = binary.BigEndian.AppendUint32(ad, uint32(len(p)))
		ad = append(ad, p...)
	}
	return ad
}

// seal returns plain sealed with the primary key for config key key of
// group in namespace ns.
func (k *SecretKeys) seal(ns, group, key, plain string) (string, error) {
	id := k.ids[0]
	aead := k.aead[id]
	buf := make([]byte, gcmNonceBytes, gcmNonceBytes+len(plain)+gcmTagBytes)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("registry: seal: %w", err)
	}
	buf = aead.Seal(buf, buf[:gcmNonceBytes], []byte(plain), sealAD(ns, group, key, id))
	return SealedPrefix + id + ":" + base64.RawStdEncoding.EncodeToString(buf), nil
}

// open returns the plain text of sealed value v of config key key of group.
// opened is false, with no error, when the list lacks v's key: the value
// stays sealed. A malformed value, or one that fails authentication
// (tampered, or moved from another namespace, group or key), is an error
// wrapping ErrSecretAuth. k may be nil (no key: nothing opens).
func (k *SecretKeys) open(ns, group, key, v string) (plain, id string, opened bool, err error) {
	if k != nil {
		k.mu.Lock()
		c, hit := k.opened[v]
		k.mu.Unlock()
		if hit && c.ns == ns && c.group == group && c.key == key {
			id, _, _ = strings.Cut(v[len(SealedPrefix):], ":")
			return c.plain, id, true, nil
		}
	}
	rest, _ := strings.CutPrefix(v, SealedPrefix)
	id, payload, ok := strings.Cut(rest, ":")
	if !ok || !validKeyID(id) {
		return "", id, false, fmt.Errorf("%w: malformed sealed value", ErrSecretAuth)
	}
	if !k.Has(id) {
		return "", id, false, nil
	}
	raw, err := base64.RawStdEncoding.Strict().DecodeString(payload)
	if err != nil || len(raw) < gcmNonceBytes+gcmTagBytes {
		return "", id, false, fmt.Errorf("%w: malformed sealed value", ErrSecretAuth)
	}
	// Decrypted in place: the read path of every held group runs this.
	out, err := k.aead[id].Open(raw[gcmNonceBytes:gcmNonceBytes], raw[:gcmNonceBytes], raw[gcmNonceBytes:], sealAD(ns, group, key, id))
	if err != nil {
		return "", id, false, ErrSecretAuth
	}
	plain = string(out)
	k.mu.Lock()
	if k.opened == nil || len(k.opened) >= maxOpened {
		k.opened = make(map[string]openedValue)
	}
	k.opened[v] = openedValue{ns: ns, group: group, key: key, plain: plain}
	k.mu.Unlock()
	return plain, id, true, nil
}
