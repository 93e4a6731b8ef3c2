// Package web is the browser client that chatd serves at "/": plain HTML, CSS
// and ES modules embedded in the binary (no build step), and the JavaScript
// SDK (jetchat.js) that other front ends can import.
//
// It holds static files only; it must never talk to NATS, a store or a node.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the web client and the SDK.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree always has "static"
	}
	return http.FileServerFS(sub)
}
