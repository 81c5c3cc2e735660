package main

import (
	"errors"
	"fmt"
	"strings"
)

const dockerHub = "https://index.docker.io"

// image is a container image reference split the way App Service wants it:
// the registry as a URL and the rest as "name:tag" (or "name@digest").
type image struct {
	registryURL string // https://ghcr.io
	name        string // example/model-server:v1
	tag         string // v1; empty when pinned by digest only
}

// parseImage splits ref. A reference without a tag or digest is refused:
// App Service would pull "latest", and a rollout needs to know which model
// version each slot runs.
func parseImage(ref string) (image, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return image{}, errors.New("empty; set the model server image, e.g. ghcr.io/example/model-server:v1")
	}
	if strings.Contains(ref, "://") {
		return image{}, fmt.Errorf("%q: give the image without a scheme, e.g. ghcr.io/example/model-server:v1", ref)
	}
	if strings.ContainsAny(ref, " \t") {
		return image{}, fmt.Errorf("%q: an image reference has no spaces", ref)
	}
	img := image{registryURL: dockerHub, name: ref}
	// Docker's rule: the first path element is a registry host when it looks
	// like one (has a dot or port, or is localhost); otherwise it is Docker Hub.
	if host, rest, ok := strings.Cut(ref, "/"); ok && (strings.ContainsAny(host, ".:") || host == "localhost") {
		img.registryURL, img.name = "https://"+host, rest
	}
	last := img.name[strings.LastIndex(img.name, "/")+1:]
	repo, _, digest := strings.Cut(last, "@")
	if _, tag, ok := strings.Cut(repo, ":"); ok {
		img.tag = tag
	}
	if img.tag == "" && !digest {
		return image{}, fmt.Errorf("%q has no tag; pin the model version, e.g. %s:v1", ref, ref)
	}
	return img, nil
}

// imageTag is the tag of ref, or "" when ref is invalid or has no tag.
func imageTag(ref string) string {
	img, err := parseImage(ref)
	if err != nil {
		return ""
	}
	return img.tag
}
