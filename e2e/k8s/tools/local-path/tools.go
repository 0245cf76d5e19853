//go:build tools

// Package tools pins rancher/local-path-provisioner, which build.sh builds from this module.
package tools

import (
	_ "github.com/rancher/local-path-provisioner"
)
