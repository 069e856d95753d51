package pool_test

import (
	"os"
	"reflect"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cmlite/cmpool/pool"
)

// TestConfigurationReferenceCoversConfig keeps docs/configuration.md in step with Config:
// one table row per field, named in the first column.
func TestConfigurationReferenceCoversConfig(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	require.NoError(t, err)
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z][A-Za-z]*)` \\|").FindAllSubmatch(doc, -1) {
		documented[string(m[1])] = true
	}
	var missing []string
	typ := reflect.TypeFor[pool.Config]()
	for i := range typ.NumField() {
		name := typ.Field(i).Name
		if !documented[name] {
			missing = append(missing, name)
		}
	}
	require.Empty(t, missing, "Config fields missing from docs/configuration.md")
	for name := range documented {
		if _, ok := typ.FieldByName(name); !ok {
			if _, ok := reflect.TypeFor[pool.Database]().FieldByName(name); !ok {
				t.Errorf("docs/configuration.md documents %s, which Config does not have", name)
			}
		}
	}
}
