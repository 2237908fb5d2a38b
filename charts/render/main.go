// Command render renders a Helm chart the way `helm template` does, for the
// subset of Helm a chart of this repository uses, where no helm binary is
// available (the tests' CI box): Go's text/template with the sprig function
// library (Debian's golang-github-masterminds-sprig-dev, the library Helm
// itself uses) plus Helm's own functions (include, tpl, required, toYaml,
// fromYaml, toJson, lookup), and the built-in objects .Values, .Release,
// .Chart, .Capabilities and .Files.
//
// Values are read like Helm reads them: YAML turned into JSON types (every
// number a float64, maps with string keys), the chart's values.yaml
// coalesced with each -f file in order (maps merge, anything else
// replaces, null removes a default). Templates that render only whitespace
// are left out, partials (_*.tpl) are not rendered, and "<no value>" is
// replaced by "" as Helm does. values.schema.json is NOT checked here: the
// Rust test checks values with the jsonschema crate.
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o render ./charts/render
//	render -chart charts/kuberaft-operator -name kuberaft-operator -namespace kuberaft-system [-f values.yaml]... [-notes]
//
// Output: every rendered manifest after a "---" line and a
// "# Source: <chart>/templates/<file>" comment (crds/ files first, as Helm
// installs them), or with -notes only the rendered NOTES.txt.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v2"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// Files is .Files: the chart's files by path relative to the chart.
type Files map[string][]byte

func (f Files) Get(name string) string { return string(f[name]) }

func (f Files) GetBytes(name string) []byte { return f[name] }

// Glob returns the files matching a shell pattern, as a Files.
func (f Files) Glob(pattern string) Files {
	out := Files{}
	for name, data := range f {
		if ok, _ := path.Match(pattern, name); ok {
			out[name] = data
		}
	}
	return out
}

// APIVersions is .Capabilities.APIVersions.
type APIVersions []string

func (a APIVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "render: "+format+"\n", args...)
	os.Exit(1)
}

// jsonTypes turns what yaml.v2 decodes into what Helm's values hold.
func jsonTypes(v interface{}) (interface{}, error) {
	switch x := v.(type) {
	case map[interface{}]interface{}:
		m := map[string]interface{}{}
		for k, val := range x {
			c, err := jsonTypes(val)
			if err != nil {
				return nil, err
			}
			m[fmt.Sprint(k)] = c
		}
		return m, nil
	case []interface{}:
		out := make([]interface{}, len(x))
		for i, val := range x {
			c, err := jsonTypes(val)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case int:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	default:
		return v, nil
	}
}

func readYAML(data []byte) (map[string]interface{}, error) {
	var raw interface{}
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return map[string]interface{}{}, nil
	}
	v, err := jsonTypes(raw)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("top level is not a map")
	}
	return m, nil
}

// coalesce merges src over dst like Helm's value overrides.
func coalesce(dst, src map[string]interface{}) {
	for k, sv := range src {
		if sv == nil {
			delete(dst, k)
			continue
		}
		sm, sIsMap := sv.(map[string]interface{})
		dm, dIsMap := dst[k].(map[string]interface{})
		if sIsMap && dIsMap {
			coalesce(dm, sm)
		} else {
			dst[k] = sv
		}
	}
}

func toYAML(v interface{}) string {
	// Helm goes through JSON (sigs.k8s.io/yaml); so do we, which also
	// sorts map keys.
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var generic interface{}
	if err := yaml.Unmarshal(j, &generic); err != nil {
		return ""
	}
	out, err := yaml.Marshal(generic)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

func main() {
	chartDir := flag.String("chart", "", "the chart's directory")
	name := flag.String("name", "", "the release name")
	namespace := flag.String("namespace", "default", "the release namespace")
	notes := flag.Bool("notes", false, "print only the rendered NOTES.txt")
	kubeVersion := flag.String("kube-version", "v1.33.0", "the Kubernetes version of .Capabilities")
	var apiVersions valueFiles
	flag.Var(&apiVersions, "api-versions", "an API version of .Capabilities.APIVersions (repeatable)")
	var overrides valueFiles
	flag.Var(&overrides, "f", "a values file over the chart's values.yaml (repeatable)")
	flag.Parse()
	if *chartDir == "" || *name == "" {
		fail("give -chart <dir> and -name <release>")
	}

	files := Files{}
	err := filepath.Walk(*chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(*chartDir, p)
		data, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		fail("reading the chart: %v", err)
	}
	chartYAML, err := readYAML(files["Chart.yaml"])
	if err != nil {
		fail("Chart.yaml: %v", err)
	}
	chart := map[string]interface{}{}
	for k, v := range chartYAML {
		// Helm exposes Chart.yaml's fields capitalized: .Chart.Name, .Chart.AppVersion.
		chart[strings.ToUpper(k[:1])+k[1:]] = v
	}
	chartName, _ := chart["Name"].(string)
	values, err := readYAML(files["values.yaml"])
	if err != nil {
		fail("values.yaml: %v", err)
	}
	for _, f := range overrides {
		data, err := os.ReadFile(f)
		if err != nil {
			fail("%v", err)
		}
		over, err := readYAML(data)
		if err != nil {
			fail("%s: %v", f, err)
		}
		coalesce(values, over)
	}
	version := strings.TrimPrefix(*kubeVersion, "v")
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		fail("-kube-version %q is not like v1.33.0", *kubeVersion)
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": *name, "Namespace": *namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": chart,
		"Files": files,
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{
				"Version": "v" + version, "GitVersion": "v" + version,
				"Major": parts[0], "Minor": parts[1],
			},
			"APIVersions": append(APIVersions{"v1", "apps/v1", "policy/v1", "rbac.authorization.k8s.io/v1"}, apiVersions...),
		},
		"Template": map[string]interface{}{"BasePath": chartName + "/templates"},
	}

	root := template.New("chart")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYAML
	funcs["toJson"] = func(v interface{}) string { j, _ := json.Marshal(v); return string(j) }
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m, err := readYAML([]byte(s))
		if err != nil {
			return map[string]interface{}{"Error": err.Error()}
		}
		return m
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, fmt.Errorf(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, fmt.Errorf(msg)
		}
		return v, nil
	}
	funcs["lookup"] = func(string, string, string, string) map[string]interface{} {
		return map[string]interface{}{}
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return strings.ReplaceAll(buf.String(), "<no value>", ""), err
	}
	root.Funcs(funcs).Option("missingkey=zero")

	var names []string
	for f := range files {
		if strings.HasPrefix(f, "templates/") {
			names = append(names, f)
		}
	}
	sort.Strings(names)
	for _, f := range names {
		if _, err := root.New(chartName + "/" + f).Parse(string(files[f])); err != nil {
			fail("%v", err)
		}
	}
	render := func(f string) string {
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, chartName+"/"+f, top); err != nil {
			fail("%v", err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	if *notes {
		fmt.Print(render("templates/NOTES.txt"))
		return
	}
	var crds []string
	for f := range files {
		if strings.HasPrefix(f, "crds/") {
			crds = append(crds, f)
		}
	}
	sort.Strings(crds)
	for _, f := range crds {
		fmt.Printf("---\n# Source: %s/%s\n%s", chartName, f, strings.TrimPrefix(string(files[f]), "---\n"))
	}
	for _, f := range names {
		base := path.Base(f)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		out := render(f)
		if strings.TrimSpace(out) == "" {
			continue
		}
		fmt.Printf("---\n# Source: %s/%s\n%s\n", chartName, f, strings.TrimSpace(out))
	}
}
