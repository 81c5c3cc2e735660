package main

import (
	"errors"
	"strings"
	"testing"
)

func validConfig() Config {
	c := defaultConfig()
	c.Image = "ghcr.io/example/model-server:v1"
	c.deriveDefaults()
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" means valid
	}{
		{name: "defaults with an image", change: func(*Config) {}},
		{name: "standard tier", change: func(c *Config) { c.SKU = "S1" }},
		{name: "basic tier", change: func(c *Config) { c.SKU = "B1" }, want: "no deployment slots"},
		{name: "free tier", change: func(c *Config) { c.SKU = "F1" }, want: "use S1 (Standard, 5 slots) or P1v3"},
		{name: "isolated tier", change: func(c *Config) { c.SKU = "I1v2" }, want: "App Service Environment"},
		{name: "functions sku", change: func(c *Config) { c.SKU = "EP1" }, want: "not a Linux App Service plan SKU"},
		{name: "image without tag", change: func(c *Config) { c.Image = "ghcr.io/example/model-server" }, want: "image: \"ghcr.io/example/model-server\" has no tag"},
		{name: "staging image with scheme", change: func(c *Config) { c.StagingImage = "https://ghcr.io/x:v1" }, want: "stagingImage: "},
		{
			name: "digest needs a model version",
			change: func(c *Config) {
				c.Image = "ghcr.io/example/model-server@sha256:abc"
				c.ModelVersion, c.StagingImage, c.StagingModelVersion = "", "", ""
				c.deriveDefaults()
			},
			want: "modelVersion: empty",
		},
		{name: "relative health path", change: func(c *Config) { c.HealthCheckPath = "health" }, want: "healthCheckPath"},
		{name: "eviction out of range", change: func(c *Config) { c.HealthCheckEviction = 1 }, want: "healthCheckEvictionMinutes"},
		{name: "relative warm-up path", change: func(c *Config) { c.WarmupPath = "warm" }, want: "warmupPath"},
		{name: "bad warm-up status", change: func(c *Config) { c.WarmupStatuses = "200,ok" }, want: `warmupStatuses: "ok"`},
		{name: "empty warm-up statuses", change: func(c *Config) { c.WarmupStatuses = " " }, want: "warmupStatuses: empty"},
		{name: "port", change: func(c *Config) { c.Port = 70000 }, want: "port: 70000"},
		{name: "start limit", change: func(c *Config) { c.ContainerStartLimit = 3600 }, want: "containerStartTimeLimit"},
		{name: "sticky model version", change: func(c *Config) { c.StickySettings = append(c.StickySettings, "MODEL_VERSION") }, want: "must swap with the image"},
		{name: "managed app setting", change: func(c *Config) { c.AppSettings = map[string]string{"WEBSITES_PORT": "80"} }, want: "appSettings.WEBSITES_PORT: written by this program; set port instead"},
		{name: "empty location", change: func(c *Config) { c.Location = "" }, want: "location: empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	c := validConfig()
	c.SKU, c.Port, c.HealthCheckPath = "B1", 0, "health"
	err := c.Validate()
	var noSlots *noSlotsError
	if !errors.As(err, &noSlots) {
		t.Fatalf("Validate() = %v, want a noSlotsError among the problems", err)
	}
	for _, want := range []string{"sku:", "port:", "healthCheckPath:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, missing %q", err, want)
		}
	}
}

func TestDeriveDefaults(t *testing.T) {
	tests := []struct {
		name                            string
		in                              Config
		wantStagingImage                string
		wantVersion, wantStagingVersion string
		wantWarmup                      string
	}{
		{
			name:               "versions from the tags",
			in:                 Config{Image: "ghcr.io/m/s:v1", StagingImage: "ghcr.io/m/s:v2", HealthCheckPath: "/health"},
			wantStagingImage:   "ghcr.io/m/s:v2",
			wantVersion:        "v1",
			wantStagingVersion: "v2",
			wantWarmup:         "/health",
		},
		{
			name:               "staging follows production",
			in:                 Config{Image: "ghcr.io/m/s:v1", ModelVersion: "7b-2024", HealthCheckPath: "/ready"},
			wantStagingImage:   "ghcr.io/m/s:v1",
			wantVersion:        "7b-2024",
			wantStagingVersion: "7b-2024",
			wantWarmup:         "/ready",
		},
		{
			name:               "explicit values win",
			in:                 Config{Image: "m/s:v1", StagingImage: "m/s:v2", StagingModelVersion: "x", WarmupPath: "/warm"},
			wantStagingImage:   "m/s:v2",
			wantVersion:        "v1",
			wantStagingVersion: "x",
			wantWarmup:         "/warm",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.in
			c.deriveDefaults()
			for _, f := range []struct{ name, got, want string }{
				{"StagingImage", c.StagingImage, tt.wantStagingImage},
				{"ModelVersion", c.ModelVersion, tt.wantVersion},
				{"StagingModelVersion", c.StagingModelVersion, tt.wantStagingVersion},
				{"WarmupPath", c.WarmupPath, tt.wantWarmup},
			} {
				if f.got != f.want {
					t.Errorf("%s = %q, want %q", f.name, f.got, f.want)
				}
			}
		})
	}
}

func TestParseImage(t *testing.T) {
	tests := []struct {
		ref                 string
		wantReg, wantName   string
		wantTag, wantErrSub string
	}{
		{ref: "ghcr.io/example/model-server:v1", wantReg: "https://ghcr.io", wantName: "example/model-server:v1", wantTag: "v1"},
		{ref: "localhost:5000/ms:dev", wantReg: "https://localhost:5000", wantName: "ms:dev", wantTag: "dev"},
		{ref: "localhost/ms:dev", wantReg: "https://localhost", wantName: "ms:dev", wantTag: "dev"},
		{ref: "nginx:1.27", wantReg: "https://index.docker.io", wantName: "nginx:1.27", wantTag: "1.27"},
		{ref: "vllm/vllm-openai:latest", wantReg: "https://index.docker.io", wantName: "vllm/vllm-openai:latest", wantTag: "latest"},
		{ref: "ghcr.io/m/s@sha256:abcd", wantReg: "https://ghcr.io", wantName: "m/s@sha256:abcd"},
		{ref: "ghcr.io/m/s", wantErrSub: "has no tag"},
		{ref: "ghcr.io/m/s:", wantErrSub: "has no tag"},
		{ref: "localhost:5000/ms", wantErrSub: "has no tag"},
		{ref: "", wantErrSub: "empty"},
		{ref: "https://ghcr.io/m/s:v1", wantErrSub: "without a scheme"},
		{ref: "ghcr.io/m/s :v1", wantErrSub: "no spaces"},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			img, err := parseImage(tt.ref)
			if tt.wantErrSub != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrSub) {
					t.Fatalf("parseImage(%q) error = %v, want one containing %q", tt.ref, err, tt.wantErrSub)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseImage(%q) = %v", tt.ref, err)
			}
			if img.registryURL != tt.wantReg || img.name != tt.wantName || img.tag != tt.wantTag {
				t.Errorf("parseImage(%q) = %+v, want registry %q name %q tag %q", tt.ref, img, tt.wantReg, tt.wantName, tt.wantTag)
			}
		})
	}
}
