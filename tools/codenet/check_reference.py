#!/usr/bin/python3
"""Self-checks of the Python reference (run by meson when torch is importable):
 1. our deformable convolution == torchvision.ops.deform_conv2d (the
    independent oracle) for every variant: full v1/v2, depthwise, bounded,
    square (expressed as per-tap offsets), rounded;
 2. the BN-folded export computes what the trainable module computes;
 3. the integer simulation's dequantized heads follow the float network.
Exit status 0 on success."""
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codenet_arch as ca  # noqa: E402
import codenet_quant as cq  # noqa: E402
import codenet_ref as cr  # noqa: E402
import make_fixtures as mf  # noqa: E402

torch.set_num_threads(1)
fails = 0


def check(cond, what):
    global fails
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        fails += 1


def rel(a, b):
    return float((a - b).abs().max() / max(float(b.abs().max()), 1e-12))


def variant(**kw):
    A = dict(square=False, rounded=False, bound=0.0, mask=False)
    A.update(kw)
    return A


def tv_offsets(off, A, H, W):
    """Express any variant as torchvision per-tap (dy, dx) offsets."""
    py, px = cr.sample_positions(off, A, H, W)
    ys = torch.arange(H, dtype=off.dtype).view(1, 1, H, 1)
    xs = torch.arange(W, dtype=off.dtype).view(1, 1, 1, W)
    ky = torch.tensor([t[0] for t in cr.TAPS], dtype=off.dtype).view(1, 9, 1, 1)
    kx = torch.tensor([t[1] for t in cr.TAPS], dtype=off.dtype).view(1, 9, 1, 1)
    dy, dx = py - ys - ky, px - xs - kx
    return torch.stack([dy, dx], 2).reshape(off.shape[0], 18, H, W)


def dcn_vs_torchvision():
    g = torch.Generator().manual_seed(1)
    B, C, O, H, W = 2, 6, 5, 9, 11
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    cases = [("full v1", variant(), False), ("full v2 (mask)", variant(mask=True), False),
             ("depthwise", variant(), True), ("depthwise bounded", variant(bound=1.5), True),
             ("full bounded", variant(bound=2.0), False),
             ("depthwise square", variant(square=True, bound=3.0), True),
             ("full square unbounded", variant(square=True), False),
             ("depthwise rounded", variant(rounded=True), True),
             ("square rounded", variant(square=True, rounded=True), True)]
    for what, A, dw in cases:
        noff = 1 if A["square"] else (27 if A["mask"] else 18)
        off = torch.randn(B, noff, H, W, generator=g, dtype=torch.float64) * 2.5
        w = torch.randn((C, 1, 3, 3) if dw else (O, C, 3, 3), generator=g, dtype=torch.float64)
        b = torch.randn(w.shape[0], generator=g, dtype=torch.float64)
        ours = cr.deform_conv(x, off, w, b, A, dw)
        mask = torch.sigmoid(off[:, 18:27]) if A["mask"] else None
        ref = torchvision.ops.deform_conv2d(x, tv_offsets(off, A, H, W), w, b, padding=1,
                                            mask=mask)
        check(rel(ours, ref) < 1e-10, "dcn %-22s vs torchvision rel %.2e" % (what, rel(ours, ref)))


def folded_vs_module():
    for name in ("t_full_v2", "t_dw_square", "t_dwconv"):
        over, size, tiny = mf.SMALL[name]
        A = ca.check_arch(mf.build(name, over, size, tiny, "float"))
        net = cr.CoDeNet(A)
        net.init_random(torch.Generator().manual_seed(3))
        img = mf.make_image(size, size, 5)
        net.calibrate_bn(cr.input_float(img[None]))
        with torch.no_grad():
            ref = net(cr.input_float(img))
        got = cr.forward_float(A, net.export_params(), img)
        for h, a, b in zip(("hm", "wh", "reg"), got, ref):
            check(rel(a, b) < 1e-4, "%s folded export vs module, %s: rel %.2e" % (name, h, rel(a, b)))


def int_follows_float():
    for name in ("t_dw", "t_full"):
        over, size, tiny = mf.SMALL[name]
        A = ca.check_arch(mf.build(name, over, size, tiny, "float"))
        net = cr.CoDeNet(A)
        net.init_random(torch.Generator().manual_seed(4))
        img = mf.make_image(size, size, 6)
        net.calibrate_bn(cr.input_float(img[None]))
        P = net.export_params()
        QA = dict(A, quant="w4a8")
        Q = cq.quantize(QA, P, img[None])
        heads, _ = cq.forward_int(QA, Q, img)
        fl = cr.forward_float(dict(A, rounded=True), P, img)
        for h, (a, s), f in zip(("hm", "wh", "reg"), heads, fl):
            d = torch.from_numpy(cq.dequant(a, s)).flatten().double()
            f = f[0].flatten().double()
            c = float(torch.corrcoef(torch.stack([d, f]))[0, 1])
            check(c > 0.3, "%s w4a8 %s correlates with float: %.3f" % (name, h, c))


if __name__ == "__main__":
    dcn_vs_torchvision()
    folded_vs_module()
    int_follows_float()
    sys.exit(1 if fails else 0)
