package localcluster

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	beginMarker  = regexp.MustCompile(`(?m)^[ \t]*# BEGIN UPSTREAMS[^\n]*\n`)
	endMarker    = regexp.MustCompile(`(?m)^[ \t]*# END UPSTREAMS`)
	upstreamLine = regexp.MustCompile(`(?m)^(\s*)server\s+\S+(\s.*)?;\s*$`)
	// Directives, not the comments that mention them.
	listenLine    = regexp.MustCompile(`(?m)^([ \t]*)listen 8080;`)
	accessLogLine = regexp.MustCompile(`(?m)^([ \t]*)access_log /dev/stdout`)
)

// RenderNGINX renders the repository's nginx.conf to run outside Docker: in
// each block between "# BEGIN UPSTREAMS" and "# END UPSTREAMS" the servers
// become upstreams (keeping that block's first server line's parameters), the
// server listens on listen (host:port), and the access log goes to access.log
// in the prefix directory. Everything else is the file as compose uses it.
func RenderNGINX(conf string, upstreams []string, listen string) (string, error) {
	var out strings.Builder
	rest, blocks := conf, 0
	for {
		bl := beginMarker.FindStringIndex(rest)
		if bl == nil {
			break
		}
		el := endMarker.FindStringIndex(rest[bl[1]:])
		if el == nil {
			return "", fmt.Errorf("nginx.conf has a # BEGIN UPSTREAMS without its # END UPSTREAMS")
		}
		block := rest[bl[1] : bl[1]+el[0]]
		m := upstreamLine.FindStringSubmatch(block)
		if m == nil {
			return "", fmt.Errorf("no server line between the upstream markers")
		}
		out.WriteString(rest[:bl[1]])
		for _, u := range upstreams {
			fmt.Fprintf(&out, "%sserver %s%s;\n", m[1], u, strings.TrimSuffix(m[2], ";"))
		}
		rest = rest[bl[1]+el[0]:]
		blocks++
	}
	if blocks == 0 {
		return "", fmt.Errorf("nginx.conf lacks the # BEGIN UPSTREAMS / # END UPSTREAMS markers")
	}
	out.WriteString(rest)
	rendered := out.String()
	if n := len(listenLine.FindAllStringIndex(rendered, -1)); n != 1 {
		return "", fmt.Errorf("nginx.conf has %d 'listen 8080;' lines to render, want 1", n)
	}
	rendered = listenLine.ReplaceAllString(rendered, "${1}listen "+listen+";")
	rendered = accessLogLine.ReplaceAllString(rendered, "${1}access_log access.log")
	return rendered, nil
}
