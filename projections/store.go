package projections

import (
	"fmt"
	"regexp"
	"time"
)

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

// ValidateName checks a store version's name ("history_v1"): every store
// adapter uses it as a table or collection prefix, so it is a lower-case
// identifier of at most 48 bytes.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("store name %q: want a lower-case identifier ([a-z][a-z0-9_]*, at most 48 bytes)", name)
	}
	return nil
}

// Nanos stores a time as Unix nanoseconds (0 for the zero time): the store
// adapters keep times this way, so SQLite and MongoDB agree to the
// nanosecond (BSON dates hold milliseconds only).
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// FromNanos is the inverse of Nanos, in UTC.
func FromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
