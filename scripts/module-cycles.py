#!/usr/bin/env python3
"""Module dependencies of a crate, and the pairs of modules that use each other.

    python3 scripts/module-cycles.py [SRC_DIR] [--list] [--strict] [--depth=N]

Each .rs file under SRC_DIR (default: training/src) is a module (scripts/test.sh runs it on every
crate of the workspace). A module uses another when it
names it in a `use` or a path: `crate::a::b…`, `super::…`, `self::…`, or a child module it declares
(`mod x;` … `x::Item`). The target is the longest module prefix of the path. Comments, strings
and char literals are skipped.

Prints `cycle: a <-> b` for two modules that each use the other (exit status 1 if any), and
`parent/child: a <-> b` for a module and one of its own submodules that use each other (a parent
re-exports and builds from its children, the children take shared items from the parent: reported,
and an error only with --strict). --list prints every module's dependencies. --depth=N looks at
modules N levels deep (a folder counts as one module with everything under it).
"""
import os
import re
import sys


def modules(root):
    files = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            if f.endswith(".rs"):
                p = os.path.join(d, f)
                rel = tuple(os.path.relpath(p, root)[:-3].split(os.sep))
                if rel[-1] == "mod":
                    rel = rel[:-1]
                if rel in (("lib",), ("main",)):
                    rel = ()
                files[p] = rel
    return files


def strip(src):
    """The source without comments, string literals and char literals (a `//` in a string is
    not a comment; a quote in a comment does not open a string)."""
    out, i, n = [], 0, len(src)
    raw = re.compile(r'b?r(#*)"')
    char = re.compile(r"'(?:\\[^']*|[^\\'])'")
    while i < n:
        c = src[i]
        prev = src[i - 1] if i else " "
        if src.startswith("//", i):
            j = src.find(chr(10), i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif (m := raw.match(src, i)) and not (prev.isalnum() or prev == "_"):
            end = '"' + m.group(1)
            j = src.find(end, m.end())
            out.append('""')
            i = n if j < 0 else j + len(end)
        elif c == '"':
            i += 1
            while i < n and src[i] != '"':
                i += 2 if src[i] == chr(92) else 1
            out.append('""')
            i += 1
        elif c == "'" and (m := char.match(src, i)):
            out.append("' '")
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use(body):
    """`a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`."""
    body = " ".join(body.split())
    m = re.match(r"^([\w:]*?)::\{(.*)\}$", body)
    if not m:
        return [body.split(" as ")[0].strip()]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        depth += (ch == "{") - (ch == "}")
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [prefix + "::" + e for p in parts if p.strip() for e in expand_use(p)]


def inline_modules(src):
    """Spans of the inline modules (`mod tests { … }`) of a stripped source."""
    spans = []
    for m in re.finditer(r"\bmod\s+\w+\s*\{", src):
        depth, i = 0, m.end() - 1
        while i < len(src):
            depth += (src[i] == "{") - (src[i] == "}")
            if depth == 0:
                break
            i += 1
        spans.append((m.start(), i))
    return spans


def resolve(mods, mod, path, children, inline_depth=0):
    """The file module `path` names, written in `mod` inside `inline_depth` inline modules."""
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs[0] == "self":
        base, segs = mod, segs[1:]
    elif segs[0] == "super":
        base = mod
        while segs and segs[0] == "super":
            if inline_depth:
                inline_depth -= 1
            else:
                base = base[:-1]
            segs = segs[1:]
    elif segs[0] in children:
        base = mod
    else:
        return None
    target = base
    for s in segs:
        if target + (s,) not in mods:
            break
        target = target + (s,)
    return target


def dependencies(root):
    files = modules(root)
    mods = set(files.values())
    edges = {}
    for path, mod in files.items():
        with open(path, encoding="utf-8") as f:
            src = strip(f.read())
        children = {c for c in re.findall(r"\bmod\s+(\w+)\s*;", src) if mod + (c,) in mods}
        spans = inline_modules(src)
        depth = lambda pos: sum(a <= pos <= b for a, b in spans)  # noqa: E731
        refs = set()
        for m in re.finditer(r"\buse\s+([^;]+);", src):
            refs.update((e, depth(m.start())) for e in expand_use(m.group(1)))
        for m in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", src):
            refs.add((m.group(1), depth(m.start())))
        for m in re.finditer(r"(?<![\w:])(\w+)::", src):
            if m.group(1) in children:
                refs.add((m.group(1) + "::_", depth(m.start())))
        for r, d in refs:
            t = resolve(mods, mod, r, children, d)
            if t is not None and t not in (mod, ()):
                edges.setdefault(mod, set()).add(t)
    return edges


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    root = args[0] if args else os.path.join(os.path.dirname(__file__), "..", "src")
    edges = dependencies(root)
    top = next((int(a.split("=")[1]) for a in sys.argv if a.startswith("--depth=")), None)
    if top:
        collapsed = {}
        for a, targets in edges.items():
            for b in targets:
                if a[:top] != b[:top]:
                    collapsed.setdefault(a[:top], set()).add(b[:top])
        edges = collapsed
    name = lambda m: "::".join(m) or "crate"  # noqa: E731
    if "--list" in sys.argv:
        for m in sorted(edges):
            print(f"{name(m)} -> {', '.join(sorted(name(t) for t in edges[m]))}")
    errors = 0
    for a in sorted(edges):
        for b in sorted(edges[a]):
            if a < b and a in edges.get(b, ()):
                nested = b[: len(a)] == a or a[: len(b)] == b
                print(f"{'parent/child' if nested else 'cycle'}: {name(a)} <-> {name(b)}")
                errors += not nested or "--strict" in sys.argv
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
