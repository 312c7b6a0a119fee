package main

import (
	"go/ast"
	"strings"
)

const metricsPackage = "k8s.io/component-base/metrics"

// Metric is a metric defined with k8s.io/component-base/metrics (the way every Kubernetes component
// defines its own).
type Metric struct {
	Name              string `json:"name"`
	Type              string `json:"type"` // counter, gauge, histogram, summary, or "" (a NewDesc: any)
	Stability         string `json:"stability"`
	DeprecatedVersion string `json:"deprecatedVersion,omitempty"`
	Help              string `json:"help,omitempty"`
}

var optsTypes = map[string]string{
	"CounterOpts": "counter", "GaugeOpts": "gauge", "HistogramOpts": "histogram", "SummaryOpts": "summary",
	"TimingHistogramOpts": "histogram",
}

// metrics finds the metric definitions of a package: component-base/metrics option literals
// (&metrics.CounterOpts{Namespace, Subsystem, Name, ...}) and metrics.NewDesc calls whose names are
// constants. Definitions with a computed name part are left out.
func (l *loader) metrics(d *decl) []Metric {
	p := d.pkg
	var out []Metric
	f := d.file
	ast.Inspect(d.node, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CompositeLit:
			kind, ok := optsTypes[l.metricsName(p, f, n.Type)]
			if !ok {
				return true
			}
			if m, ok := l.opts(p, f, n, kind); ok {
				out = append(out, m)
			}
			return false
		case *ast.CallExpr:
			if l.metricsName(p, f, n.Fun) != "NewDesc" || len(n.Args) != 6 {
				return true
			}
			name, ok := l.fqName(p, f, n.Args[0])
			if !ok || name == "" {
				return true
			}
			help, _ := l.str(p, f, n.Args[1])
			deprecated, _ := l.str(p, f, n.Args[5])
			out = append(out, Metric{Name: name, Stability: stability(n.Args[4]), DeprecatedVersion: deprecated, Help: help})
		}
		return true
	})
	return out
}

// metricsName is the name of a component-base/metrics identifier (metrics.CounterOpts → CounterOpts), or "".
func (l *loader) metricsName(p *pkg, f *file, e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		if p.path == metricsPackage {
			return e.Name
		}
	case *ast.SelectorExpr:
		if importPath(f, e.X) == metricsPackage {
			return e.Sel.Name
		}
	}
	return ""
}

func (l *loader) opts(p *pkg, f *file, lit *ast.CompositeLit, kind string) (Metric, bool) {
	m := Metric{Type: kind, Stability: "ALPHA"} // an unset StabilityLevel is ALPHA
	var parts [3]string
	for _, elt := range lit.Elts {
		field, value := fieldName(elt)
		switch field {
		case "Namespace", "Subsystem", "Name":
			text, ok := l.str(p, f, value)
			if !ok {
				return m, false
			}
			parts[map[string]int{"Namespace": 0, "Subsystem": 1, "Name": 2}[field]] = text
		case "StabilityLevel":
			m.Stability = stability(value)
		case "DeprecatedVersion":
			m.DeprecatedVersion, _ = l.str(p, f, value)
		case "Help":
			m.Help, _ = l.str(p, f, value)
		}
	}
	if parts[2] == "" {
		return m, false
	}
	m.Name = buildFQName(parts[0], parts[1], parts[2])
	return m, true
}

// fqName reads a constant name or metrics.BuildFQName(namespace, subsystem, name) of constants.
func (l *loader) fqName(p *pkg, f *file, e ast.Expr) (string, bool) {
	if call, ok := e.(*ast.CallExpr); ok && l.metricsName(p, f, call.Fun) == "BuildFQName" && len(call.Args) == 3 {
		var parts [3]string
		for i, arg := range call.Args {
			text, ok := l.str(p, f, arg)
			if !ok {
				return "", false
			}
			parts[i] = text
		}
		return buildFQName(parts[0], parts[1], parts[2]), parts[2] != ""
	}
	return l.str(p, f, e)
}

// buildFQName joins the non-empty parts with "_", as prometheus.BuildFQName does.
func buildFQName(namespace, subsystem, name string) string {
	var parts []string
	for _, part := range []string{namespace, subsystem, name} {
		if part != "" {
			parts = append(parts, part)
		}
	}
	return strings.Join(parts, "_")
}

func stability(e ast.Expr) string {
	if name := typeName(e); name != "" {
		return name
	}
	return "ALPHA"
}

// mergeMetric keeps the first definition seen of a name (packages are visited in a fixed order).
func mergeMetric(metrics map[string]*Metric, m Metric) {
	if _, ok := metrics[m.Name]; !ok {
		metrics[m.Name] = &m
	}
}
