#!/usr/bin/env python3
"""bench/flame.py - a flame graph (SVG) from `perf script` output.

usage: perf script -i perf.data | bench/flame.py --title T > out.svg
       bench/flame.py --collapsed < stacks.txt > out.svg

Reads perf's sample listing (one header line per sample, then one frame per
line, innermost first, then a blank line), folds each sample into a stack
"outer;...;inner", counts identical stacks, and draws them: the width of a
box is its share of the samples, callers below their callees. With
--collapsed the input is already folded ("a;b;c COUNT" per line).
--fold writes the folded stacks instead of the SVG (to diff two profiles).
Frames are named by function; unknown ones by their module ([kernel],
libc.so.6, ...). Boxes narrower than --min-width pixels are left out.
"""
import argparse
import html
import re
import sys
from collections import defaultdict

FRAME = re.compile(r"^\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$")


def frame_name(line):
    m = FRAME.match(line)
    if not m:
        return None
    sym, mod = m.group(1), m.group(2)
    sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
    if sym in ("[unknown]", ""):
        base = mod.rsplit("/", 1)[-1]
        return "[%s]" % base if not base.startswith("[") else base
    return sym


def fold_perf(lines):
    stacks = defaultdict(int)
    frames, comm = [], None
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                stacks[";".join([comm] + frames[::-1])] += 1
            frames, comm = [], None
            continue
        if comm is None and not line.startswith((" ", "\t")):
            comm = line.split()[0]   # the thread's name
            continue
        name = frame_name(line)
        if name is not None:
            frames.append(name)
    if frames:
        stacks[";".join([comm] + frames[::-1])] += 1
    return stacks


def fold_collapsed(lines):
    stacks = defaultdict(int)
    for line in lines:
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if stack and n.isdigit():
            stacks[stack] += int(n)
    return stacks


def tree(stacks):
    root = {"n": 0, "kids": {}}
    for stack, n in stacks.items():
        node = root
        node["n"] += n
        for f in stack.split(";"):
            node = node["kids"].setdefault(f, {"n": 0, "kids": {}})
            node["n"] += n
    return root


def colour(name):
    h = 0
    for ch in name:
        h = (h * 31 + ord(ch)) & 0xFFFFFF
    if name.startswith("[") or "kernel" in name:
        return "rgb(%d,%d,%d)" % (200 + h % 50, 120 + h % 60, 60)
    return "rgb(%d,%d,%d)" % (220 + h % 35, 90 + (h >> 8) % 110, 40 + (h >> 16) % 40)


def svg(root, title, width, min_width):
    row, boxes, depth_max = 16, [], 0
    total = root["n"] or 1

    def walk(node, x, depth):
        nonlocal depth_max
        for name, kid in sorted(node["kids"].items()):
            w = kid["n"] / total * (width - 20)
            if w >= min_width:
                boxes.append((x, depth, w, name, kid["n"]))
                depth_max = max(depth_max, depth)
                walk(kid, x, depth + 1)
            x += w

    walk(root, 10.0, 0)
    height = (depth_max + 1) * row + 60
    out = ['<?xml version="1.0" standalone="no"?>',
           '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="monospace" font-size="11">' % (width, height),
           '<rect width="100%" height="100%" fill="#fdfdf8"/>',
           '<text x="%d" y="20" text-anchor="middle" font-size="15">%s</text>'
           % (width // 2, html.escape(title)),
           '<text x="10" y="38">%d samples; width = share of samples; hover for '
           'the count</text>' % total]
    for x, depth, w, name, n in boxes:
        y = height - (depth + 1) * row - 4
        label = html.escape(name)
        out.append('<g><title>%s: %d samples (%.2f%%)</title>'
                   '<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" '
                   'rx="2"/>' % (label, n, 100.0 * n / total, x, y, w, row - 1,
                                 colour(name)))
        chars = int(w / 7)
        if chars >= 3:
            text = name if len(name) <= chars else name[:chars - 2] + ".."
            out.append('<text x="%.1f" y="%d">%s</text>'
                       % (x + 3, y + row - 4, html.escape(text)))
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--title", default="kchat serve")
    ap.add_argument("--width", type=int, default=1200)
    ap.add_argument("--min-width", type=float, default=0.5)
    ap.add_argument("--collapsed", action="store_true")
    ap.add_argument("--fold", action="store_true")
    a = ap.parse_args()
    lines = sys.stdin.readlines()
    stacks = fold_collapsed(lines) if a.collapsed else fold_perf(lines)
    if not stacks:
        sys.exit("flame: no samples in the input")
    if a.fold:
        for stack, n in sorted(stacks.items()):
            sys.stdout.write("%s %d\n" % (stack, n))
        return
    sys.stdout.write(svg(tree(stacks), a.title, a.width, a.min_width))


if __name__ == "__main__":
    main()
