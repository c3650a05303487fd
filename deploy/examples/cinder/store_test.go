package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// at is the store as the release of major version major sees dir.
func at(dir string, major int) *store {
	return &store{dir: dir, schema: schemaOf(fmt.Sprintf("%d.0.0", major))}
}

func check(t *testing.T, s *store, major int) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := upgradeCheck(s, Release{Component: "cinder", Version: fmt.Sprintf("%d.0.0", major)}, &out)
	return code, out.String()
}

func mustCreate(t *testing.T, s *store, id, name string) {
	t.Helper()
	if _, err := s.create(id, name, []byte("data of "+id)); err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T, s *store) map[string]string {
	t.Helper()
	vols, err := s.list()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, v := range vols {
		out[v.ID] = v.name()
	}
	return out
}

// The schema moves release by release: expand while the old release keeps
// serving, migrate rows online, contract once it is gone.
func TestUpgradeKeepsDataAndOldReleaseWorksUntilContract(t *testing.T) {
	dir := t.TempDir()
	v24, v26, v28 := at(dir, 24), at(dir, 26), at(dir, 28)
	if _, err := v24.open(); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, v24, "a", "alpha")
	mustCreate(t, v24, "b", "")

	// 26 refuses unnamed volumes, 28 refuses to skip two releases.
	if code, out := check(t, v26, 26); code != checkFailure || !strings.Contains(out, "1 volume(s) without a name") || !strings.Contains(out, ": b") {
		t.Fatalf("check of 26: %d\n%s", code, out)
	}
	if code, out := check(t, v28, 28); code != checkFailure || !strings.Contains(out, "schema 1 to 5 skips more than one release") {
		t.Fatalf("check of 28: %d\n%s", code, out)
	}
	if err := v24.remove("b"); err != nil {
		t.Fatal(err)
	}
	if code, out := check(t, v26, 26); code != checkSuccess {
		t.Fatalf("check of 26 after the fix: %d\n%s", code, out)
	}

	// 26 does not start before db sync; after it both 24 and 26 serve.
	if _, err := v26.open(); !errors.Is(err, errSchema) || !strings.Contains(err.Error(), "run `db sync`") {
		t.Fatalf("26 on schema 1: %v", err)
	}
	if _, err := v28.sync(); err == nil {
		t.Fatal("28's db sync on schema 1 went through")
	}
	if _, err := v26.sync(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*store{v24, v26} {
		if _, err := s.open(); err != nil {
			t.Fatalf("schema %d after 26's db sync: %v", s.schema, err)
		}
	}
	mustCreate(t, v24, "c", "written by 24 during the expand phase")
	mustCreate(t, v26, "d", "written by 26")
	if _, err := v28.sync(); err == nil || !strings.Contains(err.Error(), "online data migrations are done to 1") {
		t.Fatalf("28's db sync before 26's online migrations: %v", err)
	}

	// Online migrations in batches: a cut-short run resumes.
	for i := range 120 {
		mustCreate(t, v24, fmt.Sprintf("m%03d", i), fmt.Sprintf("bulk %d", i))
	}
	if _, more, err := v26.migrate(50, 50, 0); err != nil || !more {
		t.Fatalf("first batch: more %v, %v", more, err)
	}
	if st, _ := v26.state(); st.Migrated != 1 {
		t.Fatalf("migrated %d after a partial run", st.Migrated)
	}
	if _, more, err := v26.migrate(50, 0, 0); err != nil || more {
		t.Fatalf("rest: more %v, %v", more, err)
	}

	// 26 → 28: sync, migrate (checksums from the data), and 24 still serves.
	if code, out := check(t, v28, 28); code != checkSuccess {
		t.Fatalf("check of 28 after 26: %d\n%s", code, out)
	}
	if _, err := v28.sync(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v28.migrate(50, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := v24.open(); err != nil {
		t.Fatalf("24 before the contract: %v", err)
	}
	mustCreate(t, v24, "e", "written by 24 after the migrations")
	mustCreate(t, v28, "f", "written by 28")
	before := names(t, v24)

	// The contract drops the old name; 24 refuses to start after it.
	if _, err := at(t.TempDir(), 26).contract(); err == nil {
		t.Fatal("26 contracted a database it never synced")
	}
	st, err := v28.contract()
	if err != nil || st != (state{Schema: 5, Migrated: 5, Contracted: 5}) {
		t.Fatalf("contract: %+v %v", st, err)
	}
	if _, err := v24.open(); !errors.Is(err, errSchema) || !strings.Contains(err.Error(), "contracted to 5") {
		t.Fatalf("24 after the contract: %v", err)
	}
	after := names(t, v28)
	if fmt.Sprint(after) != fmt.Sprint(before) || len(after) != 125 {
		t.Errorf("names changed over the contract:\n%v\n%v", before, after)
	}
	vols, _ := v28.list()
	for _, v := range vols {
		data, err := os.ReadFile(v28.dataPath(v.ID))
		if v.Name != "" || v.DisplayName == "" || v.Status != "available" || err != nil || v.Checksum != checksum(data) {
			t.Errorf("row after contract: %+v (%v)", v, err)
		}
	}
}

func TestCheckWarnsAboutOrphanedData(t *testing.T) {
	dir := t.TempDir()
	s := at(dir, 25)
	if _, err := s.open(); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, "a", "alpha")
	if err := os.WriteFile(s.dataPath("lost"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := check(t, at(dir, 26), 26); code != checkWarning || !strings.Contains(out, "belong to no volume") {
		t.Fatalf("%d\n%s", code, out)
	}
}

func TestCommandExitCodes(t *testing.T) {
	dir := t.TempDir()
	rel := Release{Component: "cinder", Version: "26.1.0"}
	s := &store{dir: dir, schema: 3}
	if code := command(s, rel, []string{"db", "frobnicate"}); code != 2 {
		t.Errorf("unknown command: %d", code)
	}
	if code := command(s, rel, []string{"db", "sync"}); code != 2 {
		t.Errorf("sync without a database: %d", code)
	}
	if _, err := at(dir, 24).open(); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"db", "sync"}, {"db", "online_data_migrations"}, {"db", "version"}, {"upgrade", "check"}} {
		if code := command(s, rel, args); code != 0 {
			t.Errorf("%v: %d", args, code)
		}
	}
}
