#!/usr/bin/env python3
"""Checks that the crate's modules form the one-way stack ARCHITECTURE.md draws.

Every path a source file names inside the crate (`crate::module`, `super::` resolved to its
module, `$crate::module` in macros) is an edge from the file's top-level module to the named
top-level module. A module may use only the modules below it in LAYERS; the re-exports of
lib.rs are the top. Prints the graph, and exits 1 on an edge that goes up or sideways, or on a
module missing from LAYERS.
"""
import pathlib
import re
import sys

# Bottom first. A module may use the modules of the layers before its own.
LAYERS = [
    ["element"],
    ["error"],
    ["reduce"],
    ["arch"],
    ["rounding"],
    ["backend"],
    ["parallel"],
    ["driver"],
    ["optim"],
    ["executor"],
    ["checkpoint", "schedule"],
    ["calls", "stateful"],
]

src = pathlib.Path(__file__).resolve().parent.parent / "src"
level = {m: i for i, layer in enumerate(LAYERS) for m in layer}
modules = sorted(
    {p.stem for p in src.glob("*.rs") if p.stem != "lib"}
    | {p.name for p in src.iterdir() if p.is_dir()}
)
failures = []
for m in modules:
    if m not in level:
        failures.append(f"module {m} is not in LAYERS")

edges = {}
for path in sorted(src.rglob("*.rs")):
    rel = path.relative_to(src)
    if rel.name == "lib.rs":
        continue
    owner = rel.parts[0].removesuffix(".rs")
    text = path.read_text()
    # Comments and doc comments may link anywhere; only code counts.
    code = "\n".join(line.split("//")[0] for line in text.splitlines())
    used = set(re.findall(r"\$?crate::([a-z_][a-z0-9_]*)", code))
    # `use crate::{a, b::c}`: every name inside the braces.
    for group in re.findall(r"crate::\{([^}]*)\}", code):
        used |= {name.strip().split("::")[0] for name in group.split(",") if name.strip()}
    for name in used:
        if name in level and name != owner:
            edges.setdefault(owner, set()).add(name)
        elif name not in level and name != owner:
            # A re-export of lib.rs (`crate::Executor`): the top of the stack.
            edges.setdefault(owner, set()).add(f"lib ({name})")

for owner in sorted(edges):
    for target in sorted(edges[owner]):
        print(f"{owner} -> {target}")
        if target.startswith("lib"):
            failures.append(f"{owner} uses {target}: name the module, not the re-export")
        elif level[target] >= level[owner]:
            failures.append(f"{owner} (layer {level[owner]}) uses {target} (layer {level[target]})")

if failures:
    print("\n".join(["module graph: FAILED"] + failures))
    sys.exit(1)
print(f"module graph: {sum(len(v) for v in edges.values())} edges between {len(modules)} modules, all downward")
