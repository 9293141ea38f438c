package farm

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestCheckTemplate(t *testing.T) {
	for _, tmpl := range []string{
		"{interpreter} {file}",
		"python3 -u {file}",
		"{interpreter} -c {code}",
		"awk '{{print $1}}' {file}",
		"echo ${{HOME}}; {interpreter} {file}",
	} {
		if err := CheckTemplate(tmpl); err != nil {
			t.Errorf("%q: %v", tmpl, err)
		}
	}
	for _, tmpl := range []string{
		"",
		"   ",
		"{interp} {file}",
		"{file",
		"echo }",
		"awk '{print $1}' {file}",
		"{interpreter}\n{file}",
		"a\x00b",
		strings.Repeat("x", MaxTemplateBytes+1),
		strings.Repeat("{file}", maxPlaceholders+1),
	} {
		if err := CheckTemplate(tmpl); !errors.Is(err, ErrTemplate) {
			t.Errorf("%.40q: %v, want ErrTemplate", tmpl, err)
		}
	}
}

func TestExpandQuotesEachValueAsOneWord(t *testing.T) {
	got, err := Expand("{interpreter} -c {code} && echo '{{}}' {file}", map[string]string{
		"interpreter": "/opt/my python/bin/python3",
		"code":        `print("it's")`,
		"file":        "/tmp/x",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `'/opt/my python/bin/python3' -c 'print("it'\''s")' && echo '{}' '/tmp/x'`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// The shell sees the code as one argument, unchanged.
	out, err := exec.Command("sh", "-c", "printf %s "+ShellQuote(`a 'b' "c" $HOME \n`)).Output()
	if err != nil || string(out) != `a 'b' "c" $HOME \n` {
		t.Fatalf("quoted word came back as %q (%v)", out, err)
	}
	if _, err := Expand("{interpreter} {file}", map[string]string{"file": "x"}); !errors.Is(err, ErrTemplate) {
		t.Fatalf("a missing value: %v, want ErrTemplate", err)
	}
	if _, err := Expand("{nope}", nil); !errors.Is(err, ErrTemplate) {
		t.Fatalf("a bad template: %v, want ErrTemplate", err)
	}
}

func TestPlaceholders(t *testing.T) {
	got := Placeholders("{file} {interpreter} {file} {{code}}")
	if !slices.Equal(got, []string{"file", "interpreter"}) {
		t.Fatalf("placeholders %v", got)
	}
}

func TestCheckInterpreterName(t *testing.T) {
	for _, n := range []string{"sh", "python3.12", "g++", "python3-u", "R_script"} {
		if err := CheckInterpreterName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	for _, n := range []string{"", "a b", "a/b", "x\x00", strings.Repeat("a", MaxInterpreterName+1), "é"} {
		if err := CheckInterpreterName(n); !errors.Is(err, ErrInterpreterName) {
			t.Errorf("%q: %v, want ErrInterpreterName", n, err)
		}
	}
}
