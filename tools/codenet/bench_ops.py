#!/usr/bin/python3
"""CoDeNet operator study: the engine's operators (build/tools/detd-codenet-ops)
side by side with PyTorch / torchvision.ops.deform_conv2d on the same shapes
and thread counts, in one run; prints a Markdown table.

  /usr/bin/python3 tools/codenet/bench_ops.py [--build build] [--reps 3]
        [--shapes 64x64x256,...] [--threads 1,2] [--models]

Shapes HxWxC: 3x3 conv and full DCN map C -> C (or C -> COUT with HxWxCxCOUT);
the depthwise ops work on C channels.  Offsets are random (about +-3 px) and
precomputed: only the deformable operator itself is timed, on both sides.
torchvision has no int8 deformable op: its column is fp32.  Variants for
torchvision are expressed as per-tap offsets (bounded: clamped, square:
k*d, rounded: rounded), which is how a user of torchvision would run them.
--models also times whole random-weight 1.0x networks at 256^2 and 512^2
(C engine fp32 / w4a8 vs the PyTorch float reference).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codenet_ref as cr  # noqa: E402

OPS = ["conv3x3", "dw3x3", "dcn_full", "dcn_dw", "dcn_dw_bound", "dcn_dw_square",
       "dcn_dw_rounded"]


# DETD_BENCH_CPUTIME=1: process CPU time on both sides (the C tool reads the
# same variable) -- what an idle core would take; meaningful for 1 thread.
CLOCK = time.process_time if os.environ.get("DETD_BENCH_CPUTIME") == "1" else time.perf_counter


def t_median(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = CLOCK()
        fn()
        ts.append((CLOCK() - t0) * 1e3)
    return statistics.median(ts)


def torch_ops(H, W, C, CO, threads, reps):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, C, H, W, generator=g)
    off = (torch.rand(1, 18, H, W, generator=g) * 2 - 1) * 3
    s = (torch.rand(1, 1, H, W, generator=g) * 2 - 1) * 3
    wf = torch.randn(CO, C, 3, 3, generator=g) * 0.1
    wd = torch.randn(C, 1, 3, 3, generator=g) * 0.1

    def offs(A, o):
        py, px = cr.sample_positions(o, A, H, W)
        ys = torch.arange(H, dtype=o.dtype).view(1, 1, H, 1)
        xs = torch.arange(W, dtype=o.dtype).view(1, 1, 1, W)
        ky = torch.tensor([t[0] for t in cr.TAPS], dtype=o.dtype).view(1, 9, 1, 1)
        kx = torch.tensor([t[1] for t in cr.TAPS], dtype=o.dtype).view(1, 9, 1, 1)
        return torch.stack([py - ys - ky, px - xs - kx], 2).reshape(1, 18, H, W).contiguous()

    base = dict(square=False, rounded=False, bound=0.0, mask=False)
    o_bound = offs(dict(base, bound=2.0), off)
    o_square = offs(dict(base, square=True, bound=4.0), s)
    o_round = offs(dict(base, rounded=True), off)
    dc = torchvision.ops.deform_conv2d
    with torch.no_grad():
        return {
            "conv3x3": t_median(lambda: F.conv2d(x, wf, padding=1), reps),
            "dw3x3": t_median(lambda: F.conv2d(x, wd, padding=1, groups=C), reps),
            "dcn_full": t_median(lambda: dc(x, off, wf, padding=1), reps),
            "dcn_dw": t_median(lambda: dc(x, off, wd, padding=1), reps),
            "dcn_dw_bound": t_median(lambda: dc(x, o_bound, wd, padding=1), reps),
            "dcn_dw_square": t_median(lambda: dc(x, o_square, wd, padding=1), reps),
            "dcn_dw_rounded": t_median(lambda: dc(x, o_round, wd, padding=1), reps),
        }


def engine_ops(exe, H, W, C, CO, threads, reps):
    out = subprocess.run([exe, "ops", str(H), str(W), str(C), str(CO), str(threads), str(reps)],
                         check=True, capture_output=True, text=True).stdout
    return {j["op"]: j for j in map(json.loads, out.splitlines())}


class TorchvisionOps(cr.FloatOps):
    """The float network with torchvision's deformable op (variants expressed as
    per-tap offsets): the fastest PyTorch formulation available here."""

    def dcn(self, n, x, cout, depthwise):
        off = F.conv2d(x, self.P[n + ".offset.weight"], self.P[n + ".offset.bias"], 1, 1)
        H, W = x.shape[2:]
        py, px = cr.sample_positions(off, self.A, H, W)
        ys = torch.arange(H, dtype=x.dtype).view(1, 1, H, 1)
        xs = torch.arange(W, dtype=x.dtype).view(1, 1, 1, W)
        ky = torch.tensor([t[0] for t in cr.TAPS], dtype=x.dtype).view(1, 9, 1, 1)
        kx = torch.tensor([t[1] for t in cr.TAPS], dtype=x.dtype).view(1, 9, 1, 1)
        o = torch.stack([py - ys - ky, px - xs - kx], 2).reshape(x.shape[0], 18, H, W)
        mask = torch.sigmoid(off[:, 18:27]) if self.A["mask"] else None
        y = torchvision.ops.deform_conv2d(x, o.contiguous(), self.P[n + ".dcn.weight"],
                                          self.P[n + ".dcn.bias"], padding=1, mask=mask)
        return F.relu(y)


def models(exe, threads_list, reps):
    import codenet_arch as ca
    import codenet_format as cf
    import codenet_quant as cq
    import make_fixtures as mf
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for size, kind in ((256, "depthwise"), (512, "depthwise"), (256, "full")):
            aj = ca.default_arch(size=size, kind=kind, bound=8.0)
            A = ca.check_arch(aj)
            net = cr.CoDeNet(A)
            net.init_random(torch.Generator().manual_seed(1))
            img = mf.make_image(size, size, 1)
            net.calibrate_bn(cr.input_float(img[None]))
            P = net.export_params()
            name = "m%d_%s" % (size, kind)
            aj["weights"] = name + ".safetensors"
            cf.save_model(os.path.join(d, name + ".json"), aj, P)
            qj = dict(aj, quantization="w4a8", weights=name + "_q.safetensors")
            cf.save_model(os.path.join(d, name + "_q.json"), qj,
                          cq.quantize(ca.check_arch(qj), P, img[None]))
            for th in threads_list:
                torch.set_num_threads(th)
                x = cr.input_float(img)

                def tv_net():
                    with torch.no_grad():
                        ca.network(A, TorchvisionOps(A, P), x)
                tt = t_median(tv_net, reps)
                res = {}
                for q in ("", "_q"):
                    out = subprocess.run([exe, "model", os.path.join(d, name + q + ".json"),
                                          str(th), str(reps)], check=True, capture_output=True,
                                         text=True).stdout
                    res[q] = json.loads(out)
                dec = sum(v for k, v in res[""]["layers"].items() if k.startswith("dec."))
                decq = sum(v for k, v in res["_q"]["layers"].items() if k.startswith("dec."))
                rows.append((name, th, res[""]["gmac"], res[""]["total_ms"], res["_q"]["total_ms"],
                             tt, dec, decq))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--shapes", default="64x64x256,8x8x1024x256,16x16x256x128,32x32x128x64,"
                    "16x16x256,32x32x128,64x64x64")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--models", action="store_true")
    a = ap.parse_args()
    exe = os.path.join(a.build, "tools", "detd-codenet-ops")
    ths = [int(t) for t in a.threads.split(",")]
    print("| shape HxWxC(->Cout) | op | thr | engine fp32 ms | engine int8 ms | torch fp32 ms |")
    print("|---|---|---|---|---|---|")
    for sh in a.shapes.split(","):
        p = [int(v) for v in sh.split("x")]
        H, W, C = p[:3]
        CO = p[3] if len(p) > 3 else C
        for th in ths:
            e = engine_ops(exe, H, W, C, CO, th, a.reps)
            t = torch_ops(H, W, C, CO, th, a.reps)
            for op in OPS:
                print("| %s | %s | %d | %.2f | %.2f | %.2f |" % (sh, op, th, e[op]["fp32_ms"],
                                                                e[op]["int8_ms"], t[op]))
            sys.stdout.flush()
    if a.models:
        print()
        print("| network | thr | GMAC | engine fp32 ms | engine w4a8 ms | PyTorch+torchvision fp32 ms "
              "| decoder fp32 ms | decoder w4a8 ms |")
        print("|---|---|---|---|---|---|---|---|")
        for r in models(exe, ths, a.reps):
            print("| %s | %d | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f |" % r)


if __name__ == "__main__":
    main()
