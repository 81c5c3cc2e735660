package main

import (
	"strings"
	"testing"
)

// TestCLINeverShowsSecrets deploys with a secret header and a secret query
// parameter and checks that no command shows either, as a table or as
// JSON, while the JSON still shows that they are set.
func TestCLINeverShowsSecrets(t *testing.T) {
	const secretH, secretQ = "sk-cli-5ecre7-header", "AIza-cli-5ecre7-query"
	d := startDaemon(t)
	backend := startSim(t)
	mustRun(t, args("slot create staging", d)...)
	deploy := "deploy staging --url " + backend + " --version v2 --secret-header api-key=" + secretH +
		" --secret-query key=" + secretQ + " --query api-version=2024-10-21"
	outputs := map[string]string{"deploy": mustRun(t, args(deploy, d)...)}
	outputs["deploy -o json"] = mustRun(t, args(deploy+" -o json", d)...)
	for _, c := range []string{"status", "slot list", "traffic show", "swap --history"} {
		for _, o := range []string{"", " -o json"} {
			outputs[c+o] = mustRun(t, args(c+o, d)...)
		}
	}
	for name, out := range outputs {
		if strings.Contains(out, secretH) || strings.Contains(out, secretQ) {
			t.Errorf("modelslot %s shows a secret:\n%s", name, out)
		}
	}
	j := outputs["deploy -o json"]
	for _, want := range []string{`"api-key": "[redacted]"`, `"key": "[redacted]"`, `"api-version": "2024-10-21"`, `"secretQuery": [`} {
		if !strings.Contains(j, want) {
			t.Errorf("deploy -o json has no %s:\n%s", want, j)
		}
	}
}
