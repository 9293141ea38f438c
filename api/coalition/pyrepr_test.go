package coalition

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestPyString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `u''`},
		{"echo test", `u'echo test'`},
		{".", `u'.'`},
		{"it's", `u'it\'s'`},
		{`C:\render\`, `u'C:\\render\\'`},
		{`"quoted"`, `u'"quoted"'`},
		{"a\nb\rc\td", `u'a\nb\rc\td'`},
		{"\x00\x01\x1b\x1f\x7f", `u'\x00\x01\x1b\x1f\x7f'`},
		{"~ !", `u'~ !'`},
		{"café", `u'caf\u00e9'`},
		{"日本", `u'\u65e5\u672c'`},
		{"\u2028", `u'\u2028'`},
		{"\ufeff\ufffd", `u'\ufeff\ufffd'`},
		{"😀", `u'\U0001f600'`},
		{"\U0010ffff", `u'\U0010ffff'`},
		// Invalid UTF-8: each bad byte is U+00NN.
		{"\xff", `u'\xff'`},
		{"a\xc3", `u'a\xc3'`},
		{"\xc3\x28", `u'\xc3('`},
		{"\xed\xa0\x80", `u'\xed\xa0\x80'`}, // an encoded surrogate
		{"\xf4\x90\x80\x80", `u'\xf4\x90\x80\x80'`},
		{"\\x41", `u'\\x41'`}, // a literal backslash-x stays literal
		{"\\u0041", `u'\\u0041'`},
		{"$(HOME)\\n", `u'$(HOME)\\n'`}, // Coalition's two-character separator
	}
	for _, tc := range tests {
		if got := PyString(tc.in); got != tc.want {
			t.Errorf("PyString(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestPyStringIsASCII(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		s := pyRandomString(r)
		lit := PyString(s)
		for i := 0; i < len(lit); i++ {
			if c := lit[i]; c < 0x20 || c >= 0x7f {
				t.Fatalf("PyString(%q) = %q has byte %#x", s, lit, c)
			}
		}
	}
}

type pyStringer struct{}

func (pyStringer) String() string { return "it's" }

func TestPyTuple(t *testing.T) {
	tests := []struct {
		in   []any
		want string
	}{
		{[]any{int64(42), "echo test", ".", "", ""}, `(42, u'echo test', u'.', u'', u'')`},
		{[]any{-1, "", "", "", nil}, `(-1, u'', u'', u'', None)`},
		{nil, `()`},
		{[]any{1}, `(1,)`},
		{[]any{nil}, `(None,)`},
		{[]any{true, false}, `(True, False)`},
		{[]any{int8(-8), int16(-16), int32(-32), uint(1), uint8(8), uint16(16), uint32(32)}, `(-8, -16, -32, 1, 8, 16, 32)`},
		{[]any{int64(math.MinInt64), uint64(math.MaxUint64)}, `(-9223372036854775808, 18446744073709551615)`},
		{[]any{1.5, 2.0, math.Copysign(0, -1), 1e21, 1e-7, float32(0.25)}, `(1.5, 2.0, -0.0, 1e+21, 1e-07, 0.25)`},
		{[]any{math.Inf(1), math.Inf(-1), math.NaN()}, `(1e999, -1e999, None)`},
		{[]any{"a'b\\c\n"}, `(u'a\'b\\c\n',)`},
		{[]any{pyStringer{}, []int{1, 2}}, `(u'it\'s', u'[1 2]')`},
	}
	for _, tc := range tests {
		if got := PyTuple(tc.in...); got != tc.want {
			t.Errorf("PyTuple(%#v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// pyRandomString mixes the characters most likely to break a literal:
// quotes, backslashes, controls, DEL, Latin-1, BMP and astral runes,
// U+FFFD, and invalid UTF-8 (stray bytes, truncated and surrogate sequences).
func pyRandomString(r *rand.Rand) string {
	pieces := []string{
		"'", "\"", "\\", "\\x", "\\u", "\\N{DASH}", "\n", "\r", "\t", "\x00", "\x1b", "\x7f",
		"a", "Z", " ", "u'", "%s", "{}", "é", "ÿ", "\u0100", "\u2028", "\ufeff", "\ufffd",
		"日本", "😀", "\U0010ffff", "\xff", "\x80", "\xc3", "\xe6\x97", "\xed\xa0\x80", "\xf4\x90\x80\x80",
	}
	var b strings.Builder
	for range r.IntN(12) {
		if r.IntN(4) == 0 {
			b.WriteRune(rune(r.IntN(0x110000))) // surrogates come out as U+FFFD
		} else {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
	}
	return b.String()
}

// pyExpected is what eval(PyString(s)) holds: s with each invalid byte
// replaced by the rune of the same value.
func pyExpected(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			r = rune(s[i])
		}
		b.WriteRune(r)
		i += n
	}
	return b.String()
}

// pyLiteralEval feeds one literal per line to python3's ast.literal_eval and
// returns each result as hex of its UTF-8 encoding (strings) or its repr.
func pyLiteralEval(t *testing.T, lits []string) []string {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found; skipping the round-trip test")
	}
	const script = `
import ast, sys
for line in sys.stdin:
    v = ast.literal_eval(line)
    if isinstance(v, str):
        print("s" + v.encode("utf-8").hex())
    else:
        print("r" + ascii(v))
`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", script)
	cmd.Stdin = strings.NewReader(strings.Join(lits, "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("python3: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("python3: %v", err)
	}
	var res []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		res = append(res, sc.Text())
	}
	if len(res) != len(lits) {
		t.Fatalf("python3 returned %d results for %d literals", len(res), len(lits))
	}
	return res
}

func TestPyStringRoundTripPython(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var ins, lits []string
	for i := range 2000 {
		s := pyRandomString(r)
		if i < 0x100 {
			s = string([]byte{byte(i)}) // every single byte, valid or not
		}
		ins = append(ins, s)
		lits = append(lits, PyString(s))
	}
	for i, got := range pyLiteralEval(t, lits) {
		want := "s" + hex.EncodeToString([]byte(pyExpected(ins[i])))
		if got != want {
			t.Errorf("literal_eval(%s) = %s, want %s (input %q)", lits[i], got, want, ins[i])
		}
	}
}

func TestPyTupleRoundTripPython(t *testing.T) {
	tuples := [][]any{
		{int64(42), "echo test", ".", "", ""},
		{-1, "", "", "", nil},
		{7},
		{},
		{true, false, nil, 1.5, math.Inf(-1), uint64(math.MaxUint64)},
		{"a'b", "c\\d", "日本\xff"},
	}
	want := []string{
		`r(42, 'echo test', '.', '', '')`,
		`r(-1, '', '', '', None)`,
		`r(7,)`,
		`r()`,
		`r(True, False, None, 1.5, -inf, 18446744073709551615)`,
		`r("a'b", 'c\\d', '\u65e5\u672c\xff')`,
	}
	var lits []string
	for _, tu := range tuples {
		lits = append(lits, PyTuple(tu...))
	}
	for i, got := range pyLiteralEval(t, lits) {
		if got != want[i] {
			t.Errorf("literal_eval(%s) = %s, want %s", lits[i], got, want[i])
		}
	}
}

func ExamplePyTuple() {
	fmt.Println(PyTuple(int64(42), "echo 'test'", ".", "", ""))
	fmt.Println(PyTuple(-1, "", "", "", nil))
	// Output:
	// (42, u'echo \'test\'', u'.', u'', u'')
	// (-1, u'', u'', u'', None)
}
