// Command consumer is a stand-in for Podman or Skopeo: a separate module that builds against
// go.podman.io/image/v5 through a replace directive, and pulls one image from a registry into an
// overlay store with an Additional Layer Store. kit/test-consumer builds it twice, against the
// fork and against pristine upstream.
//
//	consumer REFERENCE ALS-ROOT STORE-DIR
//
// It prints one line per layer, "from-als ENTRY" or "local", and exits 1 if the pull fails.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/reexec"
)

func main() {
	if reexec.Init() {
		return
	}
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: consumer REFERENCE ALS-ROOT STORE-DIR")
		os.Exit(2)
	}
	if err := pull(os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintf(os.Stderr, "consumer: %v\n", err)
		os.Exit(1)
	}
}

func pull(ref, alsRoot, dir string) (retErr error) {
	store, err := storage.GetStore(storage.StoreOptions{
		RunRoot:            filepath.Join(dir, "run"),
		GraphRoot:          filepath.Join(dir, "root"),
		GraphDriverName:    "overlay",
		GraphDriverOptions: []string{"overlay.additionallayerstore=" + alsRoot},
	})
	if err != nil {
		return err
	}
	defer func() {
		if _, err := store.Shutdown(true); err != nil && retErr == nil {
			retErr = err
		}
	}()
	srcRef, err := docker.ParseReference("//" + ref)
	if err != nil {
		return err
	}
	destRef, err := istorage.Transport.ParseStoreReference(store, ref)
	if err != nil {
		return err
	}
	policy, err := signature.NewPolicyContext(&signature.Policy{
		Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()},
	})
	if err != nil {
		return err
	}
	defer func() { _ = policy.Destroy() }()
	_, err = copy.Image(context.Background(), policy, destRef, srcRef, &copy.Options{
		SourceCtx: &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue},
	})
	if err != nil {
		return err
	}
	_, img, err := istorage.ResolveReference(destRef)
	if err != nil {
		return err
	}
	for id := img.TopLayer; id != ""; {
		layer, err := store.Layer(id)
		if err != nil {
			return err
		}
		target, err := os.Readlink(filepath.Join(store.GraphRoot(), "overlay", id, "diff"))
		if err == nil {
			fmt.Printf("from-als %s\n", filepath.Dir(target))
		} else {
			fmt.Println("local")
		}
		id = layer.Parent
	}
	return nil
}
