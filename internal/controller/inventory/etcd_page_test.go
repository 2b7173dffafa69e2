package inventory

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ifl-project/ifl/internal/testbed/etcdtest"
)

// TestEtcdPages: a read in many pages of growing size, some cut short by
// their bytes, reads every record once, at one revision.
func TestEtcdPages(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := context.Background()
	old := []int64{pageSize, maxPage, int64(maxPageBytes)}
	pageSize, maxPage, maxPageBytes = 3, 40, 20000
	defer func() { pageSize, maxPage, maxPageBytes = old[0], old[1], int(old[2]) }()
	st, err := OpenEtcd(mustParse(t, c.Spec("/p", "")))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	want := Synthetic(300)
	if err := Import(ctx, st, want); err != nil {
		t.Fatal(err)
	}
	before := st.Stats()
	got, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(State{}, "Updated"), cmpopts.IgnoreUnexported(State{}), cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("read in pages (-imported +read):\n%s", diff)
	}
	// 601 keys: pages of 3, 6, 12 and 24, then of as many host records
	// as 20,000 bytes hold, then of 40 names.
	if pages := st.Stats().Since(before).Pages; pages != 19 {
		t.Errorf("%d pages, want 19: pages that grow, cut by their bytes", pages)
	}
}

func mustParse(t *testing.T, spec string) EtcdConfig {
	t.Helper()
	cfg, err := ParseEtcd(spec)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
