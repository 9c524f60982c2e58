"""Reads a NIR file with the Python `nir` package and simulates the graph in numpy,
as a third party would from NIR's definitions and the graph's metadata alone.

    python nir_simulate.py MODEL.nir DATA.safetensors

DATA holds `images` (N, C, H, W) as u8 pixels (the graph takes pixel/255, as its
metadata `input` says), `labels` (N,) and the host's float `predictions` (N,). Prints the graph's size, the accuracy and the argmax
agreement with the host as `agreement: A/N = P%`.
"""

import sys

import nir
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from nir.serialization import read_version
from safetensors.numpy import load_file


def pair(v):
    v = np.atleast_1d(np.asarray(v)).astype(int)
    return (int(v[0]), int(v[-1]))


def conv2d(node, x):
    w, b = node.weight, node.bias
    (ph, pw), (sh, sw) = pair(node.padding), pair(node.stride)
    assert pair(node.dilation) == (1, 1) and int(node.groups) == 1
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = sliding_window_view(xp, w.shape[2:], axis=(2, 3))[:, :, ::sh, ::sw]
    y = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))  # (B, H, W, O)
    return y.transpose(0, 3, 1, 2) + b[None, :, None, None]


def avg_pool2d(node, x):
    (kh, kw), (sh, sw), (ph, pw) = (
        pair(node.kernel_size),
        pair(node.stride),
        pair(node.padding),
    )
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    # Zero padding counts in the divisor (count_include_pad), as the metadata says.
    return win.sum(axis=(4, 5)) / (kh * kw)


def topological(graph):
    preds = {name: [] for name in graph.nodes}
    for a, b in graph.edges:
        preds[b].append(a)
    order, seen = [], set()

    def visit(n, path=()):
        if n in seen:
            return
        assert n not in path, f"cycle through {n}"
        for p in preds[n]:
            visit(p, path + (n,))
        seen.add(n)
        order.append(n)

    for n in graph.nodes:
        visit(n)
    return order, preds


def simulate(graph, images, timesteps, dt):
    order, preds = topological(graph)
    batch = images.shape[0]
    state = {}
    total = None
    for _ in range(timesteps):
        out = {}
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                out[name] = images
                continue
            x = sum(out[p] for p in preds[name])
            if isinstance(node, nir.Conv2d):
                y = conv2d(node, x)
            elif isinstance(node, nir.AvgPool2d):
                y = avg_pool2d(node, x)
            elif isinstance(node, nir.LIF):
                v = state.get(name, np.zeros_like(x))
                v = v + dt / node.tau * (node.v_leak - v + node.r * x)
                z = (v > node.v_threshold).astype(np.float32)
                state[name] = np.where(z > 0, node.v_reset, v)
                y = z
            elif isinstance(node, nir.Scale):
                y = x * node.scale
            elif isinstance(node, nir.Flatten):
                assert int(node.start_dim) == 0 and int(node.end_dim) == -1
                y = x.reshape(batch, -1)
            elif isinstance(node, nir.Affine):
                y = x @ node.weight.T + node.bias
            elif isinstance(node, nir.Output):
                y = x
                total = y if total is None else total + y
            else:
                raise SystemExit(f"node {name}: unsupported NIR type {type(node).__name__}")
            out[name] = y
    return total / timesteps


def main():
    model, data = sys.argv[1], sys.argv[2]
    graph = nir.read(model)
    version = read_version(model)
    meta = graph.metadata
    timesteps, dt = int(meta["timesteps"]), float(meta["dt"])
    d = load_file(data)
    images, labels, host = d["images"], d["labels"], d["predictions"]
    preds = []
    for start in range(0, len(images), 250):
        scores = simulate(graph, images[start : start + 250].astype(np.float64) / 255.0, timesteps, dt)
        preds.append(scores.argmax(axis=1))
    preds = np.concatenate(preds)
    n = len(preds)
    agree = int((preds == host).sum())
    correct = int((preds == labels).sum())
    print(
        f"nir {version}: {len(graph.nodes)} nodes, {len(graph.edges)} edges, T={timesteps}, "
        f"arch {meta['arch']}"
    )
    print(f"accuracy: {correct}/{n} = {100.0 * correct / n:.2f}%")
    print(f"agreement: {agree}/{n} = {100.0 * agree / n:.2f}%")


if __name__ == "__main__":
    main()
