package names

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxUserLen bounds a user name, in bytes of UTF-8.
const MaxUserLen = 128

// userPunct is the ASCII punctuation a user name may hold besides
// letters, digits and marks of any script. None of it has a meaning in a
// URL path segment or a workflow ID, so a user appears in both as given.
const userPunct = "-._~@+:"

// CheckUser says what is wrong with a user name, or nil. It is the one
// rule for users, checked by every entry point (API, CLI, the session's
// own validator): letters, digits and marks of any script plus - . _ ~ @ +
// :, in Unicode NFC, at most MaxUserLen bytes, and not "." or "..", which
// would make a path that points elsewhere.
func CheckUser(user string) error {
	switch {
	case user == "":
		return fmt.Errorf("a user is required")
	case !utf8.ValidString(user):
		return fmt.Errorf("user %q is not valid UTF-8", user)
	case len(user) > MaxUserLen:
		return fmt.Errorf("user %q is longer than %d bytes", user, MaxUserLen)
	case user == "." || user == "..":
		return fmt.Errorf("user %q is a path step, not a name", user)
	case !norm.NFC.IsNormalString(user):
		return fmt.Errorf("user %q is not in Unicode normal form C (NFC): send it composed, as %q", user, norm.NFC.String(user))
	}
	for _, r := range user {
		if unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || (r < utf8.RuneSelf && strings.ContainsRune(userPunct, r)) {
			continue
		}
		return fmt.Errorf("user %q holds %q: a user is letters, digits and marks of any script and %s", user, r, strings.Join(strings.Split(userPunct, ""), " "))
	}
	return nil
}

// EscapeUser writes every byte of user beyond ASCII as %XX. The ASCII a
// user may hold (CheckUser) is left alone, so ASCII names keep the IDs
// they always had, and '%' never occurs in a valid user, so the escape
// is unambiguous.
func EscapeUser(user string) string {
	var b strings.Builder
	for i := 0; i < len(user); i++ {
		if c := user[i]; c >= utf8.RuneSelf {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
