package farm

import (
	"errors"
	"testing"
)

func TestExpandCommand(t *testing.T) {
	for _, c := range []struct {
		tmpl, main string
		args       []string
		want       string
	}{
		{"sh -c {main} sh {args}", `echo "$@"`, []string{"a b", "it's"}, `sh -c 'echo "$@"' sh 'a b' 'it'\''s'`},
		{"sh -c {main} sh {args}", "true", nil, `sh -c 'true' sh `},
		{"java -jar {main} {args} {{x}}", "/a.jar", []string{""}, `java -jar '/a.jar' '' {x}`},
		{"{args}; {args}", "", []string{"1", "2"}, `'1' '2'; '1' '2'`},
	} {
		got, err := ExpandCommand(c.tmpl, c.main, c.args)
		if err != nil || got != c.want {
			t.Errorf("ExpandCommand(%q, %q, %q) = %q, %v; want %q", c.tmpl, c.main, c.args, got, err, c.want)
		}
		if n, err := ExpandedCommandBytes(c.tmpl, c.main, c.args); err != nil || n != len(got) {
			t.Errorf("ExpandedCommandBytes(%q) = %d, %v; the expansion is %d bytes", c.tmpl, n, err, len(got))
		}
	}
	for _, bad := range []string{"", "run {file}", "run {main", "run }", "a\nb", string(make([]byte, MaxCommandTemplateBytes+1))} {
		if _, err := ExpandCommand(bad, "m", nil); !errors.Is(err, ErrCommandTemplate) {
			t.Errorf("ExpandCommand(%.20q): %v", bad, err)
		}
		if err := CheckCommandTemplate(bad); !errors.Is(err, ErrCommandTemplate) {
			t.Errorf("CheckCommandTemplate(%.20q): %v", bad, err)
		}
	}
	// The interpreter grammar is not the command grammar.
	if err := CheckTemplate("{main}"); !errors.Is(err, ErrTemplate) {
		t.Errorf("an interpreter template with {main}: %v", err)
	}
}
