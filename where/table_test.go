package where

import "testing"

type tableTestRow struct {
	name string
	size int
}

var tableTestColumns = Table[*tableTestRow]{
	"name": func(r *tableTestRow) any { return r.name },
	"size": func(r *tableTestRow) any { return int64(r.size) },
}

func TestTableRowsAndUnknownColumns(t *testing.T) {
	w, err := Compile("Name LIKE 'a%' AND size > 2")
	if err != nil {
		t.Fatal(err)
	}
	if col, unknown := tableTestColumns.Unknown(w); unknown {
		t.Fatalf("column %q reported unknown", col)
	}
	for _, c := range []struct {
		row  tableTestRow
		want bool
	}{{tableTestRow{"abc", 3}, true}, {tableTestRow{"abc", 2}, false}, {tableTestRow{"xbc", 9}, false}} {
		if got, err := w.Match(tableTestColumns.Row(&c.row)); err != nil || got != c.want {
			t.Errorf("%+v: %v %v, want %v", c.row, got, err, c.want)
		}
	}
	w, err = Compile("size > 1 OR colour = 'red' OR weight = 2")
	if err != nil {
		t.Fatal(err)
	}
	if col, unknown := tableTestColumns.Unknown(w); !unknown || col != "colour" {
		t.Fatalf("Unknown = %q, %v; want colour", col, unknown)
	}
	if _, err := w.Match(tableTestColumns.Row(&tableTestRow{})); err == nil {
		t.Fatal("a row without the column matched")
	}
}
