// Command scan reads one Kubernetes release's own source and prints, as one JSON document on stdout, the
// facts the release delta is derived from: feature gates, each component's flags and metrics, the APIs'
// lifecycle, the kubeadm config API versions and the versions kubeadm installs by default.
//
//	scan -version v1.37.2
//
// The source comes from the go command's configured module proxy (`go mod download`): k8s.io/kubernetes at
// the version, and its staging modules (k8s.io/api, k8s.io/apiserver, ...) at v0.<minor>.<patch>, each fetched
// only when a scanned package imports it. Nothing is built: files are selected with go/build's constraints
// for linux/amd64 without cgo (how the release builds its server binaries), read with go/parser and
// type-checked with go/types.
//
// A component is the code its command (cmd/kube-apiserver, ...) can run: reach.go follows references from
// main through the type-checked packages of k8s.io/kubernetes and its staging modules. Third-party modules
// are not read, so their flags and metrics are not seen (docs/release-delta.md).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

const kubernetesModule = "k8s.io/kubernetes"

// The components whose flags, gates and metrics the delta covers, and the command each is built from.
var commands = []struct{ component, pkg string }{
	{"kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"},
	{"kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager"},
	{"kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler"},
	{"kubelet", "k8s.io/kubernetes/cmd/kubelet"},
	{"kube-proxy", "k8s.io/kubernetes/cmd/kube-proxy"},
}

// sources maps module paths to local directories read instead of downloading (tests give a small tree).
type sources map[string]string

func (s sources) String() string { return fmt.Sprint(map[string]string(s)) }
func (s sources) Set(v string) error {
	module, dir, ok := strings.Cut(v, "=")
	if !ok || module == "" || dir == "" {
		return errors.New("want MODULE=DIR")
	}
	s[module] = dir
	return nil
}

var (
	local = sources{}
	debug = flag.Bool("debug", false, "print what could not be resolved to stderr")
	why   = flag.String("why", "", "print how each component reaches this flag, gate or metric name (to stderr)")
)

func main() {
	version := flag.String("version", "", "the k8s.io/kubernetes version to read, e.g. v1.37.2")
	flag.Var(local, "source", "MODULE=DIR: read MODULE from DIR instead of downloading it (repeatable; for tests)")
	flag.Parse()
	if !regexp.MustCompile(`^v1\.\d+\.\d+(-[0-9A-Za-z.]+)?$`).MatchString(*version) {
		fmt.Fprintln(os.Stderr, "scan: -version must be a k8s.io/kubernetes version such as v1.37.2")
		os.Exit(2)
	}
	facts, err := scan(*version)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scan:", err)
		os.Exit(1)
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", " ")
	if err := out.Encode(facts); err != nil {
		fmt.Fprintln(os.Stderr, "scan:", err)
		os.Exit(1)
	}
}

// Facts is everything read from one release; the Python side derives the deltas between releases from it.
type Facts struct {
	Version    string               `json:"version"`
	Components map[string]Component `json:"components"`
	Gates      []Gate               `json:"gates"`
	Metrics    []Metric             `json:"metrics"`
	APIs       []API                `json:"apis"`
	Kubeadm    Kubeadm              `json:"kubeadm"`
}

// Component is what one command's dependency set registers.
type Component struct {
	Packages        int      `json:"packages"`     // in its dependency set
	Declarations    int      `json:"declarations"` // functions and package variables reachable from main
	Flags           []Flag   `json:"flags"`
	UnresolvedFlags int      `json:"unresolvedFlags"` // registrations whose name is computed at run time
	Gates           []string `json:"gates"`
	Metrics         []string `json:"metrics"`
}

func scan(kubeVersion string) (*Facts, error) {
	l, err := newLoader(kubeVersion)
	if err != nil {
		return nil, err
	}
	facts := &Facts{Version: kubeVersion, Components: map[string]Component{}, Gates: []Gate{}, Metrics: []Metric{}}
	gates := map[string]*Gate{}
	metrics := map[string]*Metric{}
	for _, command := range commands {
		reached, err := l.reach(command.pkg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", command.component, err)
		}
		component := Component{Packages: reached.packages, Declarations: len(reached.decls), Flags: []Flag{}}
		flags := map[string]*Flag{}
		gateNames := map[string]bool{}
		metricNames := map[string]bool{}
		for _, d := range reached.decls {
			component.UnresolvedFlags += l.flags(d, flags)
			for _, g := range l.gates(d) {
				gateNames[g.Name] = true
				mergeGate(gates, g)
			}
			for _, m := range l.metrics(d) {
				if m.Name == *why {
					fmt.Fprintf(os.Stderr, "%s: metric %s\n", command.component, m.Name)
					l.why(d)
				}
				metricNames[m.Name] = true
				mergeMetric(metrics, m)
			}
		}
		for _, f := range flags {
			component.Flags = append(component.Flags, *f)
		}
		sort.Slice(component.Flags, func(i, j int) bool { return component.Flags[i].Name < component.Flags[j].Name })
		component.Gates = sortedKeys(gateNames)
		component.Metrics = sortedKeys(metricNames)
		facts.Components[command.component] = component
	}
	for _, name := range sortedKeys(gates) {
		facts.Gates = append(facts.Gates, *gates[name])
	}
	for _, name := range sortedKeys(metrics) {
		facts.Metrics = append(facts.Metrics, *metrics[name])
	}
	if facts.APIs, err = l.apis(); err != nil {
		return nil, err
	}
	if facts.Kubeadm, err = l.kubeadm(); err != nil {
		return nil, err
	}
	return facts, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m)) // never nil: an empty list is [] in the JSON
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// --- reading the source ----------------------------------------------------------------------------------

type loader struct {
	stagingVersion string            // v0.37.2 for v1.37.2
	staging        map[string]bool   // module paths of the staging modules (k8s.io/api, ...)
	dirs           map[string]string // module path → its directory in the module cache
	ctx            build.Context
	fset           *token.FileSet
	pkgs           map[string]*pkg           // import path → package (nil: not in a module read here, or no Go files)
	fakes          map[string]*types.Package // the empty packages every other import path stands for
	funcs          map[*types.Func]*decl     // every function and method of the packages type-checked
	vars           map[*types.Var]*decl      // every package variable of the packages type-checked
	parent         map[*decl]*decl           // how each declaration was reached (the last command's)
	failed         error                     // a package that could not be read while type-checking
}

type pkg struct {
	path  string
	dir   string
	files []*file
	deps  []string // imports inside the modules read here
	names map[string]*named
	types *types.Package
	info  *types.Info
	roots []*decl // init functions and blank variables: they run whenever the package is linked
}

type file struct {
	ast     *ast.File
	imports map[string]string // local name → import path
}

// named is a package-level constant or variable with a single value: what names and keys resolve through.
type named struct {
	value ast.Expr
	file  *file
}

var replaceStaging = regexp.MustCompile(`(?m)^\s*(k8s\.io/[A-Za-z0-9._/-]+)\s*=>\s*\./staging/src/`)

func newLoader(kubeVersion string) (*loader, error) {
	dir, err := download(kubernetesModule, kubeVersion)
	if err != nil {
		return nil, err
	}
	goMod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return nil, err
	}
	staging := map[string]bool{}
	for _, m := range replaceStaging.FindAllSubmatch(goMod, -1) {
		staging[string(m[1])] = true
	}
	if len(staging) == 0 {
		return nil, errors.New("go.mod of k8s.io/kubernetes names no staging module")
	}
	ctx := build.Default
	ctx.GOOS, ctx.GOARCH, ctx.CgoEnabled = "linux", "amd64", false
	ctx.BuildTags, ctx.ToolTags = nil, nil
	// Every go1.N release tag: files are chosen as the newest Go would choose them, whatever Go runs this
	// (the output must not depend on the machine that regenerates it).
	ctx.ReleaseTags = nil
	for minor := 1; minor <= 99; minor++ {
		ctx.ReleaseTags = append(ctx.ReleaseTags, fmt.Sprintf("go1.%d", minor))
	}
	return &loader{
		stagingVersion: "v0." + strings.TrimPrefix(kubeVersion, "v1."),
		staging:        staging,
		dirs:           map[string]string{kubernetesModule: dir},
		ctx:            ctx,
		fset:           token.NewFileSet(),
		pkgs:           map[string]*pkg{},
		fakes:          map[string]*types.Package{},
		funcs:          map[*types.Func]*decl{},
		vars:           map[*types.Var]*decl{},
		parent:         map[*decl]*decl{},
	}, nil
}

// download fetches module@version through the go command (its proxy, checksum database and cache) and
// returns the module's directory. GOTOOLCHAIN=auto: a release whose go.mod needs a newer Go makes the go
// command fetch that toolchain instead of refusing.
func download(module, version string) (string, error) {
	if dir, ok := local[module]; ok {
		return dir, nil
	}
	cmd := exec.Command("go", "mod", "download", "-json", module+"@"+version)
	cmd.Dir = os.TempDir() // outside any module
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=auto", "GOWORK=off", "GO111MODULE=on")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var answer struct{ Dir, Error string }
	if err := json.Unmarshal(stdout.Bytes(), &answer); err != nil || answer.Error != "" || answer.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %s %s %v", module, version, answer.Error,
			strings.TrimSpace(stderr.String()), runErr)
	}
	return answer.Dir, nil
}

// module is the module an import path belongs to ("" when it is not read here).
func (l *loader) module(path string) string {
	if path == kubernetesModule || strings.HasPrefix(path, kubernetesModule+"/") {
		return kubernetesModule
	}
	best := ""
	for m := range l.staging {
		if (path == m || strings.HasPrefix(path, m+"/")) && len(m) > len(best) {
			best = m
		}
	}
	return best
}

// load reads one package (nil when it is outside the modules read here or has no Go file for linux/amd64).
func (l *loader) load(path string) (*pkg, error) {
	if p, seen := l.pkgs[path]; seen {
		return p, nil
	}
	l.pkgs[path] = nil
	module := l.module(path)
	if module == "" {
		return nil, nil
	}
	root, ok := l.dirs[module]
	if !ok {
		dir, err := download(module, l.stagingVersion)
		if err != nil {
			return nil, err
		}
		l.dirs[module], root = dir, dir
	}
	dir := filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(strings.TrimPrefix(path, module), "/")))
	bp, err := l.ctx.ImportDir(dir, 0)
	var noGo *build.NoGoError
	if errors.As(err, &noGo) || os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p := &pkg{path: path, dir: dir, names: map[string]*named{}}
	for _, name := range bp.GoFiles {
		parsed, err := parser.ParseFile(l.fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		f := &file{ast: parsed, imports: map[string]string{}}
		for _, spec := range parsed.Imports {
			target := strings.Trim(spec.Path.Value, `"`)
			local := target[strings.LastIndex(target, "/")+1:]
			if spec.Name != nil {
				local = spec.Name.Name
			}
			f.imports[local] = target
		}
		p.files = append(p.files, f)
		collectNames(p, f)
	}
	for _, imported := range bp.Imports {
		if l.module(imported) != "" {
			p.deps = append(p.deps, imported)
		}
	}
	l.pkgs[path] = p
	return p, nil
}

// collectNames records the package-level constants and variables that have exactly one value.
func collectNames(p *pkg, f *file) {
	for _, decl := range f.ast.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || (gen.Tok != token.CONST && gen.Tok != token.VAR) {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			if len(vs.Values) != len(vs.Names) {
				continue
			}
			for i, name := range vs.Names {
				p.names[name.Name] = &named{value: vs.Values[i], file: f}
			}
		}
	}
}

// inspect visits every node of every file of a package with the file it is in.
func inspect(p *pkg, visit func(f *file, n ast.Node) bool) {
	for _, f := range p.files {
		ast.Inspect(f.ast, func(n ast.Node) bool { return visit(f, n) })
	}
}

// --- constant strings ------------------------------------------------------------------------------------

// str resolves an expression to a constant string: literals, package-level constants and single-value
// variables (also of another package read here), concatenations, and conversions to string types.
func (l *loader) str(p *pkg, f *file, e ast.Expr) (string, bool) {
	return l.strDepth(p, f, e, 0)
}

func (l *loader) strDepth(p *pkg, f *file, e ast.Expr, depth int) (string, bool) {
	if depth > 16 || e == nil {
		return "", false
	}
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		return unquote(e.Value)
	case *ast.ParenExpr:
		return l.strDepth(p, f, e.X, depth+1)
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		left, ok := l.strDepth(p, f, e.X, depth+1)
		if !ok {
			return "", false
		}
		right, ok := l.strDepth(p, f, e.Y, depth+1)
		return left + right, ok
	case *ast.Ident:
		if n := p.names[e.Name]; n != nil {
			return l.strDepth(p, n.file, n.value, depth+1)
		}
	case *ast.SelectorExpr:
		if other, n := l.imported(f, e); n != nil {
			return l.strDepth(other, n.file, n.value, depth+1)
		}
	case *ast.CallExpr: // a conversion: string(x), featuregate.Feature("X"), Feature(x)
		if len(e.Args) == 1 && isConversion(e.Fun) {
			return l.strDepth(p, f, e.Args[0], depth+1)
		}
	}
	return "", false
}

func isConversion(fun ast.Expr) bool {
	switch fun := fun.(type) {
	case *ast.Ident:
		return fun.Name == "string" || fun.Name == "Feature"
	case *ast.SelectorExpr:
		return fun.Sel.Name == "Feature"
	}
	return false
}

// imported resolves pkg.Name through a file's imports to that package's constant or variable.
func (l *loader) imported(f *file, e *ast.SelectorExpr) (*pkg, *named) {
	x, ok := e.X.(*ast.Ident)
	if !ok {
		return nil, nil
	}
	path, ok := f.imports[x.Name]
	if !ok {
		return nil, nil
	}
	other, err := l.load(path)
	if err != nil || other == nil {
		return nil, nil
	}
	return other, other.names[e.Sel.Name]
}

// importPath is the import path a qualifier names in a file ("" when it is no import).
func importPath(f *file, e ast.Expr) string {
	if x, ok := e.(*ast.Ident); ok {
		return f.imports[x.Name]
	}
	return ""
}

func unquote(lit string) (string, bool) {
	s, err := strconv.Unquote(lit)
	return s, err == nil
}

// entry is an element of a map literal whose key is a constant string.
type entry struct {
	key   string
	value ast.Expr
}

// entries are the elements of a map literal with a constant string key (the others are left out).
func (l *loader) entries(p *pkg, f *file, lit *ast.CompositeLit) []entry {
	var out []entry
	for _, elt := range lit.Elts {
		if kv, ok := elt.(*ast.KeyValueExpr); ok {
			if key, ok := l.str(p, f, kv.Key); ok {
				out = append(out, entry{key, kv.Value})
			}
		}
	}
	return out
}

// fieldName is the key of a keyed composite-literal element ("" when unkeyed).
func fieldName(e ast.Expr) (string, ast.Expr) {
	kv, ok := e.(*ast.KeyValueExpr)
	if !ok {
		return "", nil
	}
	key, ok := kv.Key.(*ast.Ident)
	if !ok {
		return "", nil
	}
	return key.Name, kv.Value
}

// typeName is the last name of a type expression: featuregate.VersionedSpecs → VersionedSpecs.
func typeName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return e.Sel.Name
	case *ast.StarExpr:
		return typeName(e.X)
	}
	return ""
}
