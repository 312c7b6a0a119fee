package main

import (
	"go/ast"
	"go/token"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

const apiModule = "k8s.io/api"

// API is a kind of k8s.io/api with the lifecycle its prerelease-lifecycle-gen markers generate
// (zz_generated.prerelease-lifecycle.go: APILifecycleIntroduced/Deprecated/Removed/Replacement).
type API struct {
	Group       string `json:"group"`
	Version     string `json:"version"`
	Kind        string `json:"kind"`
	Introduced  string `json:"introduced,omitempty"`
	Deprecated  string `json:"deprecated,omitempty"`
	Removed     string `json:"removed,omitempty"`
	Replacement string `json:"replacement,omitempty"` // group/version Kind
}

func (l *loader) apis() ([]API, error) {
	if _, err := l.load(apiModule + "/core/v1"); err != nil { // downloads k8s.io/api if no command did
		return nil, err
	}
	root := l.dirs[apiModule]
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "zz_generated.prerelease-lifecycle.go" {
			dirs = append(dirs, filepath.Dir(p))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(dirs)
	out := []API{}
	for _, dir := range dirs {
		rel, _ := filepath.Rel(root, dir)
		p, err := l.load(apiModule + "/" + filepath.ToSlash(rel))
		if err != nil || p == nil {
			return nil, err
		}
		group := ""
		if n := p.names["GroupName"]; n != nil {
			group, _ = l.str(p, n.file, n.value)
		}
		byKind := map[string]*API{}
		for _, f := range p.files {
			if filepath.Base(l.fset.File(f.ast.Pos()).Name()) != "zz_generated.prerelease-lifecycle.go" {
				continue
			}
			for _, decl := range f.ast.Decls {
				l.lifecycle(p, f, decl, group, path.Base(filepath.ToSlash(rel)), byKind)
			}
		}
		for _, kind := range sortedKeys(byKind) {
			if base, isList := strings.CutSuffix(kind, "List"); isList && byKind[base] != nil {
				continue // the list type of a kind
			}
			out = append(out, *byKind[kind])
		}
	}
	return out, nil
}

func (l *loader) lifecycle(p *pkg, f *file, decl ast.Decl, group, version string, byKind map[string]*API) {
	fn, ok := decl.(*ast.FuncDecl)
	if !ok || fn.Recv == nil || len(fn.Recv.List) != 1 || fn.Body == nil || len(fn.Body.List) != 1 {
		return
	}
	kind := typeName(fn.Recv.List[0].Type)
	ret, ok := fn.Body.List[0].(*ast.ReturnStmt)
	if kind == "" || !ok {
		return
	}
	api := byKind[kind]
	if api == nil {
		api = &API{Group: group, Version: version, Kind: kind}
		byKind[kind] = api
	}
	switch fn.Name.Name {
	case "APILifecycleIntroduced":
		api.Introduced = majorMinor(ret)
	case "APILifecycleDeprecated":
		api.Deprecated = majorMinor(ret)
	case "APILifecycleRemoved":
		api.Removed = majorMinor(ret)
	case "APILifecycleReplacement":
		if len(ret.Results) == 1 {
			if lit, ok := ret.Results[0].(*ast.CompositeLit); ok {
				fields := map[string]string{}
				for _, elt := range lit.Elts {
					name, value := fieldName(elt)
					fields[name], _ = l.str(p, f, value)
				}
				api.Replacement = strings.TrimPrefix(fields["Group"]+"/"+fields["Version"], "/") + " " + fields["Kind"]
			}
		}
	}
}

// majorMinor reads `return 1, 25` as "1.25".
func majorMinor(ret *ast.ReturnStmt) string {
	if len(ret.Results) != 2 {
		return ""
	}
	var parts []string
	for _, r := range ret.Results {
		lit, ok := r.(*ast.BasicLit)
		if !ok || lit.Kind != token.INT {
			return ""
		}
		if _, err := strconv.Atoi(lit.Value); err != nil {
			return ""
		}
		parts = append(parts, lit.Value)
	}
	return parts[0] + "." + parts[1]
}
