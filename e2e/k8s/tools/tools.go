//go:build tools

// Package tools pins the commands build.sh builds from this module.
package tools

import (
	_ "github.com/distribution/distribution/v3/cmd/registry"
	_ "sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"
)
