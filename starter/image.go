package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/edgedrift/drift/internal/config"
	"github.com/edgedrift/drift/internal/image"
	"github.com/edgedrift/drift/internal/release"
)

func newImageCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Inspect images: verify signatures and provenance"}
	var policyFile string
	var keys, repos, refs []string
	var requireTests bool
	var login config.RegistryLogin
	verify := &cobra.Command{
		Use:   "verify REF (--policy FILE | --key PUB [--repo URL] [--ref REF] [--require-tests])",
		Short: "Check an image as a site does before it deploys: a trusted signature and an acceptable provenance",
		Long: `Check an image the way a site's worker does before it deploys it: a
signature over its digest by a trusted key (cosign's .sig tag), and a signed
SLSA provenance (cosign's .att tag) naming an allowed source repository and
ref, with every platform's tests passed when required. Exits non-zero with
the reason when the image is untrusted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := args[0]
			r, err := image.ParseReference(ref)
			if err != nil {
				return err
			}
			if err := login.Apply(r.Context().RegistryStr()); err != nil {
				return err
			}
			policy, err := loadPolicy(policyFile, keys, repos, refs, requireTests)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			v, err := release.Verify(ctx, ref, policy)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), v, func(w io.Writer) { printVerified(w, ref, v) })
		},
	}
	f := verify.Flags()
	f.StringVar(&policyFile, "policy", "", "trust policy YAML (keys, repos, refs, requireTests), as drift-worker --trust-policy takes")
	f.StringSliceVar(&keys, "key", nil, "trusted PEM public key file (repeatable)")
	f.StringSliceVar(&repos, "repo", nil, "allowed source repository (repeatable; default any)")
	f.StringSliceVar(&refs, "ref", nil, "allowed source ref, e.g. main (repeatable; default any)")
	f.BoolVar(&requireTests, "require-tests", false, "every platform of the image must have passed its tests")
	login.BindFlags(f)
	cmd.AddCommand(verify)
	return cmd
}

func loadPolicy(file string, keys, repos, refs []string, requireTests bool) (*release.Policy, error) {
	if file != "" {
		if len(keys) > 0 {
			return nil, fmt.Errorf("give --policy or --key, not both")
		}
		return release.LoadPolicy(file)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no trusted key: give --key PUB or --policy FILE")
	}
	var pems [][]byte
	for _, k := range keys {
		b, err := os.ReadFile(k)
		if err != nil {
			return nil, err
		}
		pems = append(pems, b)
	}
	return release.NewPolicy(pems, repos, refs, requireTests)
}

func printVerified(w io.Writer, ref string, v release.Verified) {
	fmt.Fprintf(w, "%s is trusted\n", ref)
	fmt.Fprintf(w, "  digest   %s\n  key      %s\n  source   %s at %s (commit %s)\n  builder  %s\n", v.Digest, v.Key, v.Source.Repository, v.Source.Ref, v.Commit, v.Builder)
	for _, t := range v.Tests {
		how := "native"
		if t.Emulator != "" {
			how = "under " + t.Emulator
		}
		fmt.Fprintf(w, "  tests    %s %s (%s)\n", t.Platform, map[bool]string{true: "passed", false: "FAILED"}[t.Passed], how)
	}
}

// printRelease lists a run's signature, SBOMs and provenance.
func printRelease(w io.Writer, a *release.Attached) {
	if a == nil {
		return
	}
	fmt.Fprintf(w, "  signed   %s (key %s)\n", a.Signature, a.Key)
	var sboms []string
	for _, s := range a.SBOMs {
		sboms = append(sboms, fmt.Sprintf("%s: %d packages", s.Platform, s.Packages))
	}
	fmt.Fprintf(w, "  attested %s: SLSA provenance v1, SPDX SBOM (%s)\n", a.Attestations, strings.Join(sboms, "; "))
}
