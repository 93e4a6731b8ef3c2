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

// RenderNGINX renders the repository's nginx.conf to run outside Docker: the
// servers between "# BEGIN UPSTREAMS" and "# END UPSTREAMS" become
// upstreams (keeping the first server line's parameters), the server listens
// on listen (host:port), and the access log goes to access.log in the prefix
// directory. Everything else is the file as compose uses it.
func RenderNGINX(conf string, upstreams []string, listen string) (string, error) {
	bl := beginMarker.FindStringIndex(conf)
	el := endMarker.FindStringIndex(conf)
	if bl == nil || el == nil || el[0] < bl[1] {
		return "", fmt.Errorf("nginx.conf lacks the # BEGIN UPSTREAMS / # END UPSTREAMS markers")
	}
	begin, end := bl[0], el[0]
	block := conf[bl[1]:end]
	m := upstreamLine.FindStringSubmatch(block)
	if m == nil {
		return "", fmt.Errorf("no server line between the upstream markers")
	}
	var b strings.Builder
	b.WriteString(conf[bl[0]:bl[1]])
	for _, u := range upstreams {
		fmt.Fprintf(&b, "%sserver %s%s;\n", m[1], u, strings.TrimSuffix(m[2], ";"))
	}
	out := conf[:begin] + b.String() + conf[end:]
	if n := len(listenLine.FindAllStringIndex(out, -1)); n != 1 {
		return "", fmt.Errorf("nginx.conf has %d 'listen 8080;' lines to render, want 1", n)
	}
	out = listenLine.ReplaceAllString(out, "${1}listen "+listen+";")
	out = accessLogLine.ReplaceAllString(out, "${1}access_log access.log")
	return out, nil
}
