package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/azure"
	"github.com/modelslot/modelslot/local"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newDeployCmd) }

func newDeployCmd() *cobra.Command {
	var (
		f                                           clientFlags
		url, command, version, revision, image      string
		settings, sticky, headers, secrets, queries []string
		defaults, overrides, secretQueries          []string
		warmupPath, warmupStatus, model, prompt     string
		promptMode                                  string
		warmupTimeout                               time.Duration
		warmupRetries                               int
	)
	cmd := &cobra.Command{
		Use:   "deploy SLOT (--url URL | --cmd 'server --port {port}' | --revision ID | --platform azure --image IMAGE) [flags]",
		Short: "Deploy a model version to a slot; it replaces the old one only once healthy",
		Long: `Deploy a model version to a slot. --url points at any OpenAI-compatible server;
--cmd starts a process the daemon supervises ({port} is replaced by the port it
chooses; settings become its environment; logs go to <data>/logs; it is
restarted with backoff after a crash). The new deployment replaces the old one
only after it answers its warm-up path; if it never does, the old one keeps
serving and the error says why. Deploying identical content is a no-op;
--revision redeploys a past revision.

With --platform azure, --image sets the slot's container image
(linuxFxVersion DOCKER|IMAGE) and --setting/--sticky-setting its app
settings; the command then waits until the slot answers its warm-up path on
its own host name, else puts the previous image and settings back.`,
		Example: `  modelslot deploy staging --url http://127.0.0.1:8000 --version v2
  modelslot deploy staging --cmd 'modelslot sim --listen 127.0.0.1:{port}' --version v2
  modelslot deploy staging --platform azure --azure-config azure.yaml --image myacr.azurecr.io/llm:v2 --version v2 --setting MODEL_ID=llama-3.1-8b`,
		Args: oneArg("deploy", "name the slot to deploy to", "modelslot deploy staging --url http://127.0.0.1:9002 --version v2"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.backend(cmd)
			if err != nil {
				return err
			}
			if err := checkDeployFlags(cmd, f.azure()); err != nil {
				return err
			}
			d := modelslot.Deployment{URL: url, Command: command, Version: version, Model: model, SystemPrompt: prompt, SystemPromptMode: promptMode}
			if d.Settings, err = parseKV(settings, "setting"); err != nil {
				return err
			}
			if d.Headers, err = parseKV(headers, "header"); err != nil {
				return err
			}
			sec, err := parseKV(secrets, "secret-header")
			if err != nil {
				return err
			}
			for k, v := range sec {
				if d.Headers == nil {
					d.Headers = map[string]string{}
				}
				d.Headers[k] = v
				d.SecretHeaders = append(d.SecretHeaders, k)
			}
			if d.Query, err = parseKV(queries, "query"); err != nil {
				return err
			}
			secQ, err := parseKV(secretQueries, "secret-query")
			if err != nil {
				return err
			}
			for k, v := range secQ {
				if d.Query == nil {
					d.Query = map[string]string{}
				}
				d.Query[k] = v
				d.SecretQuery = append(d.SecretQuery, k)
			}
			if d.Defaults, err = parseParams(defaults, "default"); err != nil {
				return err
			}
			if d.Overrides, err = parseParams(overrides, "override"); err != nil {
				return err
			}
			d.Warmup = modelslot.Warmup{Path: warmupPath, Timeout: modelslot.Duration(warmupTimeout), Retries: warmupRetries}
			if warmupStatus != "" {
				for _, s := range strings.Split(warmupStatus, ",") {
					n, err := strconv.Atoi(strings.TrimSpace(s))
					if err != nil {
						return modelslot.Errorf(modelslot.EINVALID, "--warmup-status %q: %q is not an HTTP status", warmupStatus, s)
					}
					d.Warmup.Statuses = append(d.Warmup.Statuses, n)
				}
			}
			if image != "" {
				if d.Settings == nil {
					d.Settings = map[string]string{}
				}
				d.Settings[azure.ImageSetting] = image
			}
			req := modelslot.DeployRequest{Deployment: d, Revision: revision}
			if req.StickySettings, err = parseKV(sticky, "sticky-setting"); err != nil {
				return err
			}
			if revision != "" && (url != "" || command != "") {
				return modelslot.Errorf(modelslot.EINVALID, "--revision redeploys a past revision as it was: do not combine it with --url or --cmd")
			}
			s, err := f.deployAndSay(cmd, c, args[0], req)
			if err != nil {
				return err
			}
			if f.json() {
				return printJSON(cmd.OutOrStdout(), s)
			}
			if img := s.Deployment.Settings[azure.ImageSetting]; f.azure() && img != "" {
				println(cmd.OutOrStdout(), "slot %s now serves %s (image %s, revision %s) at %s", s.Name, firstNonEmpty(s.Deployment.Version, "-"), img, s.Deployment.Revision, s.Deployment.URL)
				return nil
			}
			println(cmd.OutOrStdout(), "slot %s now serves %s (revision %s)", s.Name, firstNonEmpty(s.Deployment.Version, "-"), s.Deployment.Revision)
			return nil
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&url, "url", "", "address of an OpenAI-compatible server, e.g. http://127.0.0.1:8000")
	fl.StringVar(&command, "cmd", "", "command that starts a model server on {port}, supervised by the daemon")
	fl.StringVar(&image, "image", "", "container image of the slot, e.g. myacr.azurecr.io/llm:v2 (--platform azure only)")
	fl.StringVar(&version, "version", "", "version label, e.g. v2")
	fl.StringVar(&revision, "revision", "", "redeploy a past revision of this app")
	fl.StringArrayVar(&settings, "setting", nil, "KEY=VALUE setting that travels with the deployment in a swap (process environment); repeatable")
	fl.StringArrayVar(&sticky, "sticky-setting", nil, "KEY=VALUE setting that stays with the slot in a swap; repeatable")
	fl.StringVar(&warmupPath, "warmup-path", "", "path that must answer before the deployment takes traffic (default /health)")
	fl.StringVar(&warmupStatus, "warmup-status", "", "allowed warm-up statuses, e.g. 200,204 (default any 2xx)")
	fl.DurationVar(&warmupTimeout, "warmup-timeout", 0, "how long to wait for the deployment to become healthy (default 5m)")
	fl.IntVar(&warmupRetries, "warmup-retries", 0, "warm-up pings that must succeed in a swap (default 3)")
	fl.StringVar(&model, "model", "", "the backend's own model id; requests' model field is rewritten to it")
	fl.StringVar(&prompt, "system-prompt", "", "system prompt added to every chat request")
	fl.StringVar(&promptMode, "system-prompt-mode", "", "prepend (default) or replace the client's system messages")
	fl.StringArrayVar(&defaults, "default", nil, "PARAM=JSON sampling default applied when the request does not set it, e.g. temperature=0.2; repeatable")
	fl.StringArrayVar(&overrides, "override", nil, "PARAM=JSON value forced on every request; repeatable")
	fl.StringArrayVar(&headers, "header", nil, "NAME=VALUE header added to upstream requests; repeatable")
	fl.StringArrayVar(&secrets, "secret-header", nil, "NAME=VALUE header whose value is secret (never shown or logged), e.g. api-key=...; repeatable")
	fl.StringArrayVar(&queries, "query", nil, "NAME=VALUE query parameter added upstream, e.g. api-version=2024-10-21; repeatable")
	fl.StringArrayVar(&secretQueries, "secret-query", nil, "NAME=VALUE query parameter whose value is secret (never shown or logged), e.g. key=...; repeatable")
	return cmd
}

// deployProgressEvery is how often deploy says what it waits for.
var deployProgressEvery = 5 * time.Second

// deployAndSay deploys and, while the platform waits for the new
// deployment's health, says every few seconds what it waits for. Stopped
// by Ctrl-C, it says what the slot serves: the deploy ends with the
// command, and the slot keeps its previous deployment.
func (f *clientFlags) deployAndSay(cmd *cobra.Command, c slotPlatform, slot string, req modelslot.DeployRequest) (*modelslot.Slot, error) {
	ctx := cmd.Context()
	errw := cmd.ErrOrStderr()
	timeout := req.Deployment.Warmup.Timeout.D()
	if timeout == 0 {
		timeout = local.DefaultWarmupTimeout
	}
	what := waitingFor(slot, req, f.azure())
	start := time.Now()
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(deployProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				println(errw, "waiting for %s: %v so far, timeout %v", what, time.Since(start).Round(time.Second), timeout)
			}
		}
	}()
	s, err := c.Deploy(ctx, f.app, slot, req)
	close(done)
	<-stopped
	if err == nil || ctx.Err() == nil {
		return s, err
	}
	// Interrupted: the platform stops the deploy with the request.
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	left := fmt.Sprintf("slot %s keeps its previous deployment; see `modelslot status`", slot)
	if st, serr := c.Status(qctx, f.app); serr == nil {
		for _, ss := range st.Slots {
			if ss.Slot.Name != slot {
				continue
			}
			if d := ss.Slot.Deployment; d != nil {
				left = fmt.Sprintf("slot %s still serves %s (revision %s)", slot, firstNonEmpty(d.Version, "-"), d.Revision)
			} else {
				left = fmt.Sprintf("slot %s has no deployment", slot)
			}
		}
	}
	println(errw, "interrupted after %v: the deploy to slot %s stopped before the new version was healthy; %s", time.Since(start).Round(time.Second), slot, left)
	return nil, exitError{code: 130}
}

// waitingFor says what a deploy waits for: the health of which address.
func waitingFor(slot string, req modelslot.DeployRequest, onAzure bool) string {
	d := req.Deployment
	path := firstNonEmpty(d.Warmup.Path, local.DefaultWarmupPath)
	switch {
	case onAzure:
		return fmt.Sprintf("slot %s to answer GET %s on its host name", slot, path)
	case d.URL != "":
		return fmt.Sprintf("the new deployment of slot %s to answer GET %s%s", slot, strings.TrimRight(d.URL, "/"), path)
	case d.Command != "":
		return fmt.Sprintf("the process of slot %s (%s) to start and answer GET %s on the port the daemon gave it", slot, d.Command, path)
	}
	return fmt.Sprintf("revision %s in slot %s to answer GET %s", req.Revision, slot, path)
}

// localOnlyDeployFlags configure the local gateway or process host;
// App Service has no equivalent.
var localOnlyDeployFlags = []string{"url", "cmd", "revision", "warmup-retries", "model", "system-prompt", "system-prompt-mode", "default", "override", "header", "secret-header", "query", "secret-query"}

// checkDeployFlags refuses the flags of the other platform.
func checkDeployFlags(cmd *cobra.Command, onAzure bool) error {
	if !onAzure {
		if cmd.Flags().Changed("image") {
			return modelslot.Errorf(modelslot.EINVALID, "--image applies only to --platform azure: locally, deploy a server with --url or --cmd")
		}
		return nil
	}
	for _, name := range localOnlyDeployFlags {
		if cmd.Flags().Changed(name) {
			return modelslot.Errorf(modelslot.EINVALID, "--%s applies only to the local daemon: on Azure a slot runs a container image (--image) with app settings (--setting, --sticky-setting)", name)
		}
	}
	return nil
}

// parseParams reads PARAM=JSON flags; a value that is not JSON is a string.
func parseParams(kvs []string, flag string) (map[string]any, error) {
	raw, err := parseKV(kvs, flag)
	if err != nil || raw == nil {
		return nil, err
	}
	out := make(map[string]any, len(raw))
	for k, v := range raw {
		var x any
		if json.Unmarshal([]byte(v), &x) != nil {
			x = v
		}
		out[k] = x
	}
	return out, nil
}
