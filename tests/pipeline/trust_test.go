package pipeline

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"go.temporal.io/sdk/temporal"

	"github.com/edgedrift/drift/activities"
	"github.com/edgedrift/drift/internal/appspec"
	drift "github.com/edgedrift/drift/internal/client"
	"github.com/edgedrift/drift/internal/demo"
	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/names"
	"github.com/edgedrift/drift/internal/pipelinespec"
	"github.com/edgedrift/drift/internal/registry"
	"github.com/edgedrift/drift/internal/release"
	"github.com/edgedrift/drift/internal/runtime"
	"github.com/edgedrift/drift/internal/topology"
	"github.com/edgedrift/drift/internal/workerhost"
	"github.com/edgedrift/drift/tests/harness"
	"github.com/edgedrift/drift/workflows"
)

const registryUser, registryPassword = "ci", "s3cret-Trust15-pw"

// A pipeline run on a registry with TLS (a self-signed CA) and a password
// pushes a signed index with SBOM and provenance attestations; a verifier
// written here (plain HTTP to the registry API, DSSE by
// go-securesystemslib, not drift's code) checks them against the run; the
// sites, with a trust policy, deploy it, and refuse a tampered image with
// UntrustedImage before anything runs. A test failing only on loong64
// stops a run before push; a wrong password fails clearly; the password
// is in no history, query or log.
func TestSignedReleaseIsVerifiedAtDeployAndTamperingIsRefused(t *testing.T) {
	harness.Docker(t)
	_, c := harness.Temporal(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	reg, ca, err := registry.StartSecure(ctx, t.TempDir(), map[string]string{registryUser: registryPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if err := image.TrustCA(reg.Host(), ca); err != nil {
		t.Fatal(err)
	}
	image.SetCredentials(reg.Host(), registryUser, registryPassword)

	files, err := demo.HelloFiles()
	if err != nil {
		t.Fatal(err)
	}
	repoDir := t.TempDir()
	bare, err := demo.GitRepo(ctx, repoDir, "hello", files)
	if err != nil {
		t.Fatal(err)
	}
	spec := exampleSpec(t, "file://"+bare)
	spec.App = "hello-trust"
	spec.Image.Name = "hello-trust"
	for i := range spec.Deploy.Targets {
		spec.Deploy.Targets[i].Verify = pipelinespec.VerifyHTTP // both targets serve here
	}

	keyDir := t.TempDir()
	signer, err := release.EnsureKeyPair(release.KeyFiles(keyDir))
	if err != nil {
		t.Fatal(err)
	}
	_, pubFile := release.KeyFiles(keyDir)
	policyFile := filepath.Join(keyDir, "policy.yaml")
	os.WriteFile(policyFile, fmt.Appendf(nil, "keys: [%s]\nrepos: [file://%s]\nrefs: [main]\nrequireTests: true\n", pubFile, bare), 0o644)
	policy, err := release.LoadPolicy(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	topo := harness.ExampleTopology(t)
	ws := harness.Workers(t, c, topo, reg.Host(), func(cl topology.Cloud) runtime.Config {
		if cl.ID == dockerCloud {
			return runtime.Config{Kind: runtime.KindDocker}
		}
		return runtime.Config{Kind: runtime.KindProcess}
	}, func(o *workerhost.WorkerOptions) { o.Signer, o.Trust, o.DataDir = signer, policy, dataDir })
	t.Cleanup(func() { destroyPipelineInstances(t, ws, spec.App) })

	// The release: deployed on both sites, which verified it first.
	pr := run(t, ctx, c, topo, spec, "r1")
	if pr.Release == nil || len(pr.Release.SBOMs) != 2 {
		t.Fatalf("run's release %+v", pr.Release)
	}
	if s, _ := pr.StepByName(workflows.StepSign); s.Status != workflows.StepDone {
		t.Fatalf("sign step %+v", s)
	}
	if s, _ := pr.StepByName(workflows.StepTest); len(s.Log.Tests) != 2 || s.Log.Tests[1].Emulator != "qemu-loongarch64-static" || !s.Log.Tests[1].Passed {
		t.Fatalf("test results %+v: want loong64 tested under qemu", s.Log.Tests)
	}
	if path := os.Getenv("DRIFT_RECORD_HISTORY"); path != "" {
		harness.RecordHistory(t, ctx, c, pr.ID, path)
	}

	t.Run("independent verifier", func(t *testing.T) {
		verifyIndependently(t, reg.Host(), ca, signer.Public().(*ecdsa.PublicKey), pr, "file://"+bare)
	})

	t.Run("tampered image refused at deploy", func(t *testing.T) {
		site := &activities.Cloud{ID: dockerCloud, Runtime: ws.Runtimes[dockerCloud], Trust: policy}
		tampered := tamper(t, ctx, pr.Image, reg.Host()+"/hello-trust:r1")
		for _, ref := range []string{tampered, reg.Host() + "/hello-trust:r1"} {
			_, err := site.DeployInstance(ctx, activities.DeployRequest{Name: "tampered", Spec: runtime.Spec{Image: ref, Port: 8080}})
			var ae *temporal.ApplicationError
			if !errors.As(err, &ae) || ae.Type() != activities.ErrTypeUntrustedImage || !ae.NonRetryable() {
				t.Fatalf("deploy of %s: want a non-retryable UntrustedImage, got %v", ref, err)
			}
			t.Logf("refused: %v", err)
			if st, err := ws.Runtimes[dockerCloud].Status(ctx, "tampered"); err != nil || st.Exists {
				t.Fatalf("the tampered image was deployed: %+v (%v)", st, err)
			}
		}
		// drift image verify agrees, by hand.
		if _, err := release.Verify(ctx, tampered, policy); !errors.Is(err, release.ErrUntrusted) {
			t.Errorf("verify tampered: %v", err)
		}
		if v, err := release.Verify(ctx, pr.Image, policy); err != nil || v.Commit != pr.Commit {
			t.Errorf("verify the release: %+v %v", v, err)
		}
	})

	t.Run("a session runs only the signed release", func(t *testing.T) {
		dc := drift.New(c)
		open := func(user, ref string) error {
			app, err := appspec.FromImage(spec.App, ref, 8080)
			if err != nil {
				t.Fatal(err)
			}
			_, err = dc.OpenSession(ctx, drift.Open{User: user, App: app, Region: "quartier-latin", Topology: topo,
				Neighbours: topology.Policy{Kind: topology.Adjacency}, PreDeploy: workflows.PreDeployNone})
			return err
		}
		err := open("mallory", tamper(t, ctx, pr.Image, reg.Host()+"/hello-trust:session"))
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || ae.Type() != activities.ErrTypeUntrustedImage {
			t.Fatalf("a session of a tampered image: want UntrustedImage, got %v", err)
		}
		if err := open("alice", pr.Image); err != nil {
			t.Fatalf("a session of the signed release: %v", err)
		}
		if _, err := dc.Exit(ctx, "alice", spec.App); err != nil {
			t.Fatal(err)
		}
		for cloud, rt := range ws.Runtimes {
			for _, user := range []string{"mallory", "alice"} {
				sel := map[string]string{runtime.LabelWorkflow: runtime.LabelValue(names.SessionID(user, spec.App))}
				if found, err := rt.List(ctx, sel); err != nil || len(found) > 0 {
					t.Errorf("%s keeps %v of %s's session (%v)", cloud, found, user, err)
				}
			}
		}
	})

	t.Run("a loong64-only test failure stops the run before push", func(t *testing.T) {
		work := filepath.Join(repoDir, "work")
		os.WriteFile(filepath.Join(work, "arch_test.go"), []byte("package main\n\nimport (\n\t\"runtime\"\n\t\"testing\"\n)\n\nfunc TestNotOnLoong64(t *testing.T) {\n\tif runtime.GOARCH == \"loong64\" {\n\t\tt.Fatal(\"fails on loong64 only\")\n\t}\n}\n"), 0o644)
		if err := demo.CommitAndPush(ctx, work, "a test that fails on loong64"); err != nil {
			t.Fatal(err)
		}
		wr, err := drift.New(c).StartPipeline(ctx, workflows.PipelineInput{Run: "r-loong", Spec: spec, Topology: topo})
		if err != nil {
			t.Fatal(err)
		}
		failed, err := drift.Follow[workflows.PipelineProgress](ctx, drift.New(c), wr, 0, nil)
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || ae.Type() != activities.ErrTypeTestFailed || !strings.Contains(err.Error(), "test for linux/loong64") || !strings.Contains(err.Error(), "fails on loong64 only") {
			t.Fatalf("want TestFailed for linux/loong64, got %v", err)
		}
		if s, _ := failed.StepByName(workflows.StepPush); s.Status != workflows.StepPending {
			t.Errorf("push step %s after a failed loong64 test", s.Status)
		}
		if _, err := image.Resolve(ctx, reg.Host()+"/hello-trust:r-loong"); !errors.Is(err, image.ErrNotFound) {
			t.Errorf("the run pushed its image: %v", err)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		image.SetCredentials(reg.Host(), registryUser, "not-the-password")
		defer image.SetCredentials(reg.Host(), registryUser, registryPassword)
		wr, err := drift.New(c).StartPipeline(ctx, workflows.PipelineInput{Run: "r-badpw", Spec: spec, Topology: topo})
		if err != nil {
			t.Fatal(err)
		}
		_, err = drift.Follow[workflows.PipelineProgress](ctx, drift.New(c), wr, 0, nil)
		var ae *temporal.ApplicationError
		if !errors.As(err, &ae) || ae.Type() != activities.ErrTypeRegistryUnauthorized || !strings.Contains(err.Error(), `user "ci"`) {
			t.Fatalf("want RegistryUnauthorized naming user ci, got %v", err)
		}
		if strings.Contains(err.Error(), "not-the-password") {
			t.Fatalf("the error shows the password: %v", err)
		}
	})

	t.Run("the password is in no history, query or log", func(t *testing.T) {
		for _, id := range []string{pr.ID, names.PipelineID(spec.App, "r-loong"), names.PipelineID(spec.App, "r-badpw")} {
			file := filepath.Join(t.TempDir(), "history.json")
			harness.RecordHistory(t, ctx, c, id, file)
			b, _ := os.ReadFile(file)
			if len(b) == 0 || strings.Contains(string(b), registryPassword) || strings.Contains(string(b), "not-the-password") {
				t.Errorf("history of %s (%d bytes) carries the password", id, len(b))
			}
			v, err := c.QueryWorkflow(ctx, id, "", names.ProgressQuery)
			if err != nil {
				t.Fatal(err)
			}
			var q any
			v.Get(&q)
			if b, _ := json.Marshal(q); strings.Contains(string(b), registryPassword) {
				t.Errorf("progress of %s carries the password", id)
			}
		}
		filepath.WalkDir(dataDir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".log") {
				if b, _ := os.ReadFile(p); strings.Contains(string(b), registryPassword) {
					t.Errorf("log %s carries the password", p)
				}
			}
			return nil
		})
	})
}

// tamper changes one layer of the amd64 image of the signed index, pushes
// the new index re-tagged as to and returns it pinned.
func tamper(t *testing.T, ctx context.Context, signed, to string) string {
	t.Helper()
	r, err := image.ParseReference(signed)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r, image.Options(ctx)...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var imgs []v1.Image
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if d.Platform.Architecture == "amd64" {
			if img, err = mutate.AppendLayers(img, static.NewLayer([]byte("not what was signed"), types.OCILayer)); err != nil {
				t.Fatal(err)
			}
		}
		imgs = append(imgs, img)
	}
	changed, err := image.Index(imgs...)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := image.Push(ctx, to, changed)
	if err != nil {
		t.Fatal(err)
	}
	if pinned == signed {
		t.Fatal("tampering left the digest as it was")
	}
	return pinned
}

// registryAPI reads the registry over its HTTP API with its own TLS
// settings and basic auth: nothing of drift's registry code.
type registryAPI struct {
	host string
	http *http.Client
}

func (a registryAPI) get(t *testing.T, repo, kind, ref string) ([]byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("https://%s/v2/%s/%s/%s", a.host, repo, kind, ref), nil)
	req.SetBasicAuth(registryUser, registryPassword)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := a.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s %s: %d %s", kind, ref, resp.StatusCode, b)
	}
	if kind == "blobs" {
		if sum := sha256.Sum256(b); "sha256:"+hex.EncodeToString(sum[:]) != ref {
			t.Fatalf("blob %s has another digest", ref)
		}
	}
	return b, resp.Header
}

type manifest struct {
	Layers []struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Annotations map[string]string `json:"annotations"`
	} `json:"layers"`
}

// ecdsaVerifier is a DSSE verifier for go-securesystemslib.
type ecdsaVerifier struct{ pub *ecdsa.PublicKey }

func (v ecdsaVerifier) Verify(_ context.Context, data, sig []byte) error {
	sum := sha256.Sum256(data)
	if !ecdsa.VerifyASN1(v.pub, sum[:], sig) {
		return errors.New("bad signature")
	}
	return nil
}
func (v ecdsaVerifier) KeyID() (string, error)   { return "", nil }
func (v ecdsaVerifier) Public() crypto.PublicKey { return v.pub }

// verifyIndependently checks the signature and attestations as cosign
// stores them, and the provenance's fields against the run.
func verifyIndependently(t *testing.T, host string, caPEM []byte, pub *ecdsa.PublicKey, pr workflows.PipelineProgress, repoURL string) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	api := registryAPI{host: host, http: &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	repo := "hello-trust"
	digest := pr.Digest
	index, hdr := api.get(t, repo, "manifests", "r1")
	if sum := sha256.Sum256(index); "sha256:"+hex.EncodeToString(sum[:]) != digest || hdr.Get("Docker-Content-Digest") != digest {
		t.Fatalf("tag r1 is not the run's digest %s", digest)
	}
	var idx struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct{ OS, Architecture string }
		} `json:"manifests"`
	}
	json.Unmarshal(index, &idx)
	tag := strings.Replace(digest, ":", "-", 1)

	// The signature: cosign's simple signing payload, signed over its sha256.
	var sigM manifest
	b, _ := api.get(t, repo, "manifests", tag+".sig")
	json.Unmarshal(b, &sigM)
	if len(sigM.Layers) != 1 || sigM.Layers[0].MediaType != "application/vnd.dev.cosign.simplesigning.v1+json" {
		t.Fatalf(".sig manifest %s", b)
	}
	payload, _ := api.get(t, repo, "blobs", sigM.Layers[0].Digest)
	sig, _ := base64.StdEncoding.DecodeString(sigM.Layers[0].Annotations["dev.cosignproject.cosign/signature"])
	if err := (ecdsaVerifier{pub}).Verify(context.Background(), payload, sig); err != nil {
		t.Fatalf("signature: %v", err)
	}
	var ss struct {
		Critical struct {
			Identity struct {
				DockerReference string `json:"docker-reference"`
			} `json:"identity"`
			Image struct {
				DockerManifestDigest string `json:"docker-manifest-digest"`
			} `json:"image"`
			Type string `json:"type"`
		} `json:"critical"`
	}
	json.Unmarshal(payload, &ss)
	if ss.Critical.Image.DockerManifestDigest != digest || ss.Critical.Type != "cosign container image signature" || ss.Critical.Identity.DockerReference != host+"/"+repo {
		t.Fatalf("signed payload %s", payload)
	}

	// The attestations: DSSE envelopes of in-toto statements.
	var attM manifest
	b, _ = api.get(t, repo, "manifests", tag+".att")
	json.Unmarshal(b, &attM)
	ev, err := dsse.NewEnvelopeVerifier(ecdsaVerifier{pub})
	if err != nil {
		t.Fatal(err)
	}
	sboms := map[string]bool{}
	provenances := 0
	for _, l := range attM.Layers {
		if l.MediaType != "application/vnd.dsse.envelope.v1+json" {
			t.Fatalf("attestation layer %s", l.MediaType)
		}
		raw, _ := api.get(t, repo, "blobs", l.Digest)
		var env dsse.Envelope
		if err := json.Unmarshal(raw, &env); err != nil {
			t.Fatal(err)
		}
		if _, err := ev.Verify(context.Background(), &env); err != nil || env.PayloadType != "application/vnd.in-toto+json" {
			t.Fatalf("DSSE envelope (%s): %v", env.PayloadType, err)
		}
		body, _ := env.DecodeB64Payload()
		var st struct {
			Type          string `json:"_type"`
			PredicateType string `json:"predicateType"`
			Subject       []struct {
				Name   string
				Digest map[string]string
			} `json:"subject"`
			Predicate json.RawMessage `json:"predicate"`
		}
		json.Unmarshal(body, &st)
		if st.Type != "https://in-toto.io/Statement/v1" || st.PredicateType != l.Annotations["predicateType"] || len(st.Subject) == 0 || "sha256:"+st.Subject[0].Digest["sha256"] != digest {
			t.Fatalf("statement %s", body)
		}
		switch st.PredicateType {
		case "https://spdx.dev/Document":
			var doc struct {
				SPDXVersion string `json:"spdxVersion"`
				Name        string `json:"name"`
				Packages    []struct{ Name, VersionInfo string }
			}
			json.Unmarshal(st.Predicate, &doc)
			hasStdlib := false
			for _, p := range doc.Packages {
				hasStdlib = hasStdlib || p.Name == "stdlib" && strings.HasPrefix(p.VersionInfo, "go1.")
			}
			if doc.SPDXVersion != "SPDX-2.3" || !hasStdlib {
				t.Errorf("SBOM %s: %s", doc.Name, st.Predicate)
			}
			sboms[doc.Name[strings.LastIndex(doc.Name, " ")+1:]] = true
		case "https://slsa.dev/provenance/v1":
			provenances++
			checkProvenance(t, st.Predicate, pr, repoURL, idx.Manifests[1].Digest)
		default:
			t.Errorf("unexpected predicate %s", st.PredicateType)
		}
	}
	if !sboms["linux/amd64"] || !sboms["linux/loong64"] || provenances != 1 {
		t.Fatalf("SBOMs %v, %d provenance(s)", sboms, provenances)
	}
}

func checkProvenance(t *testing.T, raw json.RawMessage, pr workflows.PipelineProgress, repoURL, loongDigest string) {
	t.Helper()
	var p struct {
		BuildDefinition struct {
			BuildType          string `json:"buildType"`
			ExternalParameters struct {
				Source struct{ Repository, Ref string } `json:"source"`
			} `json:"externalParameters"`
			InternalParameters   map[string]string `json:"internalParameters"`
			ResolvedDependencies []struct {
				URI    string            `json:"uri"`
				Digest map[string]string `json:"digest"`
			} `json:"resolvedDependencies"`
		} `json:"buildDefinition"`
		RunDetails struct {
			Builder  struct{ ID string } `json:"builder"`
			Metadata struct {
				InvocationID string `json:"invocationId"`
			} `json:"metadata"`
			Byproducts []struct {
				Name        string            `json:"name"`
				Digest      map[string]string `json:"digest"`
				Annotations map[string]any    `json:"annotations"`
			} `json:"byproducts"`
		} `json:"runDetails"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	bd, rd := p.BuildDefinition, p.RunDetails
	dep := bd.ResolvedDependencies
	if bd.ExternalParameters.Source.Repository != repoURL || bd.ExternalParameters.Source.Ref != "main" || bd.InternalParameters["buildKey"] != pr.BuildKey ||
		len(dep) != 1 || dep[0].Digest["gitCommit"] != pr.Commit || dep[0].Digest["gitTree"] != pr.Tree {
		t.Errorf("provenance source %+v", bd)
	}
	if rd.Builder.ID != release.BuilderID || rd.Metadata.InvocationID != pr.ID {
		t.Errorf("provenance run %+v", rd.Metadata)
	}
	got := map[string]string{}
	for _, b := range rd.Byproducts {
		switch {
		case b.Name == "package":
			got["package"] = b.Digest["sha256"]
		case b.Name == "image linux/loong64":
			got["loong64"] = "sha256:" + b.Digest["sha256"]
		case strings.HasPrefix(b.Name, "test "):
			got[b.Name] = fmt.Sprint(b.Annotations["passed"], " ", b.Annotations["emulator"])
		}
	}
	if got["package"] != pr.Package.SHA256 || got["loong64"] != loongDigest || got["test linux/amd64"] != "true " || got["test linux/loong64"] != "true qemu-loongarch64-static" {
		t.Errorf("provenance byproducts %v", got)
	}
}
