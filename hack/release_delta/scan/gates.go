package main

import (
	"go/ast"
	"strconv"
	"strings"
)

// Spec is one entry of a gate's versioned specs (featuregate.VersionedSpecs), or its only spec
// (featuregate.FeatureSpec, whose Version is "").
type Spec struct {
	Version       string `json:"version"`
	Default       bool   `json:"default"`
	PreRelease    string `json:"preRelease"`
	LockToDefault bool   `json:"lockToDefault"`
}

// Gate is a feature gate and the specs a Kubernetes binary uses for it.
type Gate struct {
	Name    string `json:"name"`
	Package string `json:"package"` // the package whose map literal gave the specs
	Specs   []Spec `json:"specs"`
}

// gates finds the map literals of type map[<gate>]VersionedSpecs or map[<gate>]FeatureSpec in a package:
// the tables every featuregate.Add/AddVersioned call registers (kube_features.go and its kind elsewhere).
func (l *loader) gates(d *decl) []Gate {
	p := d.pkg
	var out []Gate
	f := d.file
	ast.Inspect(d.node, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		m, ok := lit.Type.(*ast.MapType)
		if !ok {
			return true
		}
		value := typeName(m.Value)
		if value != "VersionedSpecs" && value != "FeatureSpec" {
			return true
		}
		for _, e := range l.entries(p, f, lit) {
			gate := Gate{Name: e.key, Package: p.path}
			if value == "FeatureSpec" {
				gate.Specs = []Spec{l.spec(p, f, e.value)}
			} else if list, ok := e.value.(*ast.CompositeLit); ok {
				for _, item := range list.Elts {
					gate.Specs = append(gate.Specs, l.spec(p, f, item))
				}
			}
			out = append(out, gate)
		}
		return false
	})
	return out
}

func (l *loader) spec(p *pkg, f *file, e ast.Expr) Spec {
	spec := Spec{PreRelease: "GA"} // featuregate.GA is the empty prerelease
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return spec
	}
	for _, elt := range lit.Elts {
		field, value := fieldName(elt)
		switch field {
		case "Version":
			spec.Version = l.minor(p, f, value)
		case "Default":
			spec.Default = isTrue(value)
		case "LockToDefault":
			spec.LockToDefault = isTrue(value)
		case "PreRelease":
			if name := typeName(value); name != "" {
				spec.PreRelease = name
			}
		}
	}
	return spec
}

// minor reads version.MustParse("1.33") and version.MajorMinor(1, 33) as "1.33".
func (l *loader) minor(p *pkg, f *file, e ast.Expr) string {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return ""
	}
	switch typeName(call.Fun) {
	case "MustParse", "MustParseGeneric", "MustParseSemantic":
		if len(call.Args) == 1 {
			text, _ := l.str(p, f, call.Args[0])
			return text
		}
	case "MajorMinor":
		if len(call.Args) == 2 {
			major, minor := intLit(call.Args[0]), intLit(call.Args[1])
			if major >= 0 && minor >= 0 {
				return strconv.Itoa(major) + "." + strconv.Itoa(minor)
			}
		}
	}
	return ""
}

func intLit(e ast.Expr) int {
	if lit, ok := e.(*ast.BasicLit); ok {
		if n, err := strconv.Atoi(lit.Value); err == nil {
			return n
		}
	}
	return -1
}

func isTrue(e ast.Expr) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == "true"
}

// mergeGate keeps one entry per gate: the specs of k8s.io/kubernetes's own table when it lists the gate
// (kube_features.go restates the generic gates it overrides), else the first table's.
func mergeGate(gates map[string]*Gate, g Gate) {
	have, ok := gates[g.Name]
	if !ok || (!strings.HasPrefix(have.Package, kubernetesModule+"/") && strings.HasPrefix(g.Package, kubernetesModule+"/")) {
		gates[g.Name] = &g
	}
}
