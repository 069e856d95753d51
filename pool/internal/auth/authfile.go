package auth

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// ReadAuthFile reads a PgBouncer userlist.txt: one `"user" "secret"` pair per line, with
// "" standing for a double quote inside a field and lines starting with ';' or '#'
// ignored. It returns every secret: plain, md5 and SCRAM.
func ReadAuthFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pool: auth_file: %w", err)
	}
	defer f.Close()
	out := make(map[string]string)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		fields, err := splitQuoted(line)
		if err != nil || len(fields) < 2 {
			return nil, fmt.Errorf("pool: auth_file %s line %d: want \"user\" \"password\"", path, n)
		}
		out[fields[0]] = fields[1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("pool: auth_file: %w", err)
	}
	return out, nil
}

// splitQuoted splits `"a" "b""c"` into a and b"c.
func splitQuoted(line string) ([]string, error) {
	var fields []string
	for i := 0; i < len(line); {
		switch line[i] {
		case ' ', '\t':
			i++
			continue
		case '"':
		default:
			return nil, fmt.Errorf("unquoted field")
		}
		var b strings.Builder
		i++
		for {
			if i >= len(line) {
				return nil, fmt.Errorf("unterminated quote")
			}
			if line[i] == '"' {
				if i+1 < len(line) && line[i+1] == '"' {
					b.WriteByte('"')
					i += 2
					continue
				}
				i++
				break
			}
			b.WriteByte(line[i])
			i++
		}
		fields = append(fields, b.String())
	}
	return fields, nil
}
