package install

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/edgedrift/drift/internal/repo"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

// compromised stands between the network node and the repository, as a
// repository (or gateway) taken over would: when mode is set, everything a
// VM reads about one package (its instruction, its entry, its blob) says
// another package, consistently, and "resign" also signs that with the
// attacker's own key; "blob" swaps only the blob (and the sha256 announced
// with it), leaving the signed entry as it is.
type compromised struct {
	mode     atomic.Value // "", "swap" or "resign"
	evil     []byte
	evilSum  string
	attacker ed25519.PrivateKey
	proxy    *httputil.ReverseProxy
}

// newCompromised serves the attacker in front of repoURL; URL is where.
func newCompromised(t *testing.T, repoURL string, evil []byte, evilSum string) (*compromised, string) {
	u, _ := url.Parse(repoURL)
	_, attacker, _ := ed25519.GenerateKey(rand.Reader)
	m := &compromised{evil: evil, evilSum: evilSum, attacker: attacker, proxy: httputil.NewSingleHostReverseProxy(u)}
	m.mode.Store("")
	m.proxy.ModifyResponse = m.rewrite
	hs := httptest.NewServer(m.proxy)
	t.Cleanup(hs.Close)
	return m, hs.URL
}

func (m *compromised) rewrite(resp *http.Response) error {
	mode := m.mode.Load().(string)
	path := resp.Request.URL.Path
	payload := strings.HasPrefix(path, "/v1/packages/payload/") || path == "/v1/instructions"
	if mode == "" || resp.Request.Method != http.MethodGet || resp.StatusCode != http.StatusOK || !payload {
		return nil
	}
	if mode == "blob" && !strings.HasSuffix(path, "/blob") {
		return nil
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case strings.HasSuffix(path, "/blob"):
		body = m.evil
		resp.Header.Set(repo.HeaderSHA256, m.evilSum)
	case path == "/v1/instructions":
		var ins []repo.Instruction
		json.Unmarshal(body, &ins)
		for i := range ins {
			if ins[i].Package.Name == "payload" {
				ins[i].Package = m.tamper(ins[i].Package, mode)
			}
		}
		body, _ = json.Marshal(ins)
	default:
		var p repo.Package
		json.Unmarshal(body, &p)
		body, _ = json.Marshal(m.tamper(p, mode))
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

func (m *compromised) tamper(p repo.Package, mode string) repo.Package {
	p.SHA256, p.Size, p.Hook = m.evilSum, int64(len(m.evil)), "install.sh"
	if mode == "resign" {
		p.Signatures = []repo.Signature{repo.SignPackage(m.attacker, repo.ByRepository, p)}
	}
	return p
}

// A repository or gateway taken over cannot make a VM run its code: a
// package whose entry was swapped is refused by the agent before anything
// is fetched or run, whether the attacker keeps the repository's signature
// or signs with a key of its own; a blob swapped under a genuine signed
// entry is refused before it is unpacked; a VM that trusts only its
// publisher's key refuses what only the repository signed. Nothing is
// installed and the attacker's hook never runs.
func TestSignaturesRefusedByTheAgent(t *testing.T) {
	n := newNetwork(t)
	n.addVMs(t, 1)
	_, c := harness.Temporal(t, "")
	nd := startRepo(t, n, c, 1<<20)
	marker := filepath.Join(t.TempDir(), "pwned")
	evil, evilSum := tarGz(t, entry{"install.sh", "#!/bin/sh\ntouch " + marker + "\n"}, entry{"bin/payload", "evil"})
	attacker, attackerURL := newCompromised(t, nd.RepoURL, evil, evilSum)
	cfg := nd.installConfig(t)
	cfg.Repo = attackerURL // the node reaches the repository through the attacker
	cfg.CacheDir = ""      // and passes blobs on as they come: the agent alone checks them
	startWorkerWith(t, c, cfg)

	publisherKey := filepath.Join(t.TempDir(), "publisher.key")
	publisher, err := repo.GenerateKey(publisherKey)
	if err != nil {
		t.Fatal(err)
	}
	nd.push(t, repo.Ref{Name: "payload", Version: "1.0.0", Platform: "linux/amd64"}, repo.PushOptions{Tenants: []string{"acme"}}, entry{"bin/payload", "good"})
	nd.push(t, repo.Ref{Name: "tool", Version: "1.0.0", Platform: "linux/amd64"}, repo.PushOptions{Tenants: []string{"acme"}}, entry{"bin/tool", "only the repository signed"})
	nd.push(t, repo.Ref{Name: "tool", Version: "2.0.0", Platform: "linux/amd64"}, repo.PushOptions{Tenants: []string{"acme"}, Publisher: publisher}, entry{"bin/tool", "signed by its publisher"})
	placeGateway(t, c, n, nd)

	trustsRepo, trustsPublisher := n.VMs[0], n.VMs[1]
	_, repoPrefix := startAgent(t, nd, trustsRepo, nil, "--label", "trust=repository")
	driftBin, _ := harness.Binaries(t)
	pubPrefix := filepath.Join(t.TempDir(), trustsPublisher.Name)
	harness.Start(t, "ip", "netns", "exec", trustsPublisher.NS, driftBin, "agent", "--gateway", "http://169.254.169.254:8080", "--prefix", pubPrefix,
		"--trust", publisherKey+".pub", "--name", trustsPublisher.Name, "--label", "trust=publisher", "--every", "500ms")
	registered(t, c, trustsRepo, trustsPublisher)

	refused := func(t *testing.T, name, selector, pkg, version, want string) {
		t.Helper()
		p, err := rollout(t, c, workflows.Rollout{Rollout: name, Selector: selector, Package: pkg, Version: version, Attempts: 1})
		if !isType(err, workflows.ErrTypeErrorBudget) || len(p.VMs) != 1 || !strings.Contains(p.VMs[0].Error, want) || !strings.Contains(p.VMs[0].Error, "nothing installed") {
			t.Fatalf("%s: %v %+v", name, err, p.VMs)
		}
	}
	for _, tc := range []struct{ mode, want string }{{"swap", "does not verify"}, {"resign", "not trusted"}, {"blob", "the signed entry says"}} {
		t.Run("compromised repository: "+tc.mode, func(t *testing.T) {
			attacker.mode.Store(tc.mode)
			defer attacker.mode.Store("")
			refused(t, tc.mode, "trust=repository", "payload", "1.0.0", tc.want)
		})
	}
	t.Run("signed by the repository only, trusted publisher", func(t *testing.T) {
		refused(t, "publisher-only", "trust=publisher", "tool", "1.0.0", "repository key")
		p, err := rollout(t, c, workflows.Rollout{Rollout: "publisher-signed", Selector: "trust=publisher", Package: "tool", Version: "2.0.0"})
		if err != nil || p.Counts.Succeeded != 1 {
			t.Fatalf("the publisher's package: %v %+v", err, p.VMs)
		}
	})
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("the attacker's hook ran: %v", err)
	}
	expectNothingInstalled(t, repoPrefix)
	if got := filesUnder(t, pubPrefix); !strings.Contains(strings.Join(got, " "), "tool/2.0.0/bin/tool") || strings.Contains(strings.Join(got, " "), "1.0.0") {
		t.Fatalf("publisher VM has %v", got)
	}
}
