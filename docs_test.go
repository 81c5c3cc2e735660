package modelslot_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	// repoPath is a file of the repository named in prose or code:
	// docs/CONFIG.md, examples/plan-canary.yaml, scripts/release.sh.
	repoPath = regexp.MustCompile(`\b((?:docs|examples|scripts|bench|deploy|\.ci)/[A-Za-z0-9_./-]*[A-Za-z0-9_])`)
	outside  = regexp.MustCompile(`\.\./shared|\bshared/[A-Z]`)
)

// TestDocsLinks checks that every Markdown file links only to files in the
// repository: relative links resolve, every path named in the text (a
// doc, an example, a script) exists, and nothing points outside the project.
func TestDocsLinks(t *testing.T) {
	var files []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && p != "." || d.Name() == "out" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("found %d Markdown files, want the README and docs/", len(files))
	}
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "#") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			link, _, _ = strings.Cut(link, "#")
			if !exists(filepath.Join(filepath.Dir(f), link)) {
				t.Errorf("%s: link %q: no such file in the repository", f, m[1])
			}
		}
		for _, m := range repoPath.FindAllStringSubmatch(text, -1) {
			p := strings.TrimRight(m[1], ".")
			if strings.ContainsAny(p, "*{<") || strings.HasSuffix(p, "/") {
				continue
			}
			if !exists(p) && !exists(filepath.Join(filepath.Dir(f), p)) {
				t.Errorf("%s: names %s, which is not in the repository", f, p)
			}
		}
		if loc := outside.FindStringIndex(text); loc != nil {
			t.Errorf("%s: points outside the project: %q", f, text[loc[0]:min(len(text), loc[1]+20)])
		}
	}
}

// TestCIRunsTheReadmeCommands keeps .ci/run running exactly the test
// command the README gives, and the demo command without cgo.
func TestCIRunsTheReadmeCommands(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile(".ci/run")
	if err != nil {
		t.Fatal(err)
	}
	var demo, test string
	for _, line := range strings.Split(string(readme), "\n") {
		cmd, _, _ := strings.Cut(line, "#")
		cmd = strings.TrimSpace(cmd)
		switch {
		case demo == "" && strings.HasPrefix(cmd, "go run ./cmd/modelslot demo"):
			demo = cmd
		case test == "" && strings.HasPrefix(cmd, "go test -race"):
			test = cmd
		}
	}
	if demo == "" || test == "" {
		t.Fatalf("README: demo command %q, test command %q: want both at the top", demo, test)
	}
	lines := strings.Split(string(ci), "\n")
	has := func(want string) bool {
		for _, l := range lines {
			if strings.TrimSpace(l) == want {
				return true
			}
		}
		return false
	}
	if !has(test) {
		t.Errorf(".ci/run does not run the README's test command as a line of its own: %q", test)
	}
	if !has("CGO_ENABLED=0 " + demo) {
		t.Errorf(".ci/run does not run the README's demo command with CGO_ENABLED=0: %q", demo)
	}
}
