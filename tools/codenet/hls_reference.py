#!/usr/bin/python3
"""Independent check of the FPGA kernel (engine/hls, its C-simulation) on
CoDeNet W4A8 blocks, against PyTorch/torchvision in float64.

test_hls (tests/unit) runs every offloaded block of every W4A8 fixture through
the C-sim and, with HLS_DUMP_DIR set, writes each block's input tensor, offset
tensor and C-sim output.  Here each block is recomputed from the fixture's
weights with torch.nn.functional.conv2d (1x1 and depthwise) and
torchvision.ops.deform_conv2d (deformable: the integer offsets, bounded or
square, expressed as per-tap offsets), in float64, dequantized to the output
scale: r = clamp24(acc) * m / 2^16 + bias, in units of the output LSB, then
the activation clamp ([0, 255] - 128 for ReLU, [-128, 127] linear).  The
intermediate of a fused block is rounded to int8 as the hardware stores it.

Tolerance: |C-sim output - r| <= 0.5 LSB (only the final rounding may differ;
float64 holds every product exactly).  None of this shares code with the
integer simulation (codenet_quant.IntOps) or with the C engine.

usage: hls_reference.py TEST_HLS_EXE FIXTURES_DIR
exit 0 ok, 1 mismatch, 77 skipped (no torch/torchvision or no fixtures)."""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchvision
except ImportError as e:  # pragma: no cover
    print("skipped: %s" % e)
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codenet_format as cf  # noqa: E402

TOL = 0.5 + 1e-9
TAPS = [(ky, kx) for ky in (-1, 0, 1) for kx in (-1, 0, 1)]


def t64(a):
    return torch.as_tensor(np.ascontiguousarray(a)).to(torch.float64)


def requant_real(acc, m, bias, relu):
    """Dequantized output in LSB units (unrounded), activation-clamped."""
    acc = acc.clamp(-(1 << 23), (1 << 23) - 1)
    r = acc * m.view(1, -1, 1, 1) / 65536.0 + bias.view(1, -1, 1, 1)
    return (r.clamp(0, 255) - 128) if relu else r.clamp(-128, 127)


def to_int8(r):
    # the hardware's rounding: floor(x + 1/2) (+2^15 >> 16)
    return torch.floor(r + 0.5)


def block_ref(W, b, x, aux):
    def p(name):
        return (t64(W[name + ".weight"].numpy()), t64(W[name + ".scale"].numpy()),
                t64(W[name + ".bias"].numpy()))

    q = t64(x).permute(2, 0, 1).unsqueeze(0)  # int8 values a, [1,C,H,W]
    r = None
    if b["pw"]:
        w, m, bias = p(b["pw_layer"])
        acc = F.conv2d(q - b["pw_x_zp"], w)
        r = requant_real(acc, m, bias, b["pw_relu"])
        q = to_int8(r)
    if b["dw"]:
        w, m, bias = p(b["dw_layer"])
        xin = q + 128  # padded layers read unsigned tensors: q = a + 128, outside = 0
        C = xin.shape[1]
        if b["deform"] == 0:
            acc = F.conv2d(xin, w, stride=b["stride"], padding=1, groups=C)
        else:
            o = t64(aux).permute(2, 0, 1).unsqueeze(0)
            B = b["bound"]
            if b["deform"] == 1:  # free offsets, clamped
                off = o[:, :18].clamp(-B, B)
            else:  # square: d = clamp(1 + s, 0, B), tap at y + ky*d
                d = (1 + o[:, 0:1]).clamp(0, B)
                chans = []
                for ky, kx in TAPS:
                    chans += [ky * (d - 1), kx * (d - 1)]
                off = torch.cat(chans, 1)
            acc = torchvision.ops.deform_conv2d(xin, off, w, padding=1)
        r = requant_real(acc, m, bias, b["dw_relu"])
    return r[0].permute(1, 2, 0)  # HWC


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    exe, fixtures = sys.argv[1], sys.argv[2]
    if not os.path.exists(os.path.join(fixtures, "fixtures.stamp")):
        print("skipped: no CoDeNet fixtures in %s" % fixtures)
        return 77
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, HLS_DUMP_DIR=tmp, CDN_FIXTURES=fixtures)
        run = subprocess.run([exe, "codenet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
        if run.returncode != 0:
            print(run.stdout)
            print("FAIL test_hls (C-sim vs CPU) failed")
            return 1
        weights, fails, n, exact, worst = {}, 0, 0, 0, 0.0
        per_model = {}
        with open(os.path.join(tmp, "blocks.jsonl")) as f:
            for line in f:
                b = json.loads(line)
                mdl = b["model"]
                if mdl not in weights:
                    _, _, T = cf.load_model(os.path.join(fixtures, mdl + ".json"))
                    weights[mdl] = T
                H, Wd, C = b["in"]
                x = np.fromfile(os.path.join(tmp, "%s.%d.in" % (mdl, b["block"])),
                                np.int8).reshape(H, Wd, C)
                aux = None
                if b["aux_c"]:
                    aux = np.fromfile(os.path.join(tmp, "%s.%d.aux" % (mdl, b["block"])),
                                      np.int8).reshape(H, Wd, b["aux_c"])
                oh, ow, oc = b["out"]
                got = t64(np.fromfile(os.path.join(tmp, "%s.%d.out" % (mdl, b["block"])),
                                      np.int8).reshape(oh, ow, oc))
                ref = block_ref(weights[mdl], b, x, aux)
                err = (got - ref).abs()
                e = float(err.max())
                worst = max(worst, e)
                n += 1
                exact += int(bool((got == to_int8(ref)).all()))
                per_model.setdefault(mdl, [0, 0.0])
                per_model[mdl][0] += 1
                per_model[mdl][1] = max(per_model[mdl][1], e)
                if e > TOL:
                    fails += 1
                    print("FAIL %s block %d (%s %s): max |C-sim - torch| = %.3f LSB" %
                          (mdl, b["block"], b["pw_layer"], b["dw_layer"], e))
        for mdl, (cnt, e) in sorted(per_model.items()):
            print("ok   %s: %d blocks, max |C-sim - torch float64| = %.3f LSB" % (mdl, cnt, e)
                  if e <= TOL else "FAIL %s" % mdl)
        print("%d blocks, %d identical after rounding, worst %.3f LSB (tolerance 0.5)" %
              (n, exact, worst))
        if n == 0:
            print("FAIL no blocks dumped")
            return 1
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
