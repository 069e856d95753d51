package auth

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadAuthFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "userlist.txt")
	content := `; comment
"alice" "s3cret"
"bob" "md5` + "0123456789abcdef0123456789abcdef" + `"
"carol" "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
"dq""uote" "pa""ss"

# another comment
`
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	got, err := ReadAuthFile(path)
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"alice": "s3cret", `dq"uote`: `pa"ss`,
		"bob":   "md5" + "0123456789abcdef0123456789abcdef",
		"carol": "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy",
	}, got)

	for _, bad := range []string{`alice s3cret`, `"alice"`, `"alice" "unterminated`} {
		require.NoError(t, os.WriteFile(path, []byte(bad+"\n"), 0o600))
		_, err := ReadAuthFile(path)
		require.Error(t, err, bad)
	}
	_, err = ReadAuthFile(filepath.Join(t.TempDir(), "missing"))
	require.Error(t, err)
}
