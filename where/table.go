package where

// Table is the schema of one kind of row: each column's name (lower case,
// as clauses reach Row) and how to read it from a row of type T. The
// dialect that serves clauses defines one for the records it filters, so
// this package never learns what a job is.
type Table[T any] map[string]func(T) any

// Row returns the Row that reads t's columns.
func (tb Table[T]) Row(t T) Row {
	return func(col string) (any, bool) {
		get, ok := tb[col]
		if !ok {
			return nil, false
		}
		return get(t), true
	}
}

// Unknown returns the first column w uses, in order of first use, that
// the table lacks; unknown is false when it has them all. Checking once,
// before any row, turns a typo into a clear error instead of a failure
// halfway through a scan.
func (tb Table[T]) Unknown(w *Clause) (col string, unknown bool) {
	for _, c := range w.Columns() {
		if _, ok := tb[c]; !ok {
			return c, true
		}
	}
	return "", false
}
