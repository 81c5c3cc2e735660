package modelslot

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to one HTTP status in the api package and to one
// exit status in the CLI; callers classify errors with ErrorCode, never by
// their text.
const (
	ECONFLICT     = "conflict"     // the state does not allow it now (preview pending, rollout running)
	EINTERNAL     = "internal"     // a bug or an unexpected failure; details are logged, not shown
	EINVALID      = "invalid"      // bad input: the message names the field and the allowed values
	ENOTFOUND     = "not_found"    // unknown app, slot, rollout, revision
	EUNAVAILABLE  = "unavailable"  // a backend or the platform did not answer in time
	EUNAUTHORIZED = "unauthorized" // missing or wrong admin token
	EFORBIDDEN    = "forbidden"    // authenticated but not allowed (e.g. the platform refused)
)

// Error is a domain error with a code and a message meant for the user: it
// says what went wrong and what to do about it.
type Error struct {
	Code    string
	Message string
	// Err is the underlying cause, kept for logs and errors.Is; it is never
	// shown to API clients.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil && e.Message == "" {
		return e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrapf is Errorf with an underlying cause.
func Wrapf(err error, code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, or EINTERNAL.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return ""
	}
	return EINTERNAL
}

// ErrorMessage returns the user-facing message of err: the message of the
// first *Error in the chain, with the operation context wrapped around it;
// internal errors get a generic message so that no internal detail leaks.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return err.Error()
	}
	if err == nil {
		return ""
	}
	return "internal error: see the daemon's log"
}

// ErrStaleApp is the ECONFLICT a Store returns when an app was changed by
// another writer since it was read at version from (0: it already exists).
func ErrStaleApp(app string, from int64) error {
	if from == 0 {
		return Errorf(ECONFLICT, "app %q already exists in the store (created meanwhile by another replica?): try again", app)
	}
	return Errorf(ECONFLICT, "app %q was changed meanwhile (by another replica?) since version %d was read: try again", app, from)
}
