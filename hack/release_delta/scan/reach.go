package main

import (
	"fmt"
	"go/ast"
	"go/types"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
)

// A component's flags, gates and metrics are those registered by the code its binary can run: the functions
// and package variables reachable from its main (and from every init function and blank variable of its
// dependency set, which run at start). A package's mere presence in the dependency set is not enough: the
// kubelet links k8s.io/apiserver's option packages without registering their flags.
//
// Reachability follows references in type-checked source: a function, method or package variable named in
// reachable code is reachable; a method called through an interface is reachable on every type named in
// reachable code that has it (rapid type analysis by method name). Packages outside k8s.io/kubernetes and
// its staging modules (the standard library too) are not read: they are type-checked as empty packages,
// and what flows through them (callbacks registered with a third-party library) is seen only where the
// callback is named in Kubernetes code, which is where it is written.

// decl is a function, a method, or a package variable's value: a unit of reachable code.
type decl struct {
	pkg  *pkg
	file *file
	node ast.Node
}

// reached is what reach found for one command.
type reached struct {
	packages int
	decls    []*decl // in a fixed order: package path, then position
}

// Import type-checks a package read here, or returns an empty package for any other import path.
func (l *loader) Import(importPath string) (*types.Package, error) {
	if l.module(importPath) != "" {
		p, err := l.check(importPath)
		if err != nil {
			l.failed = err
			return nil, err
		}
		if p != nil {
			return p.types, nil
		}
	}
	if fake := l.fakes[importPath]; fake != nil {
		return fake, nil
	}
	fake := types.NewPackage(importPath, packageName(importPath))
	fake.MarkComplete()
	l.fakes[importPath] = fake
	return fake, nil
}

var majorSuffix = regexp.MustCompile(`^v[0-9]+$`)

// packageName guesses the name a package is imported by when the import has no alias (a wrong guess only
// leaves the names used through it unresolved, as they are anyway in an empty package).
func packageName(importPath string) string {
	name := path.Base(importPath)
	if majorSuffix.MatchString(name) && strings.Contains(importPath, "/") {
		name = path.Base(path.Dir(importPath))
	}
	name = strings.TrimSuffix(strings.Split(name, ".")[0], "-go")
	return strings.NewReplacer("-", "", "go-", "").Replace(name)
}

// check loads and type-checks a package (its imports first) and indexes its declarations.
func (l *loader) check(importPath string) (*pkg, error) {
	p, err := l.load(importPath)
	if err != nil || p == nil || p.types != nil {
		return p, err
	}
	info := &types.Info{Defs: map[*ast.Ident]types.Object{}, Uses: map[*ast.Ident]types.Object{}}
	conf := types.Config{Importer: l, Error: func(error) {}, FakeImportC: true}
	var files []*ast.File
	for _, f := range p.files {
		files = append(files, f.ast)
	}
	p.types, _ = conf.Check(importPath, l.fset, files, info) // errors: what an empty import leaves undefined
	if l.failed != nil {
		return nil, l.failed
	}
	p.info = info
	for _, f := range p.files {
		for _, d := range f.ast.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				unit := &decl{pkg: p, file: f, node: d}
				if d.Name.Name == "init" && d.Recv == nil {
					p.roots = append(p.roots, unit)
				} else if fn, ok := info.Defs[d.Name].(*types.Func); ok {
					l.funcs[fn] = unit
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					vs, ok := spec.(*ast.ValueSpec)
					if !ok {
						continue
					}
					for i, name := range vs.Names {
						var value ast.Node = vs
						if len(vs.Values) == len(vs.Names) {
							value = vs.Values[i]
						}
						unit := &decl{pkg: p, file: f, node: value}
						if name.Name == "_" {
							p.roots = append(p.roots, unit)
						} else if v, ok := info.Defs[name].(*types.Var); ok {
							l.vars[v] = unit
						}
					}
				}
			}
		}
	}
	return p, nil
}

// reach finds the declarations reachable from a command's main.
func (l *loader) reach(command string) (*reached, error) {
	root, err := l.check(command)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, fmt.Errorf("%s has no Go files", command)
	}
	var queue []*decl
	seen := map[*decl]bool{}
	var from *decl
	enqueue := func(d *decl) {
		if d != nil && !seen[d] {
			seen[d] = true
			queue = append(queue, d)
			l.parent[d] = from
		}
	}
	// The dependency set: its init functions and blank variables run at start.
	packages := map[string]*pkg{root.path: root}
	for todo := []*pkg{root}; len(todo) > 0; todo = todo[1:] {
		for _, path := range todo[0].deps {
			if dep := l.pkgs[path]; dep != nil && packages[path] == nil {
				packages[path] = dep
				todo = append(todo, dep)
			}
		}
	}
	for _, path := range sortedKeys(packages) {
		for _, d := range packages[path].roots {
			enqueue(d)
		}
	}
	if main, ok := root.types.Scope().Lookup("main").(*types.Func); ok {
		enqueue(l.funcs[main])
	}
	calledThroughInterface := map[string]bool{}
	waiting := map[string][]*decl{} // methods of named types, by name, until an interface call of that name
	named := map[*types.TypeName]bool{}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		from = d
		ast.Inspect(d.node, func(n ast.Node) bool {
			id, ok := n.(*ast.Ident)
			if !ok {
				return true
			}
			switch obj := d.pkg.info.Uses[id].(type) {
			case *types.Func:
				recv := obj.Type().(*types.Signature).Recv()
				if recv == nil || !types.IsInterface(recv.Type()) {
					enqueue(l.funcs[obj.Origin()])
				} else if !calledThroughInterface[obj.Name()] {
					calledThroughInterface[obj.Name()] = true
					for _, m := range waiting[obj.Name()] {
						enqueue(m)
					}
					delete(waiting, obj.Name())
				}
			case *types.Var:
				enqueue(l.vars[obj.Origin()])
			case *types.TypeName:
				if named[obj] || types.IsInterface(obj.Type()) {
					return true
				}
				named[obj] = true
				methods := types.NewMethodSet(types.NewPointer(types.Unalias(obj.Type())))
				for i := 0; i < methods.Len(); i++ {
					fn, ok := methods.At(i).Obj().(*types.Func)
					if !ok {
						continue
					}
					if m := l.funcs[fn.Origin()]; calledThroughInterface[fn.Name()] {
						enqueue(m)
					} else if m != nil {
						waiting[fn.Name()] = append(waiting[fn.Name()], m)
					}
				}
			}
			return true
		})
	}
	decls := make([]*decl, 0, len(seen))
	for d := range seen {
		decls = append(decls, d)
	}
	sort.Slice(decls, func(i, j int) bool {
		if decls[i].pkg.path != decls[j].pkg.path {
			return decls[i].pkg.path < decls[j].pkg.path
		}
		return decls[i].node.Pos() < decls[j].node.Pos()
	})
	return &reached{packages: len(packages), decls: decls}, nil
}

// why prints how a declaration was reached (with -debug).
func (l *loader) why(d *decl) {
	for ; d != nil; d = l.parent[d] {
		fmt.Fprintf(os.Stderr, "    from %s\n", l.fset.Position(d.node.Pos()))
	}
}
