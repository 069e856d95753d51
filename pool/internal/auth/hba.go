package auth

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// hbaRule is one line of an hba file.
type hbaRule struct {
	line      int
	conn      string   // local, host, hostssl, hostnossl
	databases []string // names, or "all", "sameuser"
	users     []string // names, or "all"
	prefix    netip.Prefix
	anyAddr   bool // "all"
	method    string
}

// readHBAFile reads a pg_hba.conf-style file. It understands the subset that applies to
// a pooler: connection types local, host, hostssl and hostnossl; database names, "all"
// and "sameuser"; user names and "all"; addresses as CIDR, address plus mask, or "all";
// methods trust, reject, md5, password and scram-sha-256. Anything else is an error, so
// that a rule is never silently read with another meaning.
func readHBAFile(path string) ([]hbaRule, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pool: auth_hba_file: %w", err)
	}
	defer f.Close()
	var rules []hbaRule
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		r, err := parseHBALine(fields)
		if err != nil {
			return nil, fmt.Errorf("pool: auth_hba_file %s line %d: %w", path, n, err)
		}
		r.line = n
		rules = append(rules, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("pool: auth_hba_file: %w", err)
	}
	return rules, nil
}

func parseHBALine(f []string) (hbaRule, error) {
	r := hbaRule{conn: f[0]}
	var rest []string
	switch r.conn {
	case "local":
		if len(f) < 4 {
			return r, fmt.Errorf("want: local DATABASE USER METHOD")
		}
		rest = f[3:]
	case "host", "hostssl", "hostnossl":
		if len(f) < 5 {
			return r, fmt.Errorf("want: %s DATABASE USER ADDRESS METHOD", r.conn)
		}
		addr := f[3]
		rest = f[4:]
		switch {
		case addr == "all":
			r.anyAddr = true
		case strings.Contains(addr, "/"):
			p, err := netip.ParsePrefix(addr)
			if err != nil {
				return r, fmt.Errorf("invalid address %q: %w", addr, err)
			}
			r.prefix = p.Masked()
		default:
			ip, err := netip.ParseAddr(addr)
			if err != nil {
				return r, fmt.Errorf("invalid address %q (host names are not supported)", addr)
			}
			if len(rest) < 2 {
				return r, fmt.Errorf("address %q needs a mask", addr)
			}
			mask, err := netip.ParseAddr(rest[0])
			if err != nil {
				return r, fmt.Errorf("invalid mask %q", rest[0])
			}
			ones, _ := net.IPMask(mask.AsSlice()).Size()
			if ones == 0 && !mask.IsUnspecified() {
				return r, fmt.Errorf("invalid mask %q", rest[0])
			}
			r.prefix = netip.PrefixFrom(ip, ones).Masked()
			rest = rest[1:]
		}
	default:
		return r, fmt.Errorf("unsupported connection type %q (want local, host, hostssl or hostnossl)", r.conn)
	}
	r.databases = strings.Split(f[1], ",")
	r.users = strings.Split(f[2], ",")
	for _, d := range r.databases {
		if d == "samerole" || d == "samegroup" || d == "replication" || strings.HasPrefix(d, "@") {
			return r, fmt.Errorf("unsupported database %q", d)
		}
	}
	for _, u := range r.users {
		if strings.HasPrefix(u, "+") || strings.HasPrefix(u, "@") || strings.HasPrefix(u, "/") {
			return r, fmt.Errorf("unsupported user %q (groups, files and patterns are not supported)", u)
		}
	}
	m, err := ParseMethod(rest[0], false)
	if err != nil || rest[0] == "plain" {
		return r, fmt.Errorf("unsupported method %q (want trust, reject, md5, password or scram-sha-256)", rest[0])
	}
	if len(rest) > 1 {
		return r, fmt.Errorf("auth options are not supported: %q", strings.Join(rest[1:], " "))
	}
	r.method = m
	return r, nil
}

// matchHBA returns the method of the first rule that matches, or reject when none does.
// In-process clients (Server.DialContext) match "local" lines.
func matchHBA(rules []hbaRule, database, user string, addr net.Addr, isTLS bool) string {
	var ip netip.Addr
	tcp := false
	if ta, ok := addr.(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			ip, tcp = a.Unmap(), true
		}
	}
	for _, r := range rules {
		switch r.conn {
		case "local":
			if tcp {
				continue
			}
		case "host", "hostssl", "hostnossl":
			if !tcp || r.conn == "hostssl" && !isTLS || r.conn == "hostnossl" && isTLS {
				continue
			}
			if !r.anyAddr && !r.prefix.Contains(ip) {
				continue
			}
		}
		if !slices.ContainsFunc(r.databases, func(d string) bool {
			return d == "all" || d == database || d == "sameuser" && database == user
		}) {
			continue
		}
		if !slices.Contains(r.users, "all") && !slices.Contains(r.users, user) {
			continue
		}
		return r.method
	}
	return MethodReject
}
