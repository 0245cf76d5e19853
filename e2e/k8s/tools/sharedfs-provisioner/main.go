// Command sharedfs-provisioner is the test bed's dynamic provisioner for ReadWriteMany claims
// (StorageClass tunecluster-rwx), built on sig-storage's external-provisioner library.
//
// Every node FUSE-mounts the bed's shared network filesystem (SFTP, served from the host's
// --export-dir) at the same path, --mount-dir, inside its own mount namespace. For each claim
// this provisioner makes a folder <export-dir>/<pv-name> on the filesystem's server and a
// PersistentVolume whose hostPath is <mount-dir>/<pv-name>: the same path on every node, which each
// node reaches through its own mount, so a pod on one node reads what a pod on another wrote.
// Deleting the volume removes the folder.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v10/controller"
)

type sharedFS struct {
	exportDir string
	mountDir  string
}

func (s *sharedFS) Provision(_ context.Context, opts controller.ProvisionOptions) (*v1.PersistentVolume, controller.ProvisioningState, error) {
	dir := filepath.Join(s.exportDir, opts.PVName)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, controller.ProvisioningFinished, fmt.Errorf("making %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o777); err != nil { // pods run as any user
		return nil, controller.ProvisioningFinished, err
	}
	reclaim := v1.PersistentVolumeReclaimDelete
	if opts.StorageClass.ReclaimPolicy != nil {
		reclaim = *opts.StorageClass.ReclaimPolicy
	}
	hostPathType := v1.HostPathDirectory
	pv := &v1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        opts.PVName,
			Annotations: map[string]string{"tunecluster.local/export": dir},
		},
		Spec: v1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   opts.PVC.Spec.AccessModes,
			Capacity:                      v1.ResourceList{v1.ResourceStorage: opts.PVC.Spec.Resources.Requests[v1.ResourceStorage]},
			MountOptions:                  opts.StorageClass.MountOptions,
			PersistentVolumeSource: v1.PersistentVolumeSource{
				HostPath: &v1.HostPathVolumeSource{Path: filepath.Join(s.mountDir, opts.PVName), Type: &hostPathType},
			},
		},
	}
	return pv, controller.ProvisioningFinished, nil
}

func (s *sharedFS) Delete(_ context.Context, pv *v1.PersistentVolume) error {
	return os.RemoveAll(filepath.Join(s.exportDir, pv.Name))
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	name := flag.String("name", "tunecluster.local/sharedfs", "provisioner name (the StorageClass's provisioner)")
	exportDir := flag.String("export-dir", "", "the shared filesystem's folder on its server (this host)")
	mountDir := flag.String("mount-dir", "", "where every node mounts the shared filesystem")
	klog.InitFlags(nil)
	flag.Parse()
	if *kubeconfig == "" || *exportDir == "" || *mountDir == "" {
		fmt.Fprintln(os.Stderr, "usage: sharedfs-provisioner --kubeconfig FILE --export-dir DIR --mount-dir DIR [--name NAME]")
		os.Exit(2)
	}
	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		klog.Fatalf("client: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logger := klog.Background()
	pc := controller.NewProvisionController(logger, client, *name, &sharedFS{exportDir: *exportDir, mountDir: *mountDir},
		controller.LeaderElection(false))
	klog.Infof("provisioner %s: export %s, mounted on every node at %s", *name, *exportDir, *mountDir)
	pc.Run(ctx)
}
