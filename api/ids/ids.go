// Package ids renders the core's ids (32 lowercase hex digits) in the
// dashed UUID form the Jupyter, Sahara and SAS dialects show, and reads
// them back.
package ids

import "strings"

// Dashed renders a 32-hex-digit id as a UUID, 8-4-4-4-12; any other
// string is returned as it is.
func Dashed(id string) string {
	if len(id) != 32 {
		return id
	}
	return id[:8] + "-" + id[8:12] + "-" + id[12:16] + "-" + id[16:20] + "-" + id[20:]
}

// Undashed reads a UUID (8-4-4-4-12 hex digits, either case) back into the
// core's form; ok is false for any other string.
func Undashed(s string) (id string, ok bool) {
	if len(s) != 36 {
		return "", false
	}
	for _, i := range []int{8, 13, 18, 23} {
		if s[i] != '-' {
			return "", false
		}
	}
	return Hex(s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:])
}

// Hex reads a 32-hex-digit id (either case) into the core's lowercase
// form; ok is false for any other string.
func Hex(s string) (id string, ok bool) {
	if len(s) != 32 {
		return "", false
	}
	s = strings.ToLower(s)
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	return s, true
}
