"""Markdown tables of a scripts/compare-peers.sh run: usage: peers-table.py OUT_DIR"""
import glob, json, sys
out = sys.argv[1]
doc = json.load(open(f"{out}/optkern.json"))
default = doc["default_backend"]
crate = {(r["optimizer"], r["dtype"], r["data"], r["n"], r["threads"], r["subnormals"]): r["seconds"]
         for r in doc["rows"] if r["backend"] in (default, f"{default} keep", f"{default} flush")}
peers = {}
for path in sorted(glob.glob(f"{out}/peers-*.json")):
    for p in json.load(open(path))["rows"]:
        peers.setdefault((p["optimizer"], p["dtype"], p["data"], p["n"], p["threads"]), {})[p["peer"]] = p["seconds"]
def t(s): return f"{s*1e3:.2f} ms" if s >= 1e-3 else f"{s*1e6:.1f} µs"
def size(n): return f"{n>>20}M" if n >= 1<<20 else f"{n>>10}K"
for data in ["normal", "zero-grads"]:
    print(f"\n{data}:\n")
    print("| step | n | threads | PyTorch fused | DeepSpeed step() | DeepSpeed adam_update | optkern keep | ratio | optkern flush | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in sorted(peers, key=lambda k: (k[0] != "momentum", ["f32","bf16-f32state","bf16","f16"].index(k[1]), k[3], k[4])):
        o, dt, d, n, th = key
        if d != data: continue
        ps = peers[key]
        keep, flush = crate[key + ("keep",)], crate[key + ("flush",)]
        best = min(ps.values())
        cell = lambda name: t(ps[name]) if name in ps else "-"
        print(f"| {o} {dt} | {size(n)} | {th} | {cell('torch fused')} | {cell('deepspeed step()')} | {cell('deepspeed adam_update')} | {t(keep)} | {best/keep:.2f}x | {t(flush)} | {best/flush:.2f}x |")
