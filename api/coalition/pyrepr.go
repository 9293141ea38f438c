package coalition

// Coalition workers are Python 2 programs that eval() the reply to
// /workers/pickjob, so that reply must be a Python literal which evaluates to
// exactly the intended values, whatever a job's command or directory holds.
// The renderers below emit pure-ASCII literals built only from escapes that
// mean the same in Python 2 and Python 3 (so tests can check them with
// python3's ast.literal_eval).

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// PyTuple renders values as a Python 2 tuple literal: int/int64 (and the
// other integer kinds) as decimal, string as a u'...' literal (see PyString),
// nil as None, bool as True/False. A float renders as a float literal, with
// ±Inf as ±1e999 (which Python reads as infinity) and NaN, which has no
// literal, as None. Any other type renders as PyString(fmt.Sprint(v)), so the
// result is always a valid literal. One value gets the trailing comma Python
// needs for a 1-tuple: PyTuple(1) is "(1,)".
func PyTuple(values ...any) string {
	var b strings.Builder
	b.WriteByte('(')
	for i, v := range values {
		if i > 0 {
			b.WriteString(", ")
		}
		pyWriteValue(&b, v)
	}
	if len(values) == 1 {
		b.WriteByte(',')
	}
	b.WriteByte(')')
	return b.String()
}

func pyWriteValue(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("None")
	case bool:
		if x {
			b.WriteString("True")
		} else {
			b.WriteString("False")
		}
	case string:
		pyWriteString(b, x)
	case int:
		b.WriteString(strconv.FormatInt(int64(x), 10))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case int32:
		b.WriteString(strconv.FormatInt(int64(x), 10))
	case int16:
		b.WriteString(strconv.FormatInt(int64(x), 10))
	case int8:
		b.WriteString(strconv.FormatInt(int64(x), 10))
	case uint:
		b.WriteString(strconv.FormatUint(uint64(x), 10))
	case uint64:
		b.WriteString(strconv.FormatUint(x, 10))
	case uint32:
		b.WriteString(strconv.FormatUint(uint64(x), 10))
	case uint16:
		b.WriteString(strconv.FormatUint(uint64(x), 10))
	case uint8:
		b.WriteString(strconv.FormatUint(uint64(x), 10))
	case float64:
		b.WriteString(pyFloat(x))
	case float32:
		b.WriteString(pyFloat(float64(x)))
	default:
		pyWriteString(b, fmt.Sprint(x))
	}
}

// pyFloat renders f so that Python reads back the same float: the shortest
// round-tripping digits, with a ".0" so that an integral value stays a float.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "None"
	case math.IsInf(f, 1):
		return "1e999"
	case math.IsInf(f, -1):
		return "-1e999"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return s
}

// PyString renders s as a Python 2 unicode literal u'...' that eval() turns
// back into exactly s. The literal is pure ASCII: backslash and single quote
// are escaped; \n, \r and \t use their short escapes; other control
// characters and DEL become \xNN; every non-ASCII rune becomes \uXXXX or
// \UXXXXXXXX.
//
// Invalid UTF-8 cannot be represented in a unicode string, so each invalid
// byte 0xNN is written as \xNN, which in a u'...' literal is the code point
// U+00NN: invalid bytes come back decoded as Latin-1 (0xFF becomes 'ÿ').
// Encoded surrogates (ED A0 80...) are invalid UTF-8 and are treated the same
// way, so the literal never contains a lone surrogate escape.
func PyString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 3)
	pyWriteString(&b, s)
	return b.String()
}

const pyHex = "0123456789abcdef"

func pyWriteString(b *strings.Builder, s string) {
	b.WriteString("u'")
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch {
			case c == '\\' || c == '\'':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c == '\n':
				b.WriteString(`\n`)
			case c == '\r':
				b.WriteString(`\r`)
			case c == '\t':
				b.WriteString(`\t`)
			case c < 0x20 || c == 0x7f:
				pyWriteHex(b, 'x', uint32(c), 2)
			default:
				b.WriteByte(c)
			}
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			pyWriteHex(b, 'x', uint32(c), 2) // invalid byte: U+00NN
		case r <= 0xffff:
			pyWriteHex(b, 'u', uint32(r), 4)
		default:
			pyWriteHex(b, 'U', uint32(r), 8)
		}
		i += n
	}
	b.WriteByte('\'')
}

// pyWriteHex writes \<kind> and v as exactly digits lower-case hex digits.
func pyWriteHex(b *strings.Builder, kind byte, v uint32, digits int) {
	b.WriteByte('\\')
	b.WriteByte(kind)
	for shift := 4 * (digits - 1); shift >= 0; shift -= 4 {
		b.WriteByte(pyHex[(v>>uint(shift))&0xf])
	}
}
