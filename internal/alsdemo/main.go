// Command alsdemo pulls a multi-layer image from a registry on loopback into a throwaway overlay
// store whose Additional Layer Store holds every layer under its layer digest, and prints where
// each layer came from and how many of its bytes were read from the registry.
//
// It uses only c/image’s public API: `make demo` builds it once against the patched tree and
// once against pristine upstream, and runs both.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"go.podman.io/image/v5/internal/alspull"
	"go.podman.io/image/v5/internal/alstest"
)

func main() {
	if alstest.PrepareProcess() {
		return
	}
	label := flag.String("label", "this build", "what to call the build in the output")
	withRef := flag.Bool("ref", false, "configure the store with :ref (keyed by image reference)")
	push := flag.String("push", "", "instead of the demo, push the demo image to this registry "+
		"reference (plain HTTP), fill the store -als with its layers and print their digests")
	alsOut := flag.String("als", "", "with -push: the Additional Layer Store directory to fill")
	flag.Parse()
	if *push != "" {
		if err := pushDemoImage(*push, *alsOut); err != nil {
			fmt.Fprintf(os.Stderr, "alsdemo: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "alsdemo: the overlay driver with a layer store needs root")
		os.Exit(2)
	}
	if err := run(*label, *withRef); err != nil {
		fmt.Fprintf(os.Stderr, "alsdemo (%s): %v\n", *label, err)
		os.Exit(1)
	}
}

func run(label string, withRef bool) (retErr error) {
	img, registry, err := serveDemoImage()
	if err != nil {
		return err
	}
	defer registry.Close()
	ref := registry.Addr() + "/demo/app:1.0"

	dir, err := os.MkdirTemp("", "alsdemo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	alsRoot := filepath.Join(dir, "als")
	entryRef := ""
	if withRef {
		entryRef = ref
	}
	for i := range img.Layers {
		if _, err := alstest.WriteALSEntry(alsRoot, entryRef, img.Layers[i].Digest,
			&img.Layers[i], alstest.EntryOptions{}); err != nil {
			return fmt.Errorf("filling the Additional Layer Store: %w", err)
		}
	}
	store, err := alspull.NewStore(filepath.Join(dir, "store"), alsRoot, withRef)
	if err != nil {
		return err
	}
	defer func() {
		if _, err := store.Shutdown(true); err != nil && retErr == nil {
			retErr = fmt.Errorf("shutting the store down: %w", err)
		}
	}()

	fmt.Printf("== %s: pull %s\n", label, ref)
	fmt.Printf("   Additional Layer Store %s, every layer under its layer digest", alsRoot)
	if withRef {
		fmt.Printf(" (:ref)")
	}
	fmt.Println()
	start := time.Now()
	pulled, err := alspull.Pull(context.Background(), store, ref, nil)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	origins, err := alspull.Origins(store, pulled)
	if err != nil {
		return err
	}

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "   layer\tlayer digest\tsize\tcame from\tbytes read from registry")
	var fromALS, total, served int64
	for i, o := range origins {
		l := img.Layers[i]
		from := "registry, extracted into local storage"
		if o.ALSEntry != "" {
			from = "additional layer store"
			fromALS++
		}
		n := registry.BlobBytesServed(l.Digest)
		total += l.Size
		served += n
		fmt.Fprintf(w, "   %d\t%s\t%d\t%s\t%d\n", i, alspull.ShortDigest(l.Digest), l.Size, from, n)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Printf("   %d of %d layers from the Additional Layer Store; %d of %d layer bytes read "+
		"from the registry; pull took %s\n", fromALS, len(origins), served, total,
		elapsed.Round(time.Millisecond))
	files := img.Files()
	if err := alspull.VerifyFiles(store, origins[len(origins)-1].Layer.ID, files); err != nil {
		return err
	}
	fmt.Printf("   all %d files of the image read back right through an overlay mount\n\n",
		len(files))
	return nil
}

// pushDemoImage pushes the demo image to dest, writes an entry for each of its layers into the
// Additional Layer Store alsRoot keyed by layer digest, and prints the layer digests.
func pushDemoImage(dest, alsRoot string) error {
	if alsRoot == "" {
		return fmt.Errorf("-push needs -als")
	}
	img, registry, err := serveDemoImage()
	if err != nil {
		return err
	}
	defer registry.Close()
	src := registry.Addr() + "/demo/app:1.0"
	if err := alspull.Push(context.Background(), src, dest); err != nil {
		return err
	}
	for i := range img.Layers {
		if _, err := alstest.WriteALSEntry(alsRoot, "", img.Layers[i].Digest, &img.Layers[i],
			alstest.EntryOptions{}); err != nil {
			return fmt.Errorf("filling the Additional Layer Store: %w", err)
		}
		fmt.Println(img.Layers[i].Digest)
	}
	return nil
}

// serveDemoImage builds the demo image and serves it as demo/app:1.0 from a registry on
// loopback, which the caller must close.
func serveDemoImage() (*alstest.Image, *alstest.Registry, error) {
	img, err := alstest.BuildImage(alstest.DemoLayers())
	if err != nil {
		return nil, nil, err
	}
	registry, err := alstest.StartRegistry()
	if err != nil {
		return nil, nil, err
	}
	registry.Put("demo/app", "1.0", img)
	return img, registry, nil
}
