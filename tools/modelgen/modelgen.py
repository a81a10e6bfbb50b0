#!/usr/bin/python3
"""modelgen — random MobileDet/SSD-like TFLite detection models for parity tests.

Writes the TFLite flatbuffer directly from the public schema's layout
(tensorflow/lite/schema/schema.fbs: table field order, enum values) with the
plain flatbuffers Builder; the post-process options are a FlexBuffers map.

Each model is built in float first (random weights), run once in float on a
calibration image (numpy, this file) to find every activation's range, then
written as one of:

  f32   float32 everywhere;
  u8    uint8 per-tensor (asymmetric weights with non-zero zero points, the
        legacy TOCO scheme);
  i8    float input -> QUANTIZE -> int8 with symmetric per-channel weights
        (CONV_2D on dimension 0, DEPTHWISE_CONV_2D on dimension 3), int32
        per-channel biases, DEQUANTIZE before the post-process.

--probe NAME truncates the model after the op that writes tensor NAME and
feeds that tensor (reshaped to [1,N,4]) to both post-process inputs, so that
the oracle's dump of the post-process inputs is that tensor's bytes (a size
that is not a multiple of 4 goes in as the class input [1,N,K] only; int8
tensors pass through a DEQUANTIZE first: the post-process takes only uint8
and float).  Use it to bisect a mismatch.

Usage: modelgen.py --seed S --quant f32|u8|i8 [--nms fast|regular] [--deep]
                   [--probe NAME] [--list | --tensors] -o OUT.tflite
"""
import argparse
import math
import sys

import flatbuffers
import numpy as np
from flatbuffers import flexbuffers

# ---- schema constants (schema.fbs) -----------------------------------------
T_FLOAT32, T_INT32, T_UINT8, T_INT8 = 0, 2, 3, 9
OPS = {  # BuiltinOperator
    'ADD': 0, 'AVERAGE_POOL_2D': 1, 'CONCATENATION': 2, 'CONV_2D': 3,
    'DEPTHWISE_CONV_2D': 4, 'DEQUANTIZE': 6, 'LOGISTIC': 14, 'MAX_POOL_2D': 17,
    'MUL': 18, 'RELU': 19, 'RELU6': 21, 'RESHAPE': 22, 'RESIZE_BILINEAR': 23,
    'CUSTOM': 32, 'MEAN': 40, 'SPLIT': 49, 'RESIZE_NEAREST_NEIGHBOR': 97,
    'QUANTIZE': 114, 'HARD_SWISH': 117,
}
# BuiltinOptions union: (type code, slot writer)
OPT_CONV, OPT_DW, OPT_POOL, OPT_CONCAT, OPT_ADD = 1, 2, 5, 10, 11
OPT_RESIZE_BILINEAR, OPT_RESHAPE, OPT_MUL, OPT_REDUCER, OPT_SPLIT = 15, 17, 21, 27, 35
OPT_RESIZE_NEAREST = 74
PAD = {'SAME': 0, 'VALID': 1}
ACT = {None: 0, 'RELU': 1, 'RELU6': 3}


# ---- float reference of the graph (calibration only) -------------------------
def pad_amounts(size, k, s, d, padding):
    eff = (k - 1) * d + 1
    if padding == 'VALID':
        return (size - eff) // s + 1, 0, 0
    out = (size + s - 1) // s
    total = max(0, (out - 1) * s + eff - size)
    return out, total // 2, total - total // 2


def act_f(x, act):
    if act == 'RELU':
        return np.maximum(x, 0)
    if act == 'RELU6':
        return np.clip(x, 0, 6)
    return x


def conv_f(x, w, b, stride, dil, padding, depthwise, mult=1):
    # x [1,H,W,C]; w [O,KH,KW,I] (conv) or [1,KH,KW,C*mult] (depthwise)
    _, H, W, C = x.shape
    kh, kw = w.shape[1], w.shape[2]
    oh, pt, pb = pad_amounts(H, kh, stride, dil, padding)
    ow, pl, pr = pad_amounts(W, kw, stride, dil, padding)
    xp = np.pad(x, ((0, 0), (pt, pb + kh * dil), (pl, pr + kw * dil), (0, 0)))
    O = w.shape[3] if depthwise else w.shape[0]
    out = np.zeros((1, oh, ow, O), np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dil:i * dil + (oh - 1) * stride + 1:stride,
                       j * dil:j * dil + (ow - 1) * stride + 1:stride, :]
            if depthwise:
                out += np.repeat(patch, mult, axis=3) * w[0, i, j, :]
            else:
                out += patch @ w[:, i, j, :].T
    return out + b


def pool_f(x, k, stride, padding, kind):
    _, H, W, C = x.shape
    oh, pt, _ = pad_amounts(H, k, stride, 1, padding)
    ow, pl, _ = pad_amounts(W, k, stride, 1, padding)
    out = np.zeros((1, oh, ow, C))
    for y in range(oh):
        for x0 in range(ow):
            y0, y1 = max(0, y * stride - pt), min(H, y * stride - pt + k)
            a0, a1 = max(0, x0 * stride - pl), min(W, x0 * stride - pl + k)
            win = x[0, y0:y1, a0:a1, :]
            out[0, y, x0] = win.max(axis=(0, 1)) if kind == 'max' else win.mean(axis=(0, 1))
    return out


def resize_f(x, oh, ow, bilinear, align, half):
    _, H, W, C = x.shape
    out = np.zeros((1, oh, ow, C))
    sy = (H - 1) / (oh - 1) if align and oh > 1 else H / oh
    sx = (W - 1) / (ow - 1) if align and ow > 1 else W / ow
    for y in range(oh):
        for xx in range(ow):
            fy = (y + 0.5) * sy - 0.5 if half else y * sy
            fx = (xx + 0.5) * sx - 0.5 if half else xx * sx
            if not bilinear:
                iy = min(H - 1, int(round(fy)) if align else int(math.floor(fy)))
                ix = min(W - 1, int(round(fx)) if align else int(math.floor(fx)))
                out[0, y, xx] = x[0, max(iy, 0), max(ix, 0)]
                continue
            y0 = max(0, int(math.floor(fy)))
            x0 = max(0, int(math.floor(fx)))
            y1, x1 = min(H - 1, y0 + 1), min(W - 1, x0 + 1)
            dy, dx = max(0.0, fy - math.floor(fy)), max(0.0, fx - math.floor(fx))
            out[0, y, xx] = (x[0, y0, x0] * (1 - dy) * (1 - dx) + x[0, y0, x1] * (1 - dy) * dx +
                             x[0, y1, x0] * dy * (1 - dx) + x[0, y1, x1] * dy * dx)
    return out


# ---- the graph -------------------------------------------------------------
class Graph:
    """Ops over named tensors; constants hold float values."""

    def __init__(self, rng):
        self.rng = rng
        self.ops = []      # (op, inputs, outputs, params)
        self.const = {}    # name -> np array (float)
        self.kind = {}     # const name -> 'weight_conv' | 'weight_dw' | 'bias' | 'plain' | 'int32'
        self.val = {}      # activation name -> float value (calibration)
        self.n = 0

    def name(self, base):
        self.n += 1
        return '%s_%d' % (base, self.n)

    def c(self, arr, kind='plain'):
        nm = self.name('const')
        self.const[nm] = np.asarray(arr, np.float64)
        self.kind[nm] = kind
        return nm

    def op(self, op, ins, params=None, n_out=1):
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.ops.append((op, list(ins), outs, params or {}))
        self.run_last()
        return outs[0] if n_out == 1 else outs

    def v(self, nm):
        return self.const[nm] if nm in self.const else self.val[nm]

    def run_last(self):
        op, ins, outs, p = self.ops[-1]
        x = [self.v(i) for i in ins]
        if op == 'CONV_2D':
            y = [act_f(conv_f(x[0], x[1], x[2], p['stride'], p['dil'], p['pad'], False), p.get('act'))]
        elif op == 'DEPTHWISE_CONV_2D':
            y = [act_f(conv_f(x[0], x[1], x[2], p['stride'], p['dil'], p['pad'], True, p['mult']),
                       p.get('act'))]
        elif op == 'ADD':
            y = [act_f(x[0] + x[1], p.get('act'))]
        elif op == 'MUL':
            y = [act_f(x[0] * x[1], p.get('act'))]
        elif op == 'HARD_SWISH':
            y = [x[0] * np.clip(x[0] + 3, 0, 6) / 6]
        elif op == 'RELU':
            y = [np.maximum(x[0], 0)]
        elif op == 'RELU6':
            y = [np.clip(x[0], 0, 6)]
        elif op == 'LOGISTIC':
            y = [1 / (1 + np.exp(-x[0]))]
        elif op == 'MEAN':
            y = [x[0].mean(axis=(1, 2), keepdims=True)]
        elif op in ('AVERAGE_POOL_2D', 'MAX_POOL_2D'):
            y = [pool_f(x[0], p['k'], p['stride'], p['pad'], 'max' if op == 'MAX_POOL_2D' else 'avg')]
        elif op == 'RESIZE_BILINEAR':
            y = [resize_f(x[0], p['size'][0], p['size'][1], True, p['align'], p['half'])]
        elif op == 'RESIZE_NEAREST_NEIGHBOR':
            y = [resize_f(x[0], p['size'][0], p['size'][1], False, p['align'], p['half'])]
        elif op == 'CONCATENATION':
            y = [np.concatenate(x, axis=p['axis'])]
        elif op == 'SPLIT':
            y = np.split(x[1], p['num'], axis=int(x[0].reshape(-1)[0]))
        elif op == 'RESHAPE':
            y = [x[0].reshape(p['shape'])]
        elif op in ('QUANTIZE', 'DEQUANTIZE'):
            y = [x[0]]
        elif op == 'PP':
            y = [np.zeros((1,))] * 4
        else:
            raise ValueError(op)
        for o, v in zip(outs, y):
            self.val[o] = v

    # -- building blocks --
    def conv(self, x, cout, k, stride=1, dil=1, pad='SAME', act=None):
        cin = self.v(x).shape[3]
        w = self.rng.normal(0, 1.0 / math.sqrt(cin * k * k), (cout, k, k, cin))
        w += self.rng.normal(0, 0.02, (cout, 1, 1, 1))  # per-channel offsets: asymmetric ranges
        b = self.rng.normal(0, 0.1, cout)
        return self.op('CONV_2D', [x, self.c(w, 'weight_conv'), self.c(b, 'bias')],
                       dict(stride=stride, dil=dil, pad=pad, act=act))

    def dw(self, x, k, stride=1, mult=1, dil=1, pad='SAME', act=None):
        c = self.v(x).shape[3] * mult
        w = self.rng.normal(0, 1.0 / k, (1, k, k, c)) * self.rng.uniform(0.3, 2.0, c)
        b = self.rng.normal(0, 0.1, c)
        return self.op('DEPTHWISE_CONV_2D', [x, self.c(w, 'weight_dw'), self.c(b, 'bias')],
                       dict(stride=stride, dil=dil, pad=pad, act=act, mult=mult))

    def se(self, x):
        """Squeeze-excite: MEAN -> conv -> RELU conv -> hard sigmoid (ADD 3, RELU6, MUL 1/6) -> MUL."""
        c = self.v(x).shape[3]
        m = self.op('MEAN', [x, self.c([1, 2], 'int32')], dict(keep=True))
        s = self.conv(m, max(2, c // 4), 1, act='RELU')
        s = self.conv(s, c, 1)
        s = self.op('ADD', [s, self.c([3.0])])
        s = self.op('RELU6', [s])
        s = self.op('MUL', [s, self.c([1.0 / 6.0])])
        return self.op('MUL', [x, s])


def build(seed, quant, nms, size=32, n_classes=5, anchors_per_cell=3, deep=False):
    rng = np.random.default_rng(seed)
    g = Graph(rng)
    # calibration image: a smooth random picture in the oracle's float scaling
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([np.sin(3 * xx + rng.uniform(0, 6)) * np.cos(2 * yy + rng.uniform(0, 6))
                    for _ in range(3)], axis=-1)
    img = np.clip(img + rng.normal(0, 0.2, img.shape), -1, 1)
    g.val['input'] = img.reshape(1, size, size, 3)
    x = 'input'
    if quant == 'i8':
        x = g.op('QUANTIZE', [x])
    # stem: 3x3 stride 2 conv, h-swish
    x = g.conv(x, 8 + 4 * int(rng.integers(0, 2)), 3, stride=2)
    x = g.op('HARD_SWISH', [x])
    # IBN with squeeze-excite and residual: 1x1 expand, dw 3x3, SE, 1x1 linear, ADD
    c = g.v(x).shape[3]
    y = g.conv(x, 2 * c, 1, act='RELU6')
    y = g.dw(y, 3)
    y = g.op('HARD_SWISH', [y])
    y = g.se(y)
    y = g.conv(y, c, 1)
    x = g.op('ADD', [x, y])
    # dw 5x5 stride 2 with multiplier 2, VALID; dilated 3x3 conv; pools
    y = g.dw(x, 5, stride=2, mult=2, pad='SAME', act='RELU')
    y = g.conv(y, 16, 3, dil=2, act='RELU6')
    a = g.op('AVERAGE_POOL_2D', [y], dict(k=2, stride=1, pad='SAME'))
    m = g.op('MAX_POOL_2D', [y], dict(k=3, stride=1, pad='SAME'))
    feat1 = g.op('CONCATENATION', [a, m], dict(axis=3))            # 8x8, different scales
    s1, s2 = g.op('SPLIT', [g.c([3], 'int32'), feat1], dict(num=2), n_out=2)
    feat1 = g.op('ADD', [s1, g.op('RELU', [s2])])
    # second scale: 5x5 stride 2 conv VALID-ish, then back up with both resizes
    f2 = g.conv(feat1, 24, 5, stride=2, pad='SAME', act='RELU')    # 4x4
    f2 = g.dw(f2, 3, stride=1, pad='VALID')                        # 2x2
    f2 = g.op('HARD_SWISH', [f2])
    up_b = g.op('RESIZE_BILINEAR', [f2, g.c([8, 8], 'int32')],
                dict(size=(8, 8), align=bool(seed % 2), half=not bool(seed % 2)))
    up_n = g.op('RESIZE_NEAREST_NEIGHBOR', [f2, g.c([8, 8], 'int32')],
                dict(size=(8, 8), align=False, half=bool(seed % 3 == 0)))
    feat1 = g.op('CONCATENATION', [feat1, up_b, up_n], dict(axis=3))
    feat1 = g.conv(feat1, 16, 1, act='RELU6')
    if deep:
        # a 1x1 convolution over 1024 channels: a float GEMM depth above one block
        feat1 = g.conv(g.op('CONCATENATION', [feat1] * 64, dict(axis=3)), 16, 1, act='RELU6')
    f3 = g.op('AVERAGE_POOL_2D', [feat1], dict(k=3, stride=2, pad='VALID'))   # 3x3
    f3 = g.op('MUL', [f3, g.c(rng.uniform(0.5, 1.5, (1, 1, 1, 16)))])        # const broadcast
    # SSD heads on feat1 (8x8) and f3 (3x3)
    boxes, classes = [], []
    for f in (feat1, f3):
        h, w = g.v(f).shape[1:3]
        n = h * w * anchors_per_cell
        bx = g.conv(f, 4 * anchors_per_cell, 3 if f == feat1 else 1)
        boxes.append(g.op('RESHAPE', [bx, g.c([1, n, 4], 'int32')], dict(shape=(1, n, 4))))
        cl = g.conv(f, (n_classes + 1) * anchors_per_cell, 3 if f == feat1 else 1)
        classes.append(g.op('RESHAPE', [cl, g.c([1, n, n_classes + 1], 'int32')],
                            dict(shape=(1, n, n_classes + 1))))
    box = g.op('CONCATENATION', boxes, dict(axis=1))
    cls = g.op('CONCATENATION', classes, dict(axis=1))
    cls = g.op('LOGISTIC', [cls])
    n_anchors = g.v(box).shape[1]
    # anchors (yc, xc, h, w) over the two grids
    anc = []
    for gs in (8, 3):
        for i in range(gs):
            for j in range(gs):
                for a_ in range(anchors_per_cell):
                    sz = (0.2 if gs == 8 else 0.5) * (1 + 0.5 * a_)
                    anc.append([(i + 0.5) / gs, (j + 0.5) / gs, sz, sz * (0.7 + 0.3 * a_)])
    anc = np.array(anc)
    assert anc.shape[0] == n_anchors
    return g, box, cls, anc


# ---- quantization ----------------------------------------------------------
def act_qparams(lo, hi, quant):
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-6:
        hi = lo + 1e-3
    scale = (hi - lo) / 255.0
    zp = int(round(-lo / scale))
    zp = min(255, max(0, zp))
    return np.float32(scale), (zp if quant == 'u8' else zp - 128)


class Writer:
    """Tensor table and flatbuffer writer."""

    def __init__(self):
        self.tensors = []   # dicts: name, shape, type, buffer data (bytes or None), q
        self.index = {}
        self.ops = []       # (op name, input indices, output indices, params)

    def tensor(self, name, shape, ttype, data=None, q=None):
        if name in self.index:
            return self.index[name]
        self.index[name] = len(self.tensors)
        self.tensors.append(dict(name=name, shape=[int(s) for s in shape], type=ttype, data=data, q=q))
        return self.index[name]


def qtype(quant):
    return {'f32': T_FLOAT32, 'u8': T_UINT8, 'i8': T_INT8}[quant]


def quantize_arr(v, scale, zp, ttype):
    lo, hi = (0, 255) if ttype == T_UINT8 else (-128, 127)
    q = np.clip(np.round(v / scale) + zp, lo, hi)
    return q.astype(np.uint8 if ttype == T_UINT8 else np.int8)


def emit(g, box, cls, anc, quant, nms, seed, probe=None, info=None):
    """The flatbuffer; info (a dict), if given, gets name -> (index, (scale, zp) or None)."""
    w = Writer()
    at = qtype(quant)
    qof = {}  # activation name -> (scale, zp) or None

    # activation tensors in op order with their quantization
    same_params = {'MAX_POOL_2D', 'AVERAGE_POOL_2D', 'RESHAPE', 'SPLIT', 'RESIZE_BILINEAR',
                   'RESIZE_NEAREST_NEIGHBOR'}
    ops = g.ops
    if probe:
        k = next(i for i, o in enumerate(ops) if probe in o[2])
        ops = ops[:k + 1]

    def act_tensor(name, src=None, ttype=None, q=None):
        ttype = at if ttype is None else ttype
        if q is None and ttype != T_FLOAT32:
            if src is not None:
                q = qof[src]
            else:
                v = g.val[name]
                q = act_qparams(float(v.min()), float(v.max()), 'u8' if ttype == T_UINT8 else 'i8')
        qof[name] = q
        return w.tensor(name, g.val[name].shape, ttype, None, q)

    if quant == 'u8':
        act_tensor('input', q=(np.float32(1 / 128), 128))
    else:
        act_tensor('input', ttype=T_FLOAT32, q=None)

    def const_tensor(name, in_q=None, ref=None):
        v = g.const[name]
        kind = g.kind[name]
        if kind == 'int32':
            return w.tensor(name, v.shape, T_INT32, v.astype(np.int32).tobytes())
        if quant == 'f32':
            idx = w.tensor(name, v.shape, T_FLOAT32, v.astype(np.float32).tobytes())
            return (idx, None) if kind in ('weight_conv', 'weight_dw') else idx
        if kind == 'bias':
            s_in, ws = in_q
            s = (np.float64(s_in) * ws.astype(np.float64)).astype(np.float32)
            qv = np.round(v / s).astype(np.int32)
            return w.tensor(name, v.shape, T_INT32, qv.tobytes(),
                            (s, np.zeros_like(s, dtype=np.int64), 0))
        if kind in ('weight_conv', 'weight_dw') and quant == 'i8':
            axis = 0 if kind == 'weight_conv' else 3
            red = tuple(i for i in range(4) if i != axis)
            s = (np.abs(v).max(axis=red) / 127.0).astype(np.float32)
            s = np.maximum(s, np.float32(1e-8))
            shp = [1, 1, 1, 1]
            shp[axis] = -1
            qv = np.clip(np.round(v / s.reshape(shp)), -127, 127).astype(np.int8)
            return w.tensor(name, v.shape, T_INT8, qv.tobytes(),
                            (s, np.zeros(len(s), np.int64), axis)), s
        # per-tensor asymmetric (u8 weights, u8/i8 constant operands)
        lo, hi = float(v.min()), float(v.max())
        s, zp = act_qparams(lo, hi, quant)
        if kind in ('weight_conv', 'weight_dw') and quant == 'u8' and zp in (0, 128):
            zp += 3  # keep weight zero points away from the symmetric values
        ttype = qtype(quant)
        qv = quantize_arr(v, s, zp, ttype)
        idx = w.tensor(name, v.shape, ttype, qv.tobytes(), (np.array([s], np.float32),
                                                              np.array([zp], np.int64), 0))
        if kind in ('weight_conv', 'weight_dw'):
            return idx, np.array([s], np.float32)
        return idx

    for op, ins, outs, p in ops:
        if op in ('CONV_2D', 'DEPTHWISE_CONV_2D'):
            wi, ws = const_tensor(ins[1])
            s_in = qof[ins[0]][0] if quant != 'f32' else None
            bi = const_tensor(ins[2], (s_in, ws) if quant != 'f32' else None)
            ii = [w.index[ins[0]], wi, bi]
            oi = [act_tensor(outs[0])]
        else:
            ii = []
            for nm in ins:
                if nm in g.const:
                    ii.append(const_tensor(nm))
                else:
                    ii.append(w.index[nm])
            if op == 'QUANTIZE':
                oi = [act_tensor(outs[0], q=(np.float32(2 / 255), -1))]
            elif op == 'LOGISTIC':
                q = None if quant == 'f32' else (np.float32(1 / 256), 0 if quant == 'u8' else -128)
                oi = [act_tensor(outs[0], q=q)]
            elif op == 'CONCATENATION' and quant == 'i8':
                # TFLite's int8 concatenation wants one scale: requantize the
                # inputs that differ with int8 -> int8 QUANTIZE, as converters do
                oi = [act_tensor(outs[0])]
                q = qof[outs[0]]
                for k, nm in enumerate(ins):
                    if qof[nm] != q:
                        rq = nm + '_rq'
                        g.val[rq] = g.val[nm]
                        w.ops.append(('QUANTIZE', [w.index[nm]], [act_tensor(rq, q=q)], {}))
                        ii[k] = w.index[rq]
            elif op in same_params:
                src = ins[1] if op == 'SPLIT' else ins[0]
                oi = [act_tensor(o, src=src if quant != 'f32' else None) for o in outs]
            else:
                oi = [act_tensor(o) for o in outs]
        w.ops.append((op, ii, oi, p))

    # post-process inputs
    if probe:
        t = g.val[probe]
        # [1,N,4] as both post-process inputs; a size that is not a multiple
        # of 4 goes in as the class input [1,N,K] (K its last dimension) with
        # constant zero boxes, and the oracle's class-input dump holds it
        as_class = t.size % 4 != 0
        k = t.shape[-1] if as_class else 4
        assert k > 1, 'probe tensor: last dimension 1 and size not a multiple of 4'
        n = t.size // k
        g.val['probe_flat'] = t.reshape(1, n, k)
        shp = g.c([1, n, k], 'int32')
        w.ops.append(('RESHAPE', [w.index[probe], const_tensor(shp)],
                      [act_tensor('probe_flat', src=probe if quant != 'f32' else None)],
                      dict(shape=(1, n, k))))
        box = cls = 'probe_flat'
        n_classes = 3
        if as_class:
            n_classes = k - 1
            zeros = np.zeros((1, n, 4))
            if quant == 'u8':
                w.tensor('probe_box', zeros.shape, T_UINT8, bytes(zeros.size),
                         (np.array([1 / 255], np.float32), np.array([0], np.int64), 0))
            else:
                w.tensor('probe_box', zeros.shape, T_FLOAT32, zeros.astype(np.float32).tobytes())
            box = 'probe_box'
            g.val[box] = zeros
        anc = np.tile(np.array([[0.5, 0.5, 0.3, 0.3]]), (n, 1))
    else:
        n_classes = g.val[cls].shape[2] - 1
    if quant == 'i8':
        for nm in (box, cls) if box != cls else (box,):
            if nm == 'probe_box':
                continue  # a float constant already
            g.val[nm + '_f'] = g.val[nm]
            w.ops.append(('DEQUANTIZE', [w.index[nm]], [act_tensor(nm + '_f', ttype=T_FLOAT32)], {}))
        box, cls = [nm if nm == 'probe_box' else nm + '_f' for nm in (box, cls)]
    n = g.val[box].shape[1]
    if quant == 'u8':
        s, zp = np.float32(1.0 / 255), 0
        anc_i = w.tensor('anchors', anc.shape, T_UINT8, quantize_arr(anc, s, zp, T_UINT8).tobytes(),
                         (np.array([s], np.float32), np.array([zp], np.int64), 0))
    else:
        anc_i = w.tensor('anchors', anc.shape, T_FLOAT32, anc.astype(np.float32).tobytes())
    max_det = 10
    outs = [w.tensor('detection_boxes', [1, max_det, 4], T_FLOAT32),
            w.tensor('detection_classes', [1, max_det], T_FLOAT32),
            w.tensor('detection_scores', [1, max_det], T_FLOAT32),
            w.tensor('num_detections', [1], T_FLOAT32)]
    opts = pp_options(seed, nms, n_classes, max_det)
    w.ops.append(('PP', [w.index[box], w.index[cls], anc_i], outs, dict(custom=opts)))
    if info is not None:
        for nm, i in w.index.items():
            if nm in qof:
                info[nm] = (i, qof[nm])
    return serialize(w, [w.index['input']], outs)


def pp_options(seed, nms, n_classes, max_det):
    """The post-process map; key types vary with the seed as converters vary them."""
    regular = nms == 'regular'
    if seed % 2 == 0:
        # all keys, 64-bit values (what Python's flexbuffers writes)
        d = dict(max_detections=max_det, max_classes_per_detection=1, detections_per_class=5,
                 use_regular_nms=regular, num_classes=n_classes, nms_score_threshold=0.3,
                 nms_iou_threshold=0.5, y_scale=10.0, x_scale=10.0, h_scale=5.0, w_scale=5.0)
        if not regular:
            d['detections_per_class'] = 0  # unused by fast NMS: TFLite ignores it
        return bytes(flexbuffers.Dumps(d))
    # narrow widths: uint counts, 32-bit indirect floats, integer-valued scales,
    # absent detections_per_class (default 100) and use_regular_nms written as int
    b = flexbuffers.Builder()
    with b.Map():
        b.Key('max_detections')
        b.UInt(max_det)
        b.Key('max_classes_per_detection')
        b.Int(2 if not regular else 1)
        if regular:
            b.Key('use_regular_nms')
            b.Int(1)
        b.Key('num_classes')
        b.UInt(n_classes)
        b.Key('nms_score_threshold')
        b.IndirectFloat(0.25, 4)
        b.Key('nms_iou_threshold')
        b.Float(0.6, 4)
        b.Key('y_scale')
        b.Int(10)
        b.Key('x_scale')
        b.Float(10.0, 4)
        b.Key('h_scale')
        b.IndirectFloat(5.0, 8)
        b.Key('w_scale')
        b.UInt(5)
        b.Key('unused_key')
        b.String('ignored')
    return bytes(b.Finish())


# ---- flatbuffer --------------------------------------------------------------
def ivec(b, vals, kind='i32'):
    vals = list(vals)
    size = {'i32': 4, 'f32': 4, 'i64': 8, 'u8': 1}[kind]
    b.StartVector(size, len(vals), size)
    for v in reversed(vals):
        {'i32': b.PrependInt32, 'f32': b.PrependFloat32, 'i64': b.PrependInt64,
         'u8': b.PrependUint8}[kind](v)
    return b.EndVector()


def serialize(w, inputs, outputs):
    b = flatbuffers.Builder(1 << 16)
    # buffers: 0 is the empty sentinel
    buf_offs = []
    tensor_buf = []
    datas = [None]
    for t in w.tensors:
        if t['data'] is None:
            tensor_buf.append(0)
        else:
            tensor_buf.append(len(datas))
            datas.append(t['data'])
    for d in datas:
        if d is None:
            b.StartObject(1)
            buf_offs.append(b.EndObject())
            continue
        b.StartVector(1, len(d), 16)
        for x in reversed(d):
            b.PrependUint8(x)
        v = b.EndVector()
        b.StartObject(1)
        b.PrependUOffsetTRelativeSlot(0, v, 0)
        buf_offs.append(b.EndObject())
    # tensors
    t_offs = []
    for i, t in enumerate(w.tensors):
        name = b.CreateString(t['name'])
        shape = ivec(b, t['shape'])
        q_off = None
        if t['q'] is not None:
            s, zp = t['q'][0], t['q'][1]
            axis = t['q'][2] if len(t['q']) > 2 else 0
            sv = ivec(b, np.atleast_1d(s).astype(np.float32).tolist(), 'f32')
            zv = ivec(b, np.atleast_1d(zp).astype(np.int64).tolist(), 'i64')
            b.StartObject(7)
            b.PrependUOffsetTRelativeSlot(2, sv, 0)
            b.PrependUOffsetTRelativeSlot(3, zv, 0)
            b.PrependInt32Slot(6, int(axis), 0)
            q_off = b.EndObject()
        b.StartObject(5)
        b.PrependUOffsetTRelativeSlot(0, shape, 0)
        b.PrependInt8Slot(1, t['type'], 0)
        b.PrependUint32Slot(2, tensor_buf[i], 0)
        b.PrependUOffsetTRelativeSlot(3, name, 0)
        if q_off is not None:
            b.PrependUOffsetTRelativeSlot(4, q_off, 0)
        t_offs.append(b.EndObject())
    # operator codes
    codes = []
    for op, _, _, _ in w.ops:
        if op not in codes:
            codes.append(op)
    code_offs = []
    for c in codes:
        cc = b.CreateString('TFLite_Detection_PostProcess') if c == 'PP' else None
        code = OPS['CUSTOM'] if c == 'PP' else OPS[c]
        b.StartObject(4)
        b.PrependInt8Slot(0, min(code, 127), 0)
        if cc is not None:
            b.PrependUOffsetTRelativeSlot(1, cc, 0)
        b.PrependInt32Slot(2, 1, 1)
        b.PrependInt32Slot(3, code, 0)
        code_offs.append(b.EndObject())
    # operators
    op_offs = []
    for op, ins, outs, p in w.ops:
        iv = ivec(b, ins)
        ov = ivec(b, outs)
        custom = ivec(b, p['custom'], 'u8') if op == 'PP' else None
        otype, ooff = builtin_options(b, op, p)
        b.StartObject(7)
        b.PrependUint32Slot(0, codes.index(op), 0)
        b.PrependUOffsetTRelativeSlot(1, iv, 0)
        b.PrependUOffsetTRelativeSlot(2, ov, 0)
        if ooff is not None:
            b.PrependUint8Slot(3, otype, 0)
            b.PrependUOffsetTRelativeSlot(4, ooff, 0)
        if custom is not None:
            b.PrependUOffsetTRelativeSlot(5, custom, 0)
        op_offs.append(b.EndObject())

    def table_vec(offs):
        b.StartVector(4, len(offs), 4)
        for o in reversed(offs):
            b.PrependUOffsetTRelative(o)
        return b.EndVector()

    tv = table_vec(t_offs)
    ov = table_vec(op_offs)
    iv = ivec(b, inputs)
    outv = ivec(b, outputs)
    sname = b.CreateString('main')
    b.StartObject(5)
    b.PrependUOffsetTRelativeSlot(0, tv, 0)
    b.PrependUOffsetTRelativeSlot(1, iv, 0)
    b.PrependUOffsetTRelativeSlot(2, outv, 0)
    b.PrependUOffsetTRelativeSlot(3, ov, 0)
    b.PrependUOffsetTRelativeSlot(4, sname, 0)
    sg = b.EndObject()
    sgv = table_vec([sg])
    cv = table_vec(code_offs)
    bv = table_vec(buf_offs)
    desc = b.CreateString('detd modelgen')
    b.StartObject(5)
    b.PrependUint32Slot(0, 3, 0)
    b.PrependUOffsetTRelativeSlot(1, cv, 0)
    b.PrependUOffsetTRelativeSlot(2, sgv, 0)
    b.PrependUOffsetTRelativeSlot(3, desc, 0)
    b.PrependUOffsetTRelativeSlot(4, bv, 0)
    model = b.EndObject()
    b.Finish(model, file_identifier=b'TFL3')
    return bytes(b.Output())


def builtin_options(b, op, p):
    def table(n, slots):
        b.StartObject(n)
        for kind, slot, val, dflt in slots:
            {'u8': b.PrependUint8Slot, 'i32': b.PrependInt32Slot, 'bool': b.PrependBoolSlot}[kind](
                slot, val, dflt)
        return b.EndObject()
    act = ACT[p.get('act')]
    if op == 'CONV_2D':
        return OPT_CONV, table(6, [('u8', 0, PAD[p['pad']], 0), ('i32', 1, p['stride'], 0),
                                   ('i32', 2, p['stride'], 0), ('u8', 3, act, 0),
                                   ('i32', 4, p['dil'], 1), ('i32', 5, p['dil'], 1)])
    if op == 'DEPTHWISE_CONV_2D':
        return OPT_DW, table(7, [('u8', 0, PAD[p['pad']], 0), ('i32', 1, p['stride'], 0),
                                 ('i32', 2, p['stride'], 0), ('i32', 3, p['mult'], 0),
                                 ('u8', 4, act, 0), ('i32', 5, p['dil'], 1),
                                 ('i32', 6, p['dil'], 1)])
    if op in ('AVERAGE_POOL_2D', 'MAX_POOL_2D'):
        return OPT_POOL, table(6, [('u8', 0, PAD[p['pad']], 0), ('i32', 1, p['stride'], 0),
                                   ('i32', 2, p['stride'], 0), ('i32', 3, p['k'], 0),
                                   ('i32', 4, p['k'], 0), ('u8', 5, 0, 0)])
    if op == 'CONCATENATION':
        return OPT_CONCAT, table(2, [('i32', 0, p['axis'], 0), ('u8', 1, 0, 0)])
    if op == 'ADD':
        return OPT_ADD, table(1, [('u8', 0, act, 0)])
    if op == 'MUL':
        return OPT_MUL, table(1, [('u8', 0, act, 0)])
    if op == 'MEAN':
        return OPT_REDUCER, table(1, [('bool', 0, True, False)])
    if op == 'SPLIT':
        return OPT_SPLIT, table(1, [('i32', 0, p['num'], 0)])
    if op == 'RESIZE_BILINEAR':
        return OPT_RESIZE_BILINEAR, table(4, [('bool', 2, p['align'], False),
                                              ('bool', 3, p['half'], False)])
    if op == 'RESIZE_NEAREST_NEIGHBOR':
        return OPT_RESIZE_NEAREST, table(2, [('bool', 0, p['align'], False),
                                             ('bool', 1, p['half'], False)])
    if op == 'RESHAPE':
        nv = ivec(b, p['shape'])
        b.StartObject(1)
        b.PrependUOffsetTRelativeSlot(0, nv, 0)
        return OPT_RESHAPE, b.EndObject()
    return 0, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--quant', choices=['f32', 'u8', 'i8'], default='u8')
    ap.add_argument('--nms', choices=['fast', 'regular'], default='fast')
    ap.add_argument('--probe', help='truncate after the op writing this tensor (see --list)')
    ap.add_argument('--deep', action='store_true', help='add a 1x1 convolution over 1024 channels')
    ap.add_argument('--list', action='store_true', help='list the activation tensors and exit')
    ap.add_argument('--tensors', action='store_true',
                    help='list the activation tensors with their index in the written model '
                         'and quantization (NAME OP SHAPE INDEX SCALE ZP; - - for float) and exit')
    ap.add_argument('-o', '--out')
    a = ap.parse_args()
    g, box, cls, anc = build(a.seed, a.quant, a.nms, deep=a.deep)
    if a.list:
        for op, ins, outs, _ in g.ops:
            for o in outs:
                print(o, op, 'x'.join(str(s) for s in g.val[o].shape))
        return 0
    if a.tensors:
        info = {}
        emit(g, box, cls, anc, a.quant, a.nms, a.seed, info=info)
        for op, ins, outs, _ in g.ops:
            for o in outs:
                i, q = info[o]
                qs = '- -' if q is None else '%r %d' % (float(q[0]), int(q[1]))
                print(o, op, 'x'.join(str(s) for s in g.val[o].shape), i, qs)
        return 0
    if not a.out:
        ap.error('-o is required')
    data = emit(g, box, cls, anc, a.quant, a.nms, a.seed, a.probe)
    with open(a.out, 'wb') as f:
        f.write(data)
    return 0


if __name__ == '__main__':
    sys.exit(main())
