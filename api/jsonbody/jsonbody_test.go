package jsonbody

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDepth(t *testing.T) {
	for body, want := range map[string]int{
		`1`: 0, `{}`: 1, `{"a":[1,{"b":2}]}`: 3, `{"a":"[[[{{"}`: 1, `{"a":"\"[["}`: 1,
		strings.Repeat("[", 100) + strings.Repeat("]", 100): 100,
	} {
		if got := Depth([]byte(body)); got != want {
			t.Errorf("Depth(%.40s) = %d, want %d", body, got, want)
		}
	}
}

func TestHasNUL(t *testing.T) {
	for body, want := range map[string]bool{
		`{"a":["x",{"b":"y"}]}`: false, `{"a":"x\u0000"}`: true, `{"a\u0000":1}`: true, `[["\u0000"]]`: true, `1`: false,
	} {
		var v any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatal(err)
		}
		if got := HasNUL(v); got != want {
			t.Errorf("HasNUL(%s) = %v", body, got)
		}
	}
}
