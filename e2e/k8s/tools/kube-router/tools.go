//go:build tools

// Package tools pins cloudnativelabs/kube-router, whose network policy controller build.sh builds
// from this module for the test bed (its own module: its client-go differs from Kubernetes').
package tools

import (
	_ "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"
)
