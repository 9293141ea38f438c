package agent

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/croftfarm/croft/api/client"
)

// fakeBin makes an executable file (mode 0755) or a plain one.
func fakeBin(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInterpretersFoundOnAFakePath(t *testing.T) {
	first, second, tools := t.TempDir(), t.TempDir(), t.TempDir()
	bash := fakeBin(t, first, "bash", 0o755)
	fakeBin(t, second, "bash", 0o755) // shadowed by the first directory's
	py := fakeBin(t, second, "python3", 0o755)
	fakeBin(t, first, "perl", 0o644) // not executable
	if err := os.Mkdir(filepath.Join(first, "ruby"), 0o755); err != nil {
		t.Fatal(err) // a directory, not a program
	}
	blender := fakeBin(t, tools, "blender", 0o755)
	myzsh := fakeBin(t, tools, "myzsh", 0o755)
	path := strings.Join([]string{"relative/dir", first, "", second, tools}, string(os.PathListSeparator))

	got, err := interpreters(path, DefaultInterpreters, []client.Interpreter{
		{Name: "blender", Path: blender},
		{Name: "zsh", Path: "myzsh"}, // a command name: looked up on PATH
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []client.Interpreter{
		{Name: "blender", Path: blender},
		{Name: "zsh", Path: myzsh},
		{Name: "bash", Path: bash},
		{Name: "python3", Path: py},
	}
	if !slices.Equal(got, want) {
		t.Errorf("interpreters = %+v\nwant %+v", got, want)
	}

	// A relative PATH entry is never searched: its meaning depends on the
	// job's directory.
	rel := t.TempDir()
	fakeBin(t, rel, "node", 0o755)
	t.Chdir(rel)
	if got, err := interpreters(".", []string{"node"}, nil); err != nil || len(got) != 0 {
		t.Errorf("relative PATH: %+v, %v; want none", got, err)
	}
}

func TestInterpretersAreBounded(t *testing.T) {
	dir := t.TempDir()
	prog := fakeBin(t, dir, "prog", 0o755)
	plain := fakeBin(t, dir, "plain", 0o644)
	many := make([]client.Interpreter, client.MaxInterpreters+1)
	for i := range many {
		many[i] = client.Interpreter{Name: "i" + strings.Repeat("x", i%10) + string(rune('a'+i%26)), Path: prog}
	}
	for name, configured := range map[string][]client.Interpreter{
		"too many":          many,
		"empty name":        {{Name: "", Path: prog}},
		"long name":         {{Name: strings.Repeat("n", client.MaxInterpreterName+1), Path: prog}},
		"name with a space": {{Name: "my shell", Path: prog}},
		"twice":             {{Name: "a", Path: prog}, {Name: "a", Path: prog}},
		"relative path":     {{Name: "a", Path: "bin/prog"}},
		"not on PATH":       {{Name: "a", Path: "nosuch"}},
		"not executable":    {{Name: "a", Path: plain}},
		"missing":           {{Name: "a", Path: filepath.Join(dir, "gone")}},
		"long path":         {{Name: "a", Path: "/" + strings.Repeat("p", client.MaxInterpreterPath)}},
	} {
		if _, err := interpreters(dir, nil, configured); !errors.Is(err, ErrBadInterpreter) {
			t.Errorf("%s: %v, want ErrBadInterpreter", name, err)
		}
	}
	// Configured ones fill the list: found ones are left out, not sent
	// past the bound.
	full := make([]client.Interpreter, client.MaxInterpreters)
	for i := range full {
		full[i] = client.Interpreter{Name: "c" + string(rune('a'+i/26)) + string(rune('a'+i%26)), Path: prog}
	}
	got, err := interpreters(dir, []string{"prog"}, full)
	if err != nil || len(got) != client.MaxInterpreters || slices.ContainsFunc(got, func(in client.Interpreter) bool { return in.Name == "prog" }) {
		t.Errorf("full list: %d interpreters, %v; want the %d configured", len(got), err, client.MaxInterpreters)
	}
}

func TestParseInterpreter(t *testing.T) {
	if in, err := ParseInterpreter(" blender = /opt/blender/blender "); err != nil || in != (client.Interpreter{Name: "blender", Path: "/opt/blender/blender"}) {
		t.Errorf("ParseInterpreter = %+v, %v", in, err)
	}
	if _, err := ParseInterpreter("blender"); !errors.Is(err, ErrBadInterpreter) {
		t.Errorf("without '=': %v, want ErrBadInterpreter", err)
	}
}
