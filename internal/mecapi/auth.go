package mecapi

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Scopes a token may hold: read for GET, write for everything else.
const (
	ScopeRead  = "read"
	ScopeWrite = "write"
)

// Caller is who sent a request: the client id its token names, and its
// scopes. A subscription belongs to the client that made it.
type Caller struct {
	Client string
	Scopes []string
}

// Can reports whether the caller holds scope.
func (c Caller) Can(scope string) bool { return slices.Contains(c.Scopes, scope) }

// Tokens are the API's bearer tokens, read from a file that holds only
// their SHA-256 hashes, one per line:
//
//	# client   scopes       token hash
//	svc-a      read,write   sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//
// A changed file is read again (checked at most every reloadEvery), so a
// token added with `drift api token add` works on every running replica.
type Tokens struct {
	file string

	mu      sync.Mutex
	byHash  map[[sha256.Size]byte]Caller
	modTime time.Time
	checked time.Time
}

const reloadEvery = 2 * time.Second

var clientIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// LoadTokens reads the tokens file; a file that does not parse is an
// error naming the line.
func LoadTokens(file string) (*Tokens, error) {
	t := &Tokens{file: file}
	if err := t.reload(time.Now(), true); err != nil {
		return nil, err
	}
	return t, nil
}

// StaticTokens are tokens held in memory (tests): token → caller.
func StaticTokens(tokens map[string]Caller) *Tokens {
	t := &Tokens{byHash: map[[sha256.Size]byte]Caller{}}
	for tok, c := range tokens {
		t.byHash[sha256.Sum256([]byte(tok))] = c
	}
	return t
}

// Lookup returns the caller a token belongs to.
func (t *Tokens) Lookup(token string) (Caller, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.file != "" {
		_ = t.reload(time.Now(), false) // a broken edit keeps the tokens read before
	}
	sum := sha256.Sum256([]byte(token))
	var found Caller
	ok := false
	for h, c := range t.byHash { // compare every hash, in constant time each
		if subtle.ConstantTimeCompare(h[:], sum[:]) == 1 {
			found, ok = c, true
		}
	}
	return found, ok
}

func (t *Tokens) reload(now time.Time, force bool) error {
	if !force && now.Sub(t.checked) < reloadEvery {
		return nil
	}
	t.checked = now
	info, err := os.Stat(t.file)
	if err != nil {
		return fmt.Errorf("tokens file: %w", err)
	}
	if !force && info.ModTime().Equal(t.modTime) {
		return nil
	}
	byHash, err := readTokens(t.file)
	if err != nil {
		return err
	}
	t.byHash, t.modTime = byHash, info.ModTime()
	return nil
}

func readTokens(file string) (map[[sha256.Size]byte]Caller, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	defer f.Close()
	out := map[[sha256.Size]byte]Caller{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c, sum, err := parseTokenLine(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
		out[sum] = c
	}
	return out, sc.Err()
}

func parseTokenLine(line string) (Caller, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f := strings.Fields(line)
	if len(f) != 3 {
		return Caller{}, sum, errors.New("want: <client id> <scopes> sha256:<hex>")
	}
	if !clientIDRE.MatchString(f[0]) {
		return Caller{}, sum, fmt.Errorf("client id %q: letters, digits, . _ -", f[0])
	}
	scopes, err := parseScopes(f[1])
	if err != nil {
		return Caller{}, sum, err
	}
	h, err := hex.DecodeString(strings.TrimPrefix(f[2], "sha256:"))
	if !strings.HasPrefix(f[2], "sha256:") || err != nil || len(h) != sha256.Size {
		return Caller{}, sum, errors.New("the token hash must read sha256:<64 hex digits>")
	}
	copy(sum[:], h)
	return Caller{Client: f[0], Scopes: scopes}, sum, nil
}

func parseScopes(s string) ([]string, error) {
	var out []string
	for _, sc := range strings.Split(s, ",") {
		if sc != ScopeRead && sc != ScopeWrite {
			return nil, fmt.Errorf("scope %q: want read, write or read,write", sc)
		}
		out = append(out, sc)
	}
	return out, nil
}

// AddToken makes a new token for client with scopes, appends its hash to
// the tokens file (created 0600 when missing) and returns the token: the
// only time it is seen.
func AddToken(file, client string, scopes []string) (string, error) {
	if !clientIDRE.MatchString(client) {
		return "", fmt.Errorf("client id %q: letters, digits, . _ - (at most 64)", client)
	}
	if _, err := parseScopes(strings.Join(scopes, ",")); err != nil || len(scopes) == 0 {
		return "", fmt.Errorf("scopes %v: want read, write or both", scopes)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	token := "drift_" + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	_, statErr := os.Stat(file)
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if errors.Is(statErr, fs.ErrNotExist) {
		fmt.Fprintln(f, "# drift API tokens (drift api token add): <client id> <scopes> sha256:<hash of the token>")
	}
	if _, err := fmt.Fprintf(f, "%s %s sha256:%s\n", client, strings.Join(scopes, ","), hex.EncodeToString(sum[:])); err != nil {
		return "", err
	}
	return token, f.Close()
}

type callerKey struct{}

func withCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerOf(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}
