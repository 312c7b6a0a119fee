package main

import (
	"fmt"
	"go/ast"
	"path"
	"sort"
	"strings"
)

const kubeadmApp = "k8s.io/kubernetes/cmd/kubeadm/app"

// Kubeadm is what kubeadm of the release accepts and installs.
type Kubeadm struct {
	APIVersions []KubeadmAPI      `json:"apiVersions"` // the config API versions it reads
	Gates       []KubeadmGate     `json:"gates"`       // ClusterConfiguration.featureGates it knows
	Defaults    map[string]string `json:"defaults"`    // etcd, coredns, pause: the versions it installs
}

// KubeadmAPI is a config API version kubeadm reads: "served", "deprecated" (read with a warning) or
// "experimental" (read only with --allow-experimental-api).
type KubeadmAPI struct {
	Version string `json:"version"` // kubeadm.k8s.io/v1beta4
	Status  string `json:"status"`
}

// KubeadmGate is one of kubeadm's own feature gates (features.InitFeatureGates).
type KubeadmGate struct {
	Name       string `json:"name"`
	Spec       Spec   `json:"spec"`
	Deprecated bool   `json:"deprecated"`
}

func (l *loader) kubeadm() (Kubeadm, error) {
	k := Kubeadm{Defaults: map[string]string{}}
	apis, err := l.load(kubeadmApp + "/apis/kubeadm")
	scheme, err2 := l.load(kubeadmApp + "/apis/kubeadm/scheme")
	config, err3 := l.load(kubeadmApp + "/util/config")
	constants, err4 := l.load(kubeadmApp + "/constants")
	features, err5 := l.load(kubeadmApp + "/features")
	for _, e := range []error{err, err2, err3, err4, err5} {
		if e != nil {
			return k, e
		}
	}
	if apis == nil || scheme == nil || config == nil || constants == nil || features == nil {
		return k, fmt.Errorf("kubeadm's packages are not where they were (%s)", kubeadmApp)
	}
	group := ""
	if n := apis.names["GroupName"]; n != nil {
		group, _ = l.str(apis, n.file, n.value)
	}
	// The versions its scheme registers, less those validateSupportedVersion refuses ("old").
	registered := map[string]string{}
	inspect(scheme, func(f *file, n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok && typeName(call.Fun) == "AddToScheme" {
			sel, _ := call.Fun.(*ast.SelectorExpr)
			if sel == nil {
				return true
			}
			if target := importPath(f, sel.X); strings.HasPrefix(target, kubeadmApp+"/apis/kubeadm/v") {
				registered[group+"/"+path.Base(target)] = "served"
			}
		}
		return true
	})
	lists := l.supportMatrix(config)
	for _, version := range sortedKeys(registered) {
		switch {
		case lists["oldKnownAPIVersions"][version]:
			continue
		case lists["experimentalAPIVersions"][version]:
			registered[version] = "experimental"
		case lists["deprecatedAPIVersions"][version]:
			registered[version] = "deprecated"
		}
		k.APIVersions = append(k.APIVersions, KubeadmAPI{Version: version, Status: registered[version]})
	}
	if len(k.APIVersions) == 0 {
		return k, fmt.Errorf("found no kubeadm config API version")
	}
	for key, name := range map[string]string{"etcd": "DefaultEtcdVersion", "coredns": "CoreDNSVersion", "pause": "PauseVersion"} {
		n := constants.names[name]
		if n == nil {
			return k, fmt.Errorf("kubeadm's constants have no %s", name)
		}
		if k.Defaults[key], _ = l.str(constants, n.file, n.value); k.Defaults[key] == "" {
			return k, fmt.Errorf("kubeadm's %s is not a constant string", name)
		}
	}
	k.Gates = l.kubeadmGates(features)
	return k, nil
}

// supportMatrix reads the map literals validateSupportedVersion assigns to local names (oldKnownAPIVersions,
// experimentalAPIVersions, deprecatedAPIVersions), as name → set of group/version keys.
func (l *loader) supportMatrix(config *pkg) map[string]map[string]bool {
	lists := map[string]map[string]bool{}
	for _, f := range config.files {
		for _, decl := range f.ast.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Name.Name != "validateSupportedVersion" || fn.Body == nil {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				assign, ok := n.(*ast.AssignStmt)
				if !ok || len(assign.Lhs) != 1 || len(assign.Rhs) != 1 {
					return true
				}
				name, ok1 := assign.Lhs[0].(*ast.Ident)
				lit, ok2 := assign.Rhs[0].(*ast.CompositeLit)
				if !ok1 || !ok2 {
					return true
				}
				keys := map[string]bool{}
				for _, e := range l.entries(config, f, lit) {
					keys[e.key] = true
				}
				lists[name.Name] = keys
				return true
			})
		}
	}
	return lists
}

func (l *loader) kubeadmGates(features *pkg) []KubeadmGate {
	out := []KubeadmGate{}
	inspect(features, func(f *file, n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok || typeName(lit.Type) != "FeatureList" {
			return true
		}
		for _, e := range l.entries(features, f, lit) {
			value, isLit := e.value.(*ast.CompositeLit)
			if !isLit {
				continue
			}
			gate := KubeadmGate{Name: e.key, Spec: Spec{PreRelease: "GA"}}
			for _, field := range value.Elts {
				key, v := fieldName(field)
				switch key {
				case "FeatureSpec":
					gate.Spec = l.spec(features, f, v)
				case "DeprecationMessage":
					gate.Deprecated = true
				}
			}
			out = append(out, gate)
		}
		return false
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
