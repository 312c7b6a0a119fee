package main

import (
	"fmt"
	"go/ast"
	"os"
	"regexp"
	"strings"
)

// Flag is a command-line flag a component registers.
type Flag struct {
	Name       string `json:"name"`
	Deprecated bool   `json:"deprecated"`
	Message    string `json:"deprecationMessage,omitempty"`
}

var flagPattern = regexp.MustCompile(`^[A-Za-z0-9*][A-Za-z0-9._*-]*$`)

// registrations maps the FlagSet methods of spf13/pflag and the standard flag package that register a flag
// to the position of the name argument and the number of arguments they take.
var registrations = func() map[string][2]int {
	m := map[string][2]int{
		"Var": {1, 3}, "VarP": {1, 4}, "VarPF": {1, 4}, "Func": {0, 3}, "BoolFunc": {0, 3}, "TextVar": {1, 4},
		"Count": {0, 2}, "CountP": {0, 3}, "CountVar": {1, 3}, "CountVarP": {1, 4},
	}
	types := "Bool BoolSlice BytesBase64 BytesHex Duration DurationSlice Float32 Float32Slice Float64 " +
		"Float64Slice Int Int8 Int16 Int32 Int32Slice Int64 Int64Slice IntSlice IP IPMask IPNet IPNetSlice " +
		"IPSlice String StringArray StringSlice StringToInt StringToInt64 StringToString Uint Uint8 Uint16 " +
		"Uint32 Uint64 UintSlice"
	for _, t := range strings.Fields(types) {
		m[t], m[t+"P"], m[t+"Var"], m[t+"VarP"] = [2]int{0, 3}, [2]int{0, 4}, [2]int{1, 4}, [2]int{1, 5}
	}
	return m
}()

// flags adds the flags a package registers (and the deprecations it marks) to byName, and returns how many
// registrations had a name that is not a constant.
func (l *loader) flags(d *decl, byName map[string]*Flag) int {
	p := d.pkg
	unresolved := 0
	deprecate := func(f *file, nameArg, message ast.Expr) {
		name, ok := l.str(p, f, nameArg)
		if !ok {
			return
		}
		text, _ := l.str(p, f, message)
		flag := byName[name]
		if flag == nil {
			flag = &Flag{Name: name}
			byName[name] = flag
		}
		flag.Deprecated, flag.Message = true, strings.TrimSpace(text)
	}
	f := d.file
	ast.Inspect(d.node, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if sel.Sel.Name == "MarkDeprecated" && len(n.Args) == 2 {
				deprecate(f, n.Args[0], n.Args[1])
				return true
			}
			shape, ok := registrations[sel.Sel.Name]
			if !ok || len(n.Args) != shape[1] {
				return true
			}
			name, ok := l.flagName(d, n.Args[shape[0]])
			if !ok {
				unresolved++
				if *debug {
					fmt.Fprintf(os.Stderr, "unresolved flag name: %s\n", l.fset.Position(n.Pos()))
				}
				return true
			}
			if flagPattern.MatchString(name) && byName[name] == nil {
				byName[name] = &Flag{Name: name}
			}
		case *ast.AssignStmt: // fs.Lookup("name").Deprecated = "message"
			if len(n.Lhs) != 1 || len(n.Rhs) != 1 {
				return true
			}
			sel, ok := n.Lhs[0].(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Deprecated" {
				return true
			}
			if lookup, ok := sel.X.(*ast.CallExpr); ok && typeName(lookup.Fun) == "Lookup" && len(lookup.Args) == 1 {
				deprecate(f, lookup.Args[0], n.Rhs[0])
			}
		}
		return true
	})
	return unresolved
}

// flagName resolves a flag name like str, and also fmt.Sprintf("audit-%s-mode", pluginName) where an
// argument is a parameter of the enclosing function: that part becomes "*" (a pattern such as
// "audit-*-mode", matched against the flags a cluster sets).
func (l *loader) flagName(d *decl, e ast.Expr) (string, bool) {
	if name, ok := l.str(d.pkg, d.file, e); ok {
		return name, true
	}
	call, ok := e.(*ast.CallExpr)
	fn, isFunc := d.node.(*ast.FuncDecl)
	if !ok || !isFunc || len(call.Args) < 2 {
		return "", false
	}
	if sel, ok := call.Fun.(*ast.SelectorExpr); !ok || sel.Sel.Name != "Sprintf" || importPath(d.file, sel.X) != "fmt" {
		return "", false
	}
	format, ok := l.str(d.pkg, d.file, call.Args[0])
	if !ok {
		return "", false
	}
	params := map[string]bool{}
	for _, field := range fn.Type.Params.List {
		for _, name := range field.Names {
			params[name.Name] = true
		}
	}
	var parts []any
	for _, arg := range call.Args[1:] {
		if text, ok := l.str(d.pkg, d.file, arg); ok {
			parts = append(parts, text)
		} else if id, isIdent := arg.(*ast.Ident); isIdent && params[id.Name] {
			parts = append(parts, "*")
		} else {
			return "", false
		}
	}
	if strings.Count(format, "%") != len(parts) || strings.Count(format, "%s")+strings.Count(format, "%v") != len(parts) {
		return "", false
	}
	return fmt.Sprintf(strings.ReplaceAll(format, "%v", "%s"), parts...), true
}
