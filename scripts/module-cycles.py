#!/usr/bin/env python3
"""Print every import circle between the modules of each crate.

A module depends on another when its code names it: `use crate::x`,
`crate::x::y`, `super::x`, `self::x` or a child module by name. Files are the
nodes (inline modules such as `mod tests { .. }` belong to their file); a
module naming one that contains it is not an edge, as the container declares
it. Every strongly connected component with more than one file is a circle.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def strip(src):
    """Source without comments, string and char literals."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            i = src.find("\n", i)
            i = n if i < 0 else i
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif m := re.compile(r'b?r(#*)"').match(src, i):
            if i > 0 and (src[i - 1].isalnum() or src[i - 1] == "_"):
                out.append(c)
                i += 1
                continue
            end = src.find('"' + m.group(1), m.end())
            i = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and src[i] != '"':
                i += 2 if src[i] == "\\" else 1
            i += 1
            out.append('""')
        elif m := re.compile(r"'(\\.[^']*|[^\\'])'").match(src, i):
            i = m.end()
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return re.sub(r"\s*::\s*", "::", "".join(out))


def expand_use(tree, prefix=()):
    """Paths a use tree names, `a::{b, c::d}` giving a::b and a::c::d."""
    paths, depth, start, parts = [], 0, 0, []
    for i, c in enumerate(tree):
        depth += c == "{"
        depth -= c == "}"
        if c == "," and depth == 0:
            parts.append(tree[start:i])
            start = i + 1
    parts.append(tree[start:])
    for part in (p.strip() for p in parts):
        part = re.sub(r"\s+as\s+\w+$", "", part)
        if not part:
            continue
        if "{" in part:
            head, inner = part.split("{", 1)
            head = tuple(s for s in head.split("::") if s)
            paths += expand_use(inner[: inner.rfind("}")], prefix + head)
        else:
            paths.append(prefix + tuple(s for s in part.split("::") if s))
    return paths


def paths_in(code):
    """(position, path) of every use-tree path and every `a::b` path."""
    found = []
    for m in re.finditer(r"\buse\s+([^;]*);", code):
        found += [(m.start(), p) for p in expand_use(m.group(1))]
    without_uses = re.sub(r"\buse\s+[^;]*;", lambda m: " " * len(m.group(0)), code)
    for m in re.finditer(r"(?<![\w:])\w+(?:::\w+)+", without_uses):
        found.append((m.start(), tuple(m.group(0).split("::"))))
    return found


def inline_modules(code):
    """(start, end, name) of each `mod name { .. }`, by brace matching."""
    spans = []
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", code):
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            i += 1
        spans.append((m.start(), i, m.group(1)))
    return spans


def crate_files(src):
    """{module path: file} of one crate; main.rs and bin/ are other crates."""
    files = {}
    for path in src.rglob("*.rs"):
        rel = path.relative_to(src).with_suffix("").parts
        if rel[0] == "bin" or rel == ("main",) and (src / "lib.rs").exists():
            continue
        if rel in (("lib",), ("main",)):
            rel = ()
        elif rel[-1] == "mod":
            rel = rel[:-1]
        files[rel] = path
    return files


def graph(src):
    """{file: set of files it names} for the crate under src."""
    files = crate_files(src)
    codes = {m: strip(f.read_text()) for m, f in files.items()}
    modules = dict(files)
    spans = {}
    for module, code in codes.items():
        spans[module] = inline_modules(code)
        for start, end, name in spans[module]:
            modules[module + tuple(n for s, e, n in spans[module] if s < start and end <= e) + (name,)] = files[module]
    edges = {f: set() for f in files.values()}
    for module, code in codes.items():
        for pos, path in paths_in(code):
            inner = tuple(n for s, e, n in spans[module] if s <= pos < e)
            target = resolve(module + inner, path, modules)
            if target is not None and target not in ancestors(module, files):
                edges[files[module]].add(target)
    return edges


def ancestors(module, files):
    """The files of a module and of every module that contains it: naming
    them (`super::x`, an item of the crate root) is containment, not a circle."""
    return {files[module[:length]] for length in range(len(module) + 1) if module[:length] in files}


def resolve(here, path, modules):
    """The file a path leads to, or None when it leaves the crate."""
    if path[0] == "crate":
        base, rest = (), path[1:]
    elif path[0] in ("self", "super"):
        base, rest = here, path
        while rest and rest[0] in ("self", "super"):
            base = base[:-1] if rest[0] == "super" else base
            rest = rest[1:]
    elif here + path[:1] in modules:
        base, rest = here, path
    else:
        return None
    full = base + tuple(s for s in rest if s != "*")
    for length in range(len(full), -1, -1):
        if full[:length] in modules:
            return modules[full[:length]]
    return None


def cycles(edges):
    """Strongly connected components with more than one file (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main():
    total = 0
    for src in sorted(ROOT.glob("*/src")):
        edges = graph(src)
        for component in cycles(edges):
            total += 1
            members = set(component)
            print(f"{src.parent.name}: circle of {len(component)} files")
            for f in component:
                inside = sorted(str(t.relative_to(src)) for t in edges[f] & members)
                print(f"  {f.relative_to(src)} -> {', '.join(inside)}")
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
