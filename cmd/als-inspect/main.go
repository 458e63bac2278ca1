// Command als-inspect tells where a pull of an image with image-als looks each layer up in an
// Additional Layer Store, and whether the store answers correctly. It reads the image’s manifest
// and config, never its layer blobs, and changes nothing in the store.
//
//	als-inspect [flags] IMAGE STORE...
//
// IMAGE is a transport:reference as c/image reads it (docker://registry.example/app:1.0,
// docker-archive:app.tar:app:1.0, oci:dir:tag, …). STORE is an Additional Layer Store as in
// storage.conf: /path, or /path:ref for a store keyed by image reference too.
//
// Exit status: 0 if every layer would come from the store, 1 if some would be pulled (or the
// pull would fail), 2 on usage errors and when the image cannot be read.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// report is the result, as printed with -json.
type report struct {
	Image string `json:"image"`
	// Reference is the exact string the directory of a ":ref" store is the base64 of; "" if the
	// source has no Docker reference (and then no store is consulted).
	Reference    string                         `json:"reference"`
	ReferenceDir string                         `json:"referenceDir,omitempty"`
	KeyPolicy    string                         `json:"keyPolicy"`
	Stores       []storage.AdditionalLayerStore `json:"stores"`
	Layers       []storage.AdditionalLayerPlan  `json:"layers"`
	FromStore    int                            `json:"fromStore"`
	Pulled       int                            `json:"pulled"`
}

// usageError is an error in the command line.
type usageError struct{ error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	r, asJSON, err := inspect(ctx, args, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "als-inspect: %v\n", err)
		if errors.As(err, &usageError{}) {
			fmt.Fprintln(stderr, "usage: als-inspect [-ref] [-key auto|toc|layer] [-json] "+
				"[-tls-verify=false] [-authfile FILE] IMAGE STORE...")
		}
		return 2
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(stderr, "als-inspect: %v\n", err)
			return 2
		}
	} else if err := printReport(stdout, r); err != nil {
		fmt.Fprintf(stderr, "als-inspect: %v\n", err)
		return 2
	}
	if r.Pulled > 0 {
		return 1
	}
	return 0
}

// inspect parses args, reads the image and plans its layers’ lookups.
func inspect(ctx context.Context, args []string, stderr io.Writer) (*report, bool, error) {
	flags := flag.NewFlagSet("als-inspect", flag.ContinueOnError)
	flags.SetOutput(stderr)
	withRef := flags.Bool("ref", false, "treat every STORE as configured with :ref")
	key := flags.String("key", os.Getenv(storage.AdditionalLayerStoreKeyEnv),
		"auto, toc or layer (default: $"+storage.AdditionalLayerStoreKeyEnv+", else auto)")
	asJSON := flags.Bool("json", false, "print JSON")
	tlsVerify := flags.Bool("tls-verify", true, "require HTTPS and verify certificates")
	authFile := flags.String("authfile", "", "path of the registry authentication file")
	if err := flags.Parse(args); err != nil {
		return nil, false, usageError{err}
	}
	if flags.NArg() < 2 {
		return nil, false, usageError{errors.New("IMAGE and at least one STORE are required")}
	}
	r := &report{Image: flags.Arg(0), KeyPolicy: *key}
	if r.KeyPolicy == "" {
		r.KeyPolicy = "auto"
	}
	for _, s := range flags.Args()[1:] {
		stores := storage.ParseAdditionalLayerStores(s)
		for i := range stores {
			stores[i].WithReference = stores[i].WithReference || *withRef
		}
		r.Stores = append(r.Stores, stores...)
	}

	ref, err := alltransports.ParseImageName(r.Image)
	if err != nil {
		return nil, false, usageError{err}
	}
	sys := &types.SystemContext{AuthFilePath: *authFile}
	if !*tlsVerify {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	}
	src, err := ref.NewImageSource(ctx, sys)
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", r.Image, err)
	}
	defer src.Close()
	img, err := image.FromUnparsedImage(ctx, sys, image.UnparsedInstance(src, nil))
	if err != nil {
		return nil, false, fmt.Errorf("reading the manifest of %s: %w", r.Image, err)
	}
	config, err := img.OCIConfig(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("reading the config of %s: %w", r.Image, err)
	}
	srcRef := ref.DockerReference()
	if srcRef != nil {
		r.Reference = srcRef.String()
		r.ReferenceDir = base64.StdEncoding.EncodeToString([]byte(r.Reference))
	}
	r.Layers, err = storage.PlanAdditionalLayerLookups(*key, srcRef, img.LayerInfos(), config,
		r.Stores)
	if err != nil {
		return nil, false, err
	}
	for _, l := range r.Layers {
		if l.Verdict == storage.AdditionalLayerFound {
			r.FromStore++
		} else {
			r.Pulled++
		}
	}
	return r, *asJSON, nil
}

func printReport(w io.Writer, r *report) error {
	fmt.Fprintf(w, "image:       %s\n", r.Image)
	if r.Reference != "" {
		fmt.Fprintf(w, "reference:   %s\n", r.Reference)
		fmt.Fprintf(w, "             (a :ref store keeps its layers under %s/)\n", r.ReferenceDir)
	} else {
		fmt.Fprintln(w, "reference:   none: the source has no Docker reference")
	}
	fmt.Fprintf(w, "key policy:  %s\n", r.KeyPolicy)
	for _, s := range r.Stores {
		opt := ""
		if s.WithReference {
			opt = " (:ref)"
		}
		fmt.Fprintf(w, "store:       %s%s\n", s.Root, opt)
	}
	for _, l := range r.Layers {
		fmt.Fprintf(w, "\nlayer %d\n", l.Index)
		tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
		fmt.Fprintf(tw, "  layer digest:\t%s\n", l.LayerDigest)
		toc := string(l.TOCDigest)
		if toc == "" {
			toc = "none"
		}
		fmt.Fprintf(tw, "  TOC digest:\t%s\n", toc)
		if l.KeyKind == "" {
			fmt.Fprintf(tw, "  key:\tnone: %s\n", l.Reason)
		} else {
			fmt.Fprintf(tw, "  key:\t%s (%s)\n", l.KeyKind, l.Reason)
			fmt.Fprintf(tw, "  looks up:\t%s\n", strings.Join(l.Paths, "\n\t"))
		}
		fmt.Fprintf(tw, "  verdict:\t%s\n", l.Verdict)
		if l.Entry != "" && len(l.Paths) > 1 {
			fmt.Fprintf(tw, "  answered by:\t%s\n", l.Entry)
		}
		if l.Problem != "" {
			fmt.Fprintf(tw, "  problem:\t%s\n", l.Problem)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\n%d of %d layers would come from the Additional Layer Store, %d "+
		"would be pulled\n", r.FromStore, len(r.Layers), r.Pulled)
	return err
}
