package agentapi

import "testing"

func TestHostName(t *testing.T) {
	for _, c := range []struct {
		worker string
		slots  int
		want   string
	}{
		{"render-1", 4, "render-1"},
		{"render-1/2", 4, "render-1"},
		{"render-1/4", 4, "render-1"},
		{"render-1/5", 4, "render-1/5"}, // not one of its slots
		{"render-1/2", 1, "render-1/2"}, // one slot: the name is the host's
		{"render-1/2", 0, "render-1/2"}, // an older agent says nothing
		{"render-1/1", 4, "render-1/1"}, // the first slot has no suffix
		{"render-1/02", 4, "render-1/02"},
		{"render-1/x", 4, "render-1/x"},
		{"/2", 4, "/2"},
		{"a/b/3", 3, "a/b"},
	} {
		if got := HostName(c.worker, c.slots); got != c.want {
			t.Errorf("HostName(%q, %d) = %q, want %q", c.worker, c.slots, got, c.want)
		}
	}
}
