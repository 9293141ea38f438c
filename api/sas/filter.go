package sas

import (
	"fmt"
	"github.com/croftfarm/croft/api/apierr"
	"net/http"
	"strings"
)

// Bounds of a ?filter= expression.
const (
	MaxFilter      = 1024 // bytes
	MaxFilterDepth = 8    // nested and/or
	MaxFilterTerms = 32   // comparisons
)

// filterFields are the fields a filter may name.
var filterFields = map[string]bool{"name": true, "state": true, "owner": true, "id": true}

// fieldsOf holds an item's filterable fields.
type fieldsOf map[string]string

// expr is a parsed filter: a comparison, or and/or of expressions.
type expr struct {
	op    string // eq, ne, contains, startsWith, and, or
	field string
	value string
	args  []*expr
}

func (e *expr) match(f fieldsOf) bool {
	switch e.op {
	case "and":
		for _, a := range e.args {
			if !a.match(f) {
				return false
			}
		}
		return true
	case "or":
		for _, a := range e.args {
			if a.match(f) {
				return true
			}
		}
		return false
	}
	v := f[e.field]
	switch e.op {
	case "eq":
		return v == e.value
	case "ne":
		return v != e.value
	case "contains":
		return strings.Contains(v, e.value)
	default: // startsWith
		return strings.HasPrefix(v, e.value)
	}
}

// badFilter is the 400 of an invalid filter (errorCode 1104).
func badFilter(format string, args ...any) error {
	return &Error{Status: http.StatusBadRequest, Code: CodeBadFilter, Msg: "invalid filter: " + fmt.Sprintf(format, args...)}
}

// parseFilter parses SAS's filter subset: eq, ne, contains, startsWith
// on name, state, owner, id; and, or of two or more; values quoted with
// ' (a quote doubled inside), " or bare words.
func parseFilter(s string) (*expr, error) {
	if len(s) > MaxFilter {
		return nil, badFilter("%d bytes, the limit is %d", len(s), MaxFilter)
	}
	p := &filterParser{s: s}
	e, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.s) {
		return nil, badFilter("unexpected %q at %d", apierr.Truncate(p.s[p.i:], 16), p.i)
	}
	return e, nil
}

type filterParser struct {
	s     string
	i     int
	terms int
}

func (p *filterParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *filterParser) word() string {
	p.space()
	j := p.i
	for p.i < len(p.s) && (isAlnum(p.s[p.i]) || p.s[p.i] == '_' || p.s[p.i] == '-' || p.s[p.i] == '.') {
		p.i++
	}
	return p.s[j:p.i]
}

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

func (p *filterParser) expect(b byte) error {
	p.space()
	if p.i >= len(p.s) || p.s[p.i] != b {
		return badFilter("%q expected at %d", string(b), p.i)
	}
	p.i++
	return nil
}

func (p *filterParser) expr(depth int) (*expr, error) {
	if depth > MaxFilterDepth {
		return nil, badFilter("nested deeper than %d", MaxFilterDepth)
	}
	op := p.word()
	if err := p.expect('('); err != nil {
		return nil, err
	}
	e := &expr{op: op}
	switch op {
	case "and", "or":
		for {
			a, err := p.expr(depth + 1)
			if err != nil {
				return nil, err
			}
			e.args = append(e.args, a)
			p.space()
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
				continue
			}
			break
		}
		if len(e.args) < 2 {
			return nil, badFilter("%s needs two arguments or more", op)
		}
	case "eq", "ne", "contains", "startsWith":
		if p.terms++; p.terms > MaxFilterTerms {
			return nil, badFilter("more than %d comparisons", MaxFilterTerms)
		}
		e.field = p.word()
		if !filterFields[e.field] {
			return nil, badFilter("field %q is none of name, state, owner, id", apierr.Truncate(e.field, 32))
		}
		if err := p.expect(','); err != nil {
			return nil, err
		}
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		e.value = v
	default:
		return nil, badFilter("function %q is none of eq, ne, contains, startsWith, and, or", apierr.Truncate(op, 32))
	}
	if err := p.expect(')'); err != nil {
		return nil, err
	}
	return e, nil
}

func (p *filterParser) value() (string, error) {
	p.space()
	if p.i >= len(p.s) {
		return "", badFilter("value expected at %d", p.i)
	}
	q := p.s[p.i]
	if q != '\'' && q != '"' {
		if w := p.word(); w != "" {
			return w, nil
		}
		return "", badFilter("value expected at %d", p.i)
	}
	var b strings.Builder
	for p.i++; p.i < len(p.s); p.i++ {
		if p.s[p.i] == q {
			if p.i+1 < len(p.s) && p.s[p.i+1] == q { // a doubled quote
				b.WriteByte(q)
				p.i++
				continue
			}
			p.i++
			return b.String(), nil
		}
		b.WriteByte(p.s[p.i])
	}
	return "", badFilter("unterminated string")
}
