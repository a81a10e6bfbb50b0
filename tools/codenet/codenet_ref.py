"""Float reference of CoDeNet in PyTorch: our own deformable convolution
(every variant), the float executor over exported (BN-folded) parameters,
the trainable nn.Module and CenterNet decoding.

Deformable sampling (matches torchvision.ops.deform_conv2d, which the tests
use as the independent oracle): tap k = (ky, kx) in {-1,0,1}^2 of output
pixel (y, x) samples the input at
    free/bounded : (y + ky + dy_k, x + kx + dx_k), dy/dx clamped to [-B, B] if bounded
    square       : (y + ky * d, x + kx * d), d = clamp(1 + s, 0, B or inf), one s per pixel
    rounded      : offsets (or d) rounded half-to-even first: a pure gather
with bilinear interpolation in which each of the four corners outside the
image contributes zero.  The offset tensor layout is torchvision's:
channel 2k is dy of tap k, 2k+1 is dx, k = (ky+1)*3 + (kx+1); DCNv2 adds 9
mask logits (channels 18..26) that go through a sigmoid.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import codenet_arch as ca

TAPS = [(ky, kx) for ky in (-1, 0, 1) for kx in (-1, 0, 1)]


def sample_positions(off, A, H, W):
    """off [B, C_off, H, W] -> (py, px) [B, 9, H, W] float sample positions."""
    B = off.shape[0]
    dt = off.dtype
    ys = torch.arange(H, dtype=dt).view(1, 1, H, 1)
    xs = torch.arange(W, dtype=dt).view(1, 1, 1, W)
    ky = torch.tensor([t[0] for t in TAPS], dtype=dt).view(1, 9, 1, 1)
    kx = torch.tensor([t[1] for t in TAPS], dtype=dt).view(1, 9, 1, 1)
    bound = A["bound"]
    if A["square"]:
        s = off[:, 0:1]
        if A["rounded"]:
            s = torch.round(s)
        d = 1 + s
        d = d.clamp(min=0) if bound == 0 else d.clamp(0, bound)
        py = ys + ky * d
        px = xs + kx * d
    else:
        dy = off[:, 0:18:2]
        dx = off[:, 1:18:2]
        if A["rounded"]:
            dy, dx = torch.round(dy), torch.round(dx)
        if bound > 0:
            dy, dx = dy.clamp(-bound, bound), dx.clamp(-bound, bound)
        py = ys + ky + dy
        px = xs + kx + dx
    return py.expand(B, 9, H, W), px.expand(B, 9, H, W)


def bilinear_gather(x, py, px):
    """x [B,C,H,W]; py/px [B,K,Ho,Wo] -> samples [B,C,K,Ho,Wo] (zero outside)."""
    B, C, H, W = x.shape
    K, Ho, Wo = py.shape[1:]
    y0 = torch.floor(py)
    x0 = torch.floor(px)
    ly = py - y0
    lx = px - x0
    hy = 1 - ly
    hx = 1 - lx
    flat = x.reshape(B, C, H * W)
    out = None
    for yy, xx, wgt in ((y0, x0, hy * hx), (y0, x0 + 1, hy * lx), (y0 + 1, x0, ly * hx),
                        (y0 + 1, x0 + 1, ly * lx)):
        valid = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
        idx = (yy.clamp(0, H - 1) * W + xx.clamp(0, W - 1)).long().reshape(B, 1, K * Ho * Wo)
        v = torch.gather(flat, 2, idx.expand(B, C, K * Ho * Wo)).view(B, C, K, Ho, Wo)
        t = v * (wgt * valid).unsqueeze(1)
        out = t if out is None else out + t
    return out


def deform_conv(x, off, weight, bias, A, depthwise):
    """Our deformable 3x3 convolution, stride 1, 'same' size."""
    B, C, H, W = x.shape
    py, px = sample_positions(off, A, H, W)
    s = bilinear_gather(x, py, px)  # [B,C,9,H,W]
    if A["mask"]:
        s = s * torch.sigmoid(off[:, 18:27]).unsqueeze(1)
    if depthwise:
        y = torch.einsum("bckhw,ck->bchw", s, weight.reshape(C, 9))
    else:
        y = torch.einsum("bckhw,ock->bohw", s, weight.reshape(weight.shape[0], C, 9))
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


# ---------------------------------------------------------------------------
# float executor over the exported parameter dict (BN folded into conv)

class FloatOps:
    def __init__(self, A, P, record=None):
        self.A, self.P, self.record = A, P, record

    def _rec(self, key, y, relu):
        if self.record is not None:
            m = float(y.abs().max()) if y.numel() else 0.0
            self.record[key] = max(self.record.get(key, 0.0), m)

    def conv(self, name, x, k, stride, groups, relu, key, cout=None):
        y = F.conv2d(x, self.P[name + ".weight"], self.P[name + ".bias"], stride, k // 2, 1,
                     groups)
        if relu:
            y = F.relu(y)
        self._rec(key, y, relu)
        return y

    def maxpool(self, x):
        return F.max_pool2d(x, 3, 2, 1)

    def split(self, x):
        c = x.shape[1] // 2
        return x[:, :c], x[:, c:]

    def concat_shuffle(self, a, b):
        B, C, H, W = a.shape
        return torch.stack([a, b], 2).reshape(B, 2 * C, H, W)

    def upsample(self, x):
        return F.interpolate(x, scale_factor=2, mode="nearest")

    def dcn(self, n, x, cout, depthwise):
        off = F.conv2d(x, self.P[n + ".offset.weight"], self.P[n + ".offset.bias"], 1, 1)
        y = deform_conv(x, off, self.P[n + ".dcn.weight"], self.P[n + ".dcn.bias"], self.A,
                        depthwise)
        y = F.relu(y)
        self._rec(n + ".dcn", y, True)
        return y


def input_float(rgb):
    """rgb uint8 [H,W,3] (or [B,H,W,3]) -> float NCHW in [0,1]."""
    t = torch.as_tensor(np.ascontiguousarray(rgb))
    if t.dim() == 3:
        t = t.unsqueeze(0)
    return t.permute(0, 3, 1, 2).to(torch.float32) / 255.0


def forward_float(A, P, rgb, record=None, double=False):
    """Float forward on exported parameters.  double=True evaluates in float64
    (the parity fixtures: the C engine's float32 error is then measured
    against an accurate reference, not against another float32 rounding)."""
    x = input_float(rgb)
    if double:
        P = {k: v.double() for k, v in P.items()}
        x = x.double()
    with torch.no_grad():
        return ca.network(A, FloatOps(A, P, record), x)


# ---------------------------------------------------------------------------
# CenterNet decoding (shared by the float and the integer path)

def decode(A, hm, wh, reg):
    """hm [C,H,W] logits, wh/reg [2,H,W] (float32 numpy).  Peaks: a logit equal
    to its 3x3 neighbourhood max (sigmoid is monotonic, so peaks and ranking are
    taken on logits: exact for the integer path).  Top-K by logit, ties by
    flat index (class-major).  Returns a list of
    (class, score, ymin, xmin, ymax, xmax) normalized to the input."""
    hm = np.asarray(hm, np.float32)
    C, H, W = hm.shape
    pad = np.full((C, H + 2, W + 2), -np.inf, np.float32)
    pad[:, 1:-1, 1:-1] = hm
    mx = np.max(np.stack([pad[:, dy:dy + H, dx:dx + W] for dy in range(3) for dx in range(3)]), 0)
    flat = hm.reshape(-1)
    peak = (hm == mx).reshape(-1)
    idx = np.nonzero(peak)[0]
    order = np.lexsort((idx, -flat[idx].astype(np.float64)))
    idx = idx[order][:A["max_det"]]
    out = []
    f4 = np.float32(4.0)
    half = np.float32(0.5)
    Wi, Hi = np.float32(A["width"]), np.float32(A["height"])
    for i in idx:
        c, rem = divmod(int(i), H * W)
        y, x = divmod(rem, W)
        score = np.float32(1) / (np.float32(1) + np.exp(-flat[i], dtype=np.float32))
        if score < np.float32(A["thresh"]):
            continue
        cx = np.float32(x) + np.float32(reg[0, y, x])
        cy = np.float32(y) + np.float32(reg[1, y, x])
        w, h = np.float32(wh[0, y, x]), np.float32(wh[1, y, x])
        xmin = (cx - w * half) * f4 / Wi
        xmax = (cx + w * half) * f4 / Wi
        ymin = (cy - h * half) * f4 / Hi
        ymax = (cy + h * half) * f4 / Hi
        out.append((c, float(score), float(ymin), float(xmin), float(ymax), float(xmax)))
    return out


# ---------------------------------------------------------------------------
# trainable module

class Layer(nn.Module):
    def __init__(self, L, bn):
        super().__init__()
        self.conv = nn.Conv2d(L["cin"], L["cout"], L["k"], L["stride"], L["k"] // 2,
                              groups=L["groups"], bias=not bn)
        self.bn = nn.BatchNorm2d(L["cout"]) if bn else None

    def folded(self):
        w = self.conv.weight.detach()
        if self.bn is None:
            return w.clone(), self.conv.bias.detach().clone()
        bn = self.bn
        g = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        return (w * g.view(-1, 1, 1, 1)).contiguous(), bn.bias.detach() - bn.running_mean * g


class ModuleOps(FloatOps):
    def __init__(self, net):
        super().__init__(net.A, None)
        self.net = net

    def _layer(self, name):
        return self.net.layers[name.replace(".", "__")]

    def conv(self, name, x, k, stride, groups, relu, key, cout=None):
        L = self._layer(name)
        y = L.conv(x)
        if L.bn is not None:
            y = L.bn(y)
        return F.relu(y) if relu else y

    def dcn(self, n, x, cout, depthwise):
        off = self._layer(n + ".offset").conv(x)
        L = self._layer(n + ".dcn")
        y = deform_conv(x, off, L.conv.weight, None, self.A, depthwise)
        return F.relu(L.bn(y))


class CoDeNet(nn.Module):
    """Trainable CoDeNet.  Layers without BN: offset convs and heads."""

    def __init__(self, A):
        super().__init__()
        self.A = A
        self.specs = ca.layer_specs(A)
        self.layers = nn.ModuleDict()
        for L in self.specs:
            bn = not (L["type"] == "offset" or L["name"].startswith("head."))
            self.layers[L["name"].replace(".", "__")] = Layer(L, bn)

    def forward(self, x):
        return ca.network(self.A, ModuleOps(self), x)

    def init_random(self, gen):
        for L in self.specs:
            m = self.layers[L["name"].replace(".", "__")]
            fan = L["cin"] // L["groups"] * L["k"] * L["k"]
            std = math.sqrt(2.0 / fan)
            if L["type"] == "offset":
                std = 0.7 / math.sqrt(fan)  # offsets within about a pixel: well conditioned
            with torch.no_grad():
                m.conv.weight.copy_(torch.randn(m.conv.weight.shape, generator=gen) * std)
                if m.conv.bias is not None:
                    m.conv.bias.copy_(torch.randn(m.conv.bias.shape, generator=gen) * 0.1)
                    if L["name"] == "head.hm.out":
                        m.conv.bias.add_(-2.19)
                if m.bn is not None:
                    m.bn.weight.copy_(0.5 + 0.05 * torch.randn(L["cout"], generator=gen))
                    m.bn.bias.copy_(0.6 + 0.2 * torch.randn(L["cout"], generator=gen))

    def calibrate_bn(self, x):
        """Set BN statistics from a batch (random weights stay well scaled)."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        self.train()
        with torch.no_grad():
            self(x)
        self.eval()

    def export_params(self):
        P = {}
        for L in self.specs:
            w, b = self.layers[L["name"].replace(".", "__")].folded()
            P[L["name"] + ".weight"] = w.float().contiguous()
            P[L["name"] + ".bias"] = b.float().contiguous()
        return P
