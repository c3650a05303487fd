package repo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// Client is the admin's client of a repository (drift repo, the install
// activities).
type Client struct {
	URL   string // e.g. http://10.0.0.2:8700
	Token string
	HTTP  *http.Client // nil: http.DefaultClient
}

// StatusError is a refusal by the repository.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("repository: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// PushOptions say who may see a pushed package, how it installs and who
// signs it.
type PushOptions struct {
	Public  bool
	Tenants []string
	Hook    string
	Health  string
	// Publisher signs the upload with the publisher's own key (nil: only
	// the repository signs); the signature covers Size, the body's length.
	Publisher ed25519.PrivateKey
	Size      int64
}

// PushFile uploads a file as ref, declaring its sha256.
func (c *Client) PushFile(ctx context.Context, ref Ref, file string, o PushOptions) (Package, error) {
	f, err := os.Open(file)
	if err != nil {
		return Package{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Package{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Package{}, err
	}
	o.Size = n
	return c.Push(ctx, ref, hex.EncodeToString(h.Sum(nil)), f, o)
}

// Push uploads body as ref with the declared sha256.
func (c *Client) Push(ctx context.Context, ref Ref, sum string, body io.Reader, o PushOptions) (Package, error) {
	q := url.Values{"sha256": {sum}}
	if o.Public {
		q.Set("public", "true")
	}
	if len(o.Tenants) > 0 {
		q.Set("tenants", strings.Join(o.Tenants, ","))
	}
	if o.Hook != "" {
		q.Set("hook", o.Hook)
	}
	if o.Health != "" {
		q.Set("health", o.Health)
	}
	if o.Publisher != nil {
		sig := SignPackage(o.Publisher, ByPublisher, Package{Ref: ref, SHA256: sum, Size: o.Size, Hook: o.Hook, Health: o.Health})
		q.Set("pubkey", base64.StdEncoding.EncodeToString(o.Publisher.Public().(ed25519.PublicKey)))
		q.Set("signature", sig.Sig)
	}
	var p Package
	err := c.do(ctx, http.MethodPut, ref.path()+"?"+q.Encode(), body, &p)
	return p, err
}

// List returns every package.
func (c *Client) List(ctx context.Context) ([]Package, error) {
	var ps []Package
	err := c.do(ctx, http.MethodGet, "/v1/packages", nil, &ps)
	return ps, err
}

// Delete removes a package.
func (c *Client) Delete(ctx context.Context, ref Ref) error {
	return c.do(ctx, http.MethodDelete, ref.path(), nil, nil)
}

// PostInstruction records an instruction and returns it with the package
// pinned.
func (c *Client) PostInstruction(ctx context.Context, in Instruction) (Instruction, error) {
	data, err := json.Marshal(in)
	if err != nil {
		return Instruction{}, err
	}
	var out Instruction
	err = c.do(ctx, http.MethodPut, "/v1/instructions", bytes.NewReader(data), &out)
	return out, err
}

// WithdrawInstruction removes an instruction no VM has reported on.
func (c *Client) WithdrawInstruction(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/instructions?"+url.Values{"id": {id}}.Encode(), nil, nil)
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.URL, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &StatusError{Status: resp.StatusCode, Message: strings.TrimSpace(string(msg))}
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
