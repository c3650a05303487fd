package main

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
)

// Results of one upgrade check, as cinder-status reports them; the command
// exits with the worst: 0 success, 1 warning (the upgrade may be fine), 2
// failure (the upgrade would fail).
const (
	checkSuccess = 0
	checkWarning = 1
	checkFailure = 2
)

type checkResult struct {
	name   string
	code   int
	detail string
}

// upgradeCheck is `upgrade check` of this release against the live data: may
// this release take over the database and the drivers as they are?
func upgradeCheck(s *store, rel Release, out io.Writer) int {
	var results []checkResult
	add := func(name string, code int, format string, args ...any) {
		results = append(results, checkResult{name, code, fmt.Sprintf(format, args...)})
	}
	st, err := s.state()
	vols, lerr := s.list()
	if err == nil {
		err = lerr
	}
	if err != nil {
		add("Database", checkFailure, "%v", err)
		return report(results, out)
	}
	switch {
	case st.Schema == 0:
		add("Database schema", checkFailure, "no database in %s", s.dir)
	case st.Schema > s.schema:
		add("Database schema", checkFailure, "schema %d is newer than this release's %d", st.Schema, s.schema)
	default:
		add("Database schema", checkSuccess, "schema %d, this release needs %d", st.Schema, s.schema)
	}
	if st.Migrated < st.Schema {
		add("Online data migrations", checkFailure, "schema %d's online data migrations are unfinished (done to %d): run `db online_data_migrations` with the release that expanded it", st.Schema, st.Migrated)
	} else {
		add("Online data migrations", checkSuccess, "done to schema %d", st.Migrated)
	}
	if s.schema-st.Migrated > 2 {
		add("Skip level", checkFailure, "schema %d to %d skips more than one release: upgrade to an intermediate release first", st.Migrated, s.schema)
	} else {
		add("Skip level", checkSuccess, "schema %d to %d", st.Migrated, s.schema)
	}
	if s.schema >= 3 && st.Contracted < 3 {
		var unnamed []string
		for _, v := range vols {
			if v.name() == "" {
				unnamed = append(unnamed, v.ID)
			}
		}
		if len(unnamed) > 0 {
			add("Volume names", checkFailure, "%d volume(s) without a name cannot move to display_name, which may not be empty: %s", len(unnamed), strings.Join(unnamed[:min(5, len(unnamed))], ", "))
		} else {
			add("Volume names", checkSuccess, "%d volume(s) have a name", len(vols))
		}
	}
	if _, err := loadDrivers(".", rel); err != nil {
		add("Drivers", checkFailure, "%v", err)
	} else {
		add("Drivers", checkSuccess, "every driver supports %s %s", rel.Component, rel.Version)
	}
	files, _ := filepath.Glob(filepath.Join(s.dir, "volumes", "*"))
	var orphans []string
	for _, f := range files {
		id := filepath.Base(f)
		if !slices.ContainsFunc(vols, func(v volume) bool { return v.ID == id }) && !strings.HasSuffix(id, ".tmp") {
			orphans = append(orphans, id)
		}
	}
	if len(orphans) > 0 {
		add("Volume data", checkWarning, "%d data file(s) belong to no volume and are kept: %s", len(orphans), strings.Join(orphans[:min(5, len(orphans))], ", "))
	} else {
		add("Volume data", checkSuccess, "%d volume(s)", len(vols))
	}
	return report(results, out)
}

func report(results []checkResult, out io.Writer) int {
	worst := checkSuccess
	for _, r := range results {
		fmt.Fprintf(out, "Check: %-24s Result: %-8s Details: %s\n", r.name, []string{"Success", "Warning", "Failure"}[r.code], r.detail)
		worst = max(worst, r.code)
	}
	return worst
}
