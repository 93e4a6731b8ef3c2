//go:build deps

package testrig

import (
	_ "github.com/chromedp/chromedp"
	_ "github.com/redis/go-redis/v9"
)
