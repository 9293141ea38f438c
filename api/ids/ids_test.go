package ids

import "testing"

func TestDashedRoundTrip(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	d := Dashed(id)
	if d != "01234567-89ab-cdef-0123-456789abcdef" {
		t.Fatalf("Dashed: %s", d)
	}
	for _, s := range []string{d, "01234567-89AB-CDEF-0123-456789ABCDEF"} {
		if got, ok := Undashed(s); !ok || got != id {
			t.Errorf("Undashed(%s) = %q %v", s, got, ok)
		}
	}
	for _, s := range []string{"", id, "01234567-89ab-cdef-0123_456789abcdef", "0123456g-89ab-cdef-0123-456789abcdef", d + "0"} {
		if got, ok := Undashed(s); ok {
			t.Errorf("Undashed(%q) took %q", s, got)
		}
	}
	if Dashed("short") != "short" {
		t.Error("Dashed changed a string that is no id")
	}
	if _, ok := Hex("0123456789ABCDEF0123456789abcdeg"); ok {
		t.Error("Hex took a g")
	}
}
