// Package jsonbody holds the checks the JSON dialects (Freezer, Sahara)
// make of a request body besides its size (apierr.ReadBody): how deep it
// nests, and NUL bytes, which would reach a command or a name and be
// refused later, after part of the request was done.
package jsonbody

import "strings"

// Depth is how deep JSON text nests, the outermost object or array
// counting 1 (brackets in strings skipped). It reads the text once,
// without decoding it.
func Depth(b []byte) int {
	d, most, in, esc := 0, 0, false, false
	for _, ch := range b {
		switch {
		case in && esc:
			esc = false
		case in && ch == '\\':
			esc = true
		case ch == '"':
			in = !in
		case in:
		case ch == '{' || ch == '[':
			d++
			most = max(most, d)
		case ch == '}' || ch == ']':
			d--
		}
	}
	return most
}

// HasNUL reports whether a decoded JSON value holds a NUL byte in a key
// or a string. It recurses as deep as v nests: check Depth first.
func HasNUL(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.IndexByte(x, 0) >= 0
	case map[string]any:
		for k, e := range x {
			if strings.IndexByte(k, 0) >= 0 || HasNUL(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if HasNUL(e) {
				return true
			}
		}
	}
	return false
}
