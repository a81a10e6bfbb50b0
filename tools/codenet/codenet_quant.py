"""W4A8 quantization of CoDeNet and THE definition of its integer arithmetic.

The C engine (engine/codenet/) and the future FPGA path must agree with
IntOps bit for bit.  Definition:

Activations: int8 a with a per-tensor scale s.  Two domains:
  unsigned (ReLU outputs, the input image): real = s * (a + 128), q = a + 128 in [0,255]
  signed   (linear outputs):                real = s * a,         q = a       in [-128,127]
  The image goes in as a = pixel - 128 with s = 1/255.
Weights: 4-bit symmetric per output channel, w in [-7,7] (stored one per int8),
  real = s_w[c] * w.
Layer (conv, depthwise, deformable):
  acc  = sum over taps and input channels of w * q  (out-of-image taps read
         a = -128, i.e. q = 0 in the unsigned domain; padded layers only ever
         read unsigned tensors)
  acc  = clamp(acc, -2^23, 2^23 - 1)                 (24-bit accumulator)
  v    = ((acc * m[c] + 2^15) >> 16) + bias[c]       (m: 16-bit unsigned multiplier,
                                                      >> is an arithmetic shift)
  ReLU layer:   a_out = clamp(v, 0, 255) - 128        (unsigned domain)
  linear layer: a_out = clamp(v, -128, 127)           (signed domain)
  m[c] = round(s_in * s_w[c] / s_out * 2^16) clamped to [0, 65535];
  bias[c] = round(b[c] / s_out).
Deformable layers: the offset conv is a linear layer whose output scale is one
  pixel, so its int8 output IS the integer offset (the rounded variant; W4A8
  always samples by gather, there is no interpolation and no DCNv2 mask).
  Bounded: offsets clamped to [-B, B] (B = floor(bound)); square: dilation
  d = clamp(1 + o, 0, B) (no upper clamp if unbounded).
Concatenated tensors share one scale (the stage key), so split / shuffle /
concat / nearest upsample / 3x3 max-pool move int8 values unchanged.
Heads (linear) are dequantized with their output scale (tensor
<head>.out.oscale) and decoded in float32 exactly like the float path.

Accumulation is done with float64 convolutions: every partial sum is an
integer below 2^53, so the result is exact.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

import codenet_arch as ca
import codenet_ref as cr

IN_SCALE = 1.0 / 255.0


class QT:
    """Integer tensor: a (float64 tensor holding int8 values), scale, domain."""

    def __init__(self, a, scale, signed):
        self.a, self.scale, self.signed = a, scale, signed

    @property
    def q(self):
        return self.a if self.signed else self.a + 128


def requant(acc, m, bias, relu):
    acc = acc.to(torch.int64).clamp(-(1 << 23), (1 << 23) - 1)
    v = torch.div(acc * m.view(1, -1, 1, 1) + (1 << 15), 1 << 16, rounding_mode="floor")
    v = v + bias.view(1, -1, 1, 1)
    if relu:
        return v.clamp(0, 255) - 128
    return v.clamp(-128, 127)


def int_positions(off_a, A, H, W):
    """Integer sample positions from the offset layer's int8 output."""
    B = off_a.shape[0]
    ys = torch.arange(H, dtype=torch.int64).view(1, 1, H, 1)
    xs = torch.arange(W, dtype=torch.int64).view(1, 1, 1, W)
    ky = torch.tensor([t[0] for t in cr.TAPS]).view(1, 9, 1, 1)
    kx = torch.tensor([t[1] for t in cr.TAPS]).view(1, 9, 1, 1)
    o = off_a.to(torch.int64)
    B_ = int(math.floor(A["bound"]))
    if A["square"]:
        d = 1 + o[:, 0:1]
        d = d.clamp(min=0) if B_ == 0 else d.clamp(0, B_)
        py, px = ys + ky * d, xs + kx * d
    else:
        dy, dx = o[:, 0:18:2], o[:, 1:18:2]
        if B_ > 0:
            dy, dx = dy.clamp(-B_, B_), dx.clamp(-B_, B_)
        py, px = ys + ky + dy, xs + kx + dx
    return py.expand(B, 9, H, W), px.expand(B, 9, H, W)


def int_gather(q, py, px):
    """q [B,C,H,W] float64 (unsigned-domain q); integer positions -> [B,C,9,H,W], 0 outside."""
    B, C, H, W = q.shape
    K, Ho, Wo = py.shape[1:]
    valid = (py >= 0) & (py < H) & (px >= 0) & (px < W)
    idx = (py.clamp(0, H - 1) * W + px.clamp(0, W - 1)).reshape(B, 1, K * Ho * Wo)
    v = torch.gather(q.reshape(B, C, H * W), 2, idx.expand(B, C, K * Ho * Wo))
    return v.view(B, C, K, Ho, Wo) * valid.unsqueeze(1).to(q.dtype)


class IntOps:
    """The integer simulation: executes the W4A8 tensors Q."""

    def __init__(self, A, Q):
        self.A, self.Q = A, Q
        self.oscale = {}
        self.trace = {}

    def _layer(self, name, x, k, stride, groups, relu):
        Q = self.Q
        if k > 1:
            assert not x.signed, name + ": padded layer reads a signed tensor"
        acc = F.conv2d(x.q, Q[name + ".weight"].to(torch.float64), None, stride, k // 2, 1,
                       groups)
        a = requant(acc, Q[name + ".scale"].to(torch.int64), Q[name + ".bias"].to(torch.int64),
                    relu)
        return a.to(torch.float64)

    def conv(self, name, x, k, stride, groups, relu, key, cout=None):
        a = self._layer(name, x, k, stride, groups, relu)
        s = float(self.Q[name + ".oscale"][0]) if (name + ".oscale") in self.Q else None
        self.trace[name] = a
        return QT(a, s, not relu)

    def maxpool(self, x):
        # a is monotonic in the real value; pad with -128 (never above a ReLU output)
        return QT(F.max_pool2d(F.pad(x.a, (1, 1, 1, 1), value=-128.0), 3, 2, 0), x.scale,
                  x.signed)

    def split(self, x):
        c = x.a.shape[1] // 2
        return QT(x.a[:, :c], x.scale, x.signed), QT(x.a[:, c:], x.scale, x.signed)

    def concat_shuffle(self, a, b):
        B, C, H, W = a.a.shape
        return QT(torch.stack([a.a, b.a], 2).reshape(B, 2 * C, H, W), a.scale, a.signed)

    def upsample(self, x):
        return QT(F.interpolate(x.a, scale_factor=2, mode="nearest"), x.scale, x.signed)

    def dcn(self, n, x, cout, depthwise):
        Q = self.Q
        off = self._layer(n + ".offset", x, 3, 1, 1, False)
        self.trace[n + ".offset"] = off
        B, C, H, W = x.a.shape
        py, px = int_positions(off, self.A, H, W)
        s = int_gather(x.q, py, px)  # [B,C,9,H,W]
        w = Q[n + ".dcn.weight"].to(torch.float64)
        if depthwise:
            acc = torch.einsum("bckhw,ck->bchw", s, w.reshape(C, 9))
        else:
            acc = torch.einsum("bckhw,ock->bohw", s, w.reshape(w.shape[0], C, 9))
        a = requant(acc, Q[n + ".dcn.scale"].to(torch.int64), Q[n + ".dcn.bias"].to(torch.int64),
                    True).to(torch.float64)
        self.trace[n + ".dcn"] = a
        return QT(a, None, False)


def input_int(rgb):
    t = torch.as_tensor(np.ascontiguousarray(rgb))
    if t.dim() == 3:
        t = t.unsqueeze(0)
    return QT(t.permute(0, 3, 1, 2).to(torch.float64) - 128, IN_SCALE, False)


def forward_int(A, Q, rgb):
    """Returns the three heads as int8 numpy arrays [C,H,W] and their scales."""
    ops = IntOps(A, Q)
    with torch.no_grad():
        hm, wh, reg = ca.network(A, ops, input_int(rgb))
    return [(t.a[0].numpy().astype(np.int8), t.scale) for t in (hm, wh, reg)], ops


def dequant(a, s):
    return a.astype(np.float32) * np.float32(s)


# ---------------------------------------------------------------------------
# quantizer

class QuantOps(cr.FloatOps):
    """Walks the float network with known activation scales and emits Q.
    Tensors: (float tensor, scale, signed)."""

    def __init__(self, A, P, amax):
        super().__init__(A, P)
        self.amax = amax
        self.Q = {}

    def _scale(self, key, relu):
        m = max(self.amax.get(key, 0.0), 1e-6)
        return m / 255.0 if relu else m / 127.0

    def _emit(self, name, s_in, s_out):
        w = self.P[name + ".weight"].double()
        b = self.P[name + ".bias"].double()
        wmax = w.abs().reshape(w.shape[0], -1).max(1).values
        s_w = torch.where(wmax > 0, wmax / 7.0, torch.ones_like(wmax))
        wq = torch.round(w / s_w.view(-1, 1, 1, 1)).clamp(-7, 7).to(torch.int8)
        m = torch.round(s_in * s_w / s_out * 65536.0).clamp(0, 65535).to(torch.int32)
        bq = torch.round(b / s_out).clamp(-(1 << 30), 1 << 30).to(torch.int32)
        self.Q[name + ".weight"] = wq.contiguous()
        self.Q[name + ".scale"] = m.contiguous()
        self.Q[name + ".bias"] = bq.contiguous()

    def conv(self, name, x, k, stride, groups, relu, key, cout=None):
        xf, s_in, _ = x
        y = super().conv(name, xf, k, stride, groups, relu, key)
        s_out = self._scale(key, relu)
        self._emit(name, s_in, s_out)
        if name.startswith("head.") and name.endswith(".out"):
            self.Q[name + ".oscale"] = torch.tensor([s_out], dtype=torch.float32)
        return (y, s_out, not relu)

    def maxpool(self, x):
        return (super().maxpool(x[0]), x[1], x[2])

    def split(self, x):
        a, b = super().split(x[0])
        return (a, x[1], x[2]), (b, x[1], x[2])

    def concat_shuffle(self, a, b):
        assert a[1] == b[1], "concat partners must share a scale"
        return (super().concat_shuffle(a[0], b[0]), a[1], a[2])

    def upsample(self, x):
        return (super().upsample(x[0]), x[1], x[2])

    def dcn(self, n, x, cout, depthwise):
        xf, s_in, _ = x
        self._emit(n + ".offset", s_in, 1.0)  # one LSB = one pixel
        y = super().dcn(n, xf, cout, depthwise)
        s_out = self._scale(n + ".dcn", True)
        self._emit(n + ".dcn", s_in, s_out)
        return (y, s_out, False)


def quantize(A, P, calib_rgb):
    """Calibrate activation ranges on calib_rgb (uint8 [B,H,W,3]) with the
    float network (rounded offsets, as the integer path samples) and return
    the W4A8 tensor dict."""
    Ar = dict(A, rounded=True)
    amax = {}
    cr.forward_float(Ar, P, calib_rgb, record=amax)
    ops = QuantOps(Ar, P, amax)
    with torch.no_grad():
        ca.network(Ar, ops, (cr.input_float(calib_rgb), IN_SCALE, False))
    return ops.Q
