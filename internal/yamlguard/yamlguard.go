package yamlguard

import (
	"bytes"
	"errors"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits of Check.
const (
	// MaxBytes is the largest input Check accepts: the import limit of
	// `allot import`, `group add --from-file` and POST /v1/import.
	MaxBytes = 8 << 20
	// MaxValues is the most values (scalars, lists and maps) an input may
	// hold. A pool file of 8 MiB holds about half as many; parsing this many
	// costs a few hundred MB at most, where aliases could cost any amount.
	MaxValues = 1 << 20
	// maxStarLike is how many '*' the input may hold where an alias could
	// start, inside text the scanner takes for quoted or block scalars.
	// Even if the scanner were misled there, the parse that confirms the
	// check would see at most this many aliases, and it refuses them.
	maxStarLike = 100
)

// Check refuses data that is larger than MaxBytes, uses a YAML alias, or
// holds more than MaxValues values. It first scans the bytes without
// parsing (constant memory), so a hostile file is refused before the
// decoder builds anything. Only when a '*' stands where an alias could
// start, inside text the scan took for a quoted or block scalar, does it
// also parse once into a node tree (no alias is expanded there) and walk
// it for an alias the scan could not see. Errors are *Error naming the line, or ErrTooLarge; a
// document that does not parse is left to the caller's decoder, which
// reports it in its own words.
func Check(data []byte) error {
	if len(data) > MaxBytes {
		return ErrTooLarge
	}
	stars, err := scan(data)
	if err != nil {
		return err
	}
	if stars == 0 {
		return nil // no '*' stands where an alias could start: none can exist
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		if err := dec.Decode(&root); err != nil {
			return nil // end of input, or a syntax error the caller reports
		}
		if n := findAlias(&root); n != nil {
			return &Error{Line: n.Line, Err: ErrAlias}
		}
	}
}

// findAlias returns the first alias node under n, or nil.
func findAlias(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		return n
	}
	for _, c := range n.Content {
		if a := findAlias(c); a != nil {
			return a
		}
	}
	return nil
}

// scanner walks YAML bytes token by token, enough to know where a node may
// start: after a line's indentation, "- ", "? ", ": ", "[", "{" and ",".
// It skips quoted scalars, block scalars (| and >) and comments, counts
// values, and stops at the first alias.
type scanner struct {
	data      []byte
	i         int
	line      int
	lineStart int // offset of the current line's first byte
	flow      int // depth of [ and {
	nodeStart bool
	keyCol    int // column of the last key or "-" on this line; -1 = none
	values    int
}

// scan runs the scanner over data and returns how many '*' stand where an
// alias could start, in text the scanner took for scalars.
func scan(data []byte) (int, error) {
	s := &scanner{data: data, line: 1, nodeStart: true, keyCol: -1}
	if err := s.run(); err != nil {
		return 0, err
	}
	n := starLike(data)
	if n > maxStarLike {
		return n, &Error{Line: 1, Err: ErrAlias}
	}
	return n, nil
}

func (s *scanner) fail(err error) error { return &Error{Line: s.line, Err: err} }

func (s *scanner) peek(k int) byte {
	if s.i+k < len(s.data) {
		return s.data[s.i+k]
	}
	return 0
}

// blankAfter reports whether the byte after s.i ends a token (space, line
// break or end of input), as after the indicators "- ", "? " and ": ".
func (s *scanner) blankAfter() bool {
	switch s.peek(1) {
	case 0, ' ', '\t', '\n', '\r':
		return true
	case ',', '[', ']', '{', '}':
		return s.flow > 0
	}
	return false
}

func (s *scanner) newline() {
	s.i++
	s.line++
	s.lineStart = s.i
	if s.flow == 0 {
		s.nodeStart, s.keyCol = true, -1
	}
}

func (s *scanner) value() error {
	s.values++
	if s.values > MaxValues {
		return s.fail(ErrTooManyValues)
	}
	return nil
}

func (s *scanner) run() error {
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch c {
		case '\n':
			s.newline()
			continue
		case ' ', '\t', '\r':
			s.i++
			continue
		case '#':
			s.skipLine()
			continue
		}
		col := s.i - s.lineStart
		if s.nodeStart {
			if err := s.node(c, col); err != nil {
				return err
			}
			continue
		}
		switch c {
		case ':', '?', '-':
			if s.blankAfter() || c == ':' {
				s.i++
				s.nodeStart = true
				continue
			}
		case ',':
			s.i++
			s.nodeStart = s.flow > 0
			continue
		case '[', '{':
			s.flow++
			s.i++
			s.nodeStart = true
			continue
		case ']', '}':
			s.flow = max(s.flow-1, 0)
			s.i++
			continue
		}
		s.plain()
	}
	return nil
}

// node handles the token at s.i, where a node may start.
func (s *scanner) node(c byte, col int) error {
	switch c {
	case '*':
		return s.fail(ErrAlias)
	case '&', '!': // anchor or tag: the node itself follows
		for s.i < len(s.data) && !s.ends(s.data[s.i]) {
			s.i++
		}
		return nil
	case '"', '\'':
		s.keyCol = col
		s.quoted(c)
		s.nodeStart = false
		return s.value()
	case '|', '>':
		if s.flow == 0 {
			n := s.keyCol
			if n < 0 {
				n = col
			}
			s.block(n)
			return s.value()
		}
	case '-', '?', ':':
		if s.blankAfter() {
			if c != ':' || s.keyCol < 0 {
				// "- " and "? " open a node at this column, and so does a
				// ": " first on its line (the value of a "? " key).
				s.keyCol = col
			}
			s.i++
			return nil
		}
	case '[', '{':
		s.flow++
		s.i++
		return s.value()
	case ']', '}':
		s.flow = max(s.flow-1, 0)
		s.i++
		s.nodeStart = false
		return nil
	case ',':
		s.i++
		return nil
	case '%':
		if col == 0 {
			s.skipLine()
			return nil
		}
	}
	s.keyCol = col
	s.nodeStart = false
	s.plain()
	return s.value()
}

// ends reports whether c ends an anchor or tag name.
func (s *scanner) ends(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n':
		return true
	case ',', '[', ']', '{', '}':
		return s.flow > 0
	}
	return false
}

// plain skips a plain scalar up to what ends it: a line break, ": ", " #",
// or in flow context a flow indicator. The main loop handles that.
func (s *scanner) plain() {
	for s.i < len(s.data) {
		switch c := s.data[s.i]; c {
		case '\n':
			return
		case ':':
			if s.blankAfter() {
				return
			}
		case '#':
			if p := s.data[s.i-1]; p == ' ' || p == '\t' {
				return
			}
		case ',', '[', ']', '{', '}':
			if s.flow > 0 {
				return
			}
		}
		s.i++
	}
}

// quoted skips a quoted scalar opened by q at s.i, counting its lines.
func (s *scanner) quoted(q byte) {
	s.i++
	for s.i < len(s.data) {
		c := s.data[s.i]
		switch {
		case c == '\n':
			s.line++
			s.lineStart = s.i + 1
		case c == '\\' && q == '"':
			if s.peek(1) == '\n' {
				s.line++
				s.lineStart = s.i + 2
			}
			s.i++
		case c == q && q == '\'' && s.peek(1) == '\'':
			s.i++
		case c == q:
			s.i++
			return
		}
		s.i++
	}
}

// block skips a block scalar whose header is at s.i and whose parent node
// is indented n: its lines are the blank ones and those indented more.
func (s *scanner) block(n int) {
	s.skipLine()
	for s.i < len(s.data) {
		j, ind := s.i, 0
		for j < len(s.data) && s.data[j] == ' ' {
			j++
			ind++
		}
		blank := true
		for k := j; k < len(s.data) && s.data[k] != '\n'; k++ {
			if c := s.data[k]; c != ' ' && c != '\t' && c != '\r' {
				blank = false
				break
			}
		}
		if !blank && ind <= n {
			return
		}
		s.skipLine()
		if s.i < len(s.data) {
			s.newline()
		}
	}
}

// skipLine moves s.i to the line break ending the current line.
func (s *scanner) skipLine() {
	if k := bytes.IndexByte(s.data[s.i:], '\n'); k >= 0 {
		s.i += k
	} else {
		s.i = len(s.data)
	}
}

// starLike counts the '*' of data that stand where an alias could start
// (after a line's indentation or after "[", "{", ",", ":", "-" or "?" and
// blanks), wherever they are: a context-free bound on the aliases a parser
// could find.
func starLike(data []byte) int {
	n := 0
	for i, c := range data {
		if c != '*' {
			continue
		}
		j := i - 1
		for j >= 0 && (data[j] == ' ' || data[j] == '\t') {
			j--
		}
		if j < 0 {
			n++
			continue
		}
		switch data[j] {
		case '\n', '\r', '[', '{', ',', ':', '-', '?':
			n++
		}
	}
	return n
}

// goTypeSuffix is the Go type yaml.v3 names in its errors ("field x not
// found in type registry.PoolGroup"): nothing a user can act on.
var goTypeSuffix = regexp.MustCompile(` in type \w+\.\w+`)

// Describe renders a decoding error of yaml.v3 on one line for a user:
// every problem of a type error joined with "; ", each naming its line, and
// no Go type names or "yaml: " prefix. The CLI and the server word every
// YAML input error (pool and group files) with it.
func Describe(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = goTypeSuffix.ReplaceAllString(m, "")
		}
		return strings.Join(msgs, "; ")
	}
	msg := strings.Join(strings.Fields(err.Error()), " ")
	return goTypeSuffix.ReplaceAllString(strings.TrimPrefix(msg, "yaml: "), "")
}
