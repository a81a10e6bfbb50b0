#!/usr/bin/python3
"""Generate random-weight CoDeNet models (fixed seed) plus the reference
outputs the C parity tests compare against.

  /usr/bin/python3 tools/codenet/make_fixtures.py OUTDIR [--set small|std|all]

For each model NAME it writes NAME.json + NAME.safetensors (the model, in the
project format) and NAME.expected.safetensors with
  float models: hm, wh, reg  F32 [C,H,W]  (float reference)
  w4a8 models:  hm, wh, reg  I8  [C,H,W]  (integer simulation)
                trace.<layer> I8 [C,H,W]  (every layer, small models only)
  det  F32 [n,6] (class, score, ymin, xmin, ymax, xmax) decoded detections
and input_<H>x<W>.rgb (raw RGB bytes) shared by the models of that size.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codenet_arch as ca  # noqa: E402
import codenet_format as cf  # noqa: E402
import codenet_quant as cq  # noqa: E402
import codenet_ref as cr  # noqa: E402

SEED = 20260

TINY = {"width": "custom", "stage_channels": [8, 16, 32, 48, 64], "stage_repeats": [1, 2, 1],
        "decoder_channels": [32, 16, 16], "head_channels": 16}

# name: (arch overrides, size, tiny?)
SMALL = {
    "t_conv3x3": (dict(kind="conv3x3"), 64, True),
    "t_dwconv": (dict(kind="dwconv3x3", first="stride2_maxpool"), 64, True),
    "t_full": (dict(kind="full"), 64, True),
    "t_full_v2": (dict(kind="full", mask=True), 64, True),
    "t_full_bound": (dict(kind="full", bound=2.0), 64, True),
    "t_dw": (dict(kind="depthwise"), 64, True),
    "t_dw_bound": (dict(kind="depthwise", bound=1.5), 96, True),
    "t_dw_square": (dict(kind="depthwise", square=True, bound=4.0), 64, True),
    "t_dw_square_free": (dict(kind="depthwise", square=True), 64, True),
    "t_dw_rounded": (dict(kind="depthwise", rounded=True, first="stride2_maxpool"), 64, True),
    "t_full_rounded_square": (dict(kind="full", square=True, rounded=True), 64, True),
}
STD = {
    "s256_dw": (dict(kind="depthwise", bound=8.0), 256, False),
    "s512_full": (dict(kind="full", first="stride2_maxpool"), 512, False),
    "s256_2x_square": (dict(width="2.0x", kind="depthwise", square=True, bound=6.0), 256, False),
}
# the w4a8 twins (no DCNv2 mask in w4a8)
QUANT_OF = {"t_conv3x3", "t_dwconv", "t_full", "t_dw", "t_dw_bound", "t_dw_square",
            "t_full_rounded_square", "s256_dw", "s512_full", "s256_2x_square"}


def make_image(h, w, seed):
    """A smooth synthetic image with a few boxes (deterministic)."""
    g = np.random.default_rng(seed)
    low = g.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3)).astype(np.float32)
    img = np.repeat(np.repeat(low, 16, 0), 16, 1)[:h, :w]
    for _ in range(6):
        y0, x0 = g.integers(0, h - 8), g.integers(0, w - 8)
        y1, x1 = y0 + g.integers(4, h // 3), x0 + g.integers(4, w // 3)
        img[y0:y1, x0:x1] = g.integers(0, 256, 3)
    img += g.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def build(name, over, size, tiny, quant):
    kw = dict(over)
    width = kw.pop("width", "1.0x")
    aj = ca.default_arch(width=width, size=size, quant=quant, **kw)
    if tiny:
        aj.update(TINY)
        aj["classes"] = 5
        aj["labels"] = ["car", "person", "bus", "bike", "dog"]
    aj["decode"] = {"max_detections": 100, "score_threshold": 0.0}
    return aj


def det_tensor(dets):
    if not dets:
        return torch.zeros((0, 6), dtype=torch.float32)
    return torch.tensor([list(d) for d in dets], dtype=torch.float32)


def generate(out, names):
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    everything = dict(SMALL, **STD)
    for name in names:
        over, size, tiny = everything[name]
        gen = torch.Generator().manual_seed(SEED + sum(map(ord, name)))
        img = make_image(size, size, SEED + size)
        img.tofile(os.path.join(out, "input_%dx%d.rgb" % (size, size)))
        calib = np.stack([img, make_image(size, size, SEED + size + 1)])
        aj = build(name, over, size, tiny, "float")
        A = ca.check_arch(aj)
        net = cr.CoDeNet(A)
        net.init_random(gen)
        net.calibrate_bn(cr.input_float(calib))
        P = net.export_params()
        aj["weights"] = name + ".safetensors"
        cf.save_model(os.path.join(out, name + ".json"), aj, P)
        hm, wh, reg = cr.forward_float(A, P, img, double=True)
        hm, wh, reg = [t[0].float().numpy() for t in (hm, wh, reg)]
        dets = cr.decode(A, hm, wh, reg)
        cf.write_safetensors(os.path.join(out, name + ".expected.safetensors"),
                             {"hm": hm, "wh": wh, "reg": reg, "det": det_tensor(dets)})
        print("%s: float, %d detections" % (name, len(dets)))
        if name not in QUANT_OF:
            continue
        qname = name + "_q"
        qj = dict(aj, quantization="w4a8", weights=qname + ".safetensors")
        QA = ca.check_arch(qj)
        Q = cq.quantize(QA, P, calib)
        cf.save_model(os.path.join(out, qname + ".json"), qj, Q)
        heads, ops = cq.forward_int(QA, Q, img)
        fl = [cq.dequant(a, s) for a, s in heads]
        dets = cr.decode(QA, *fl)
        ex = {"hm": heads[0][0], "wh": heads[1][0], "reg": heads[2][0], "det": det_tensor(dets)}
        if tiny:
            for k, v in ops.trace.items():
                ex["trace." + k] = v[0].numpy().astype(np.int8)
        cf.write_safetensors(os.path.join(out, qname + ".expected.safetensors"), ex)
        print("%s: w4a8, %d detections" % (qname, len(dets)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--set", default="small", choices=("small", "std", "all"))
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--stamp", help="also write this file when done (build systems)")
    a = ap.parse_args()
    names = a.only or (list(SMALL) if a.set == "small" else list(STD) if a.set == "std"
                       else list(SMALL) + list(STD))
    generate(a.out, names)
    with open(os.path.join(a.out, "fixtures.stamp"), "w") as f:
        json.dump(names, f)
    if a.stamp:
        with open(a.stamp, "w") as f:
            f.write("ok\n")


if __name__ == "__main__":
    main()
