"""CoDeNet architecture description: the JSON file of the project's CoDeNet
model format, its validation, and the one walk over the network that every
executor (training module, float reference, quantizer, integer simulation)
shares.

The network (ENGINE.md section 3):
  first layer  3x3 conv stride 4 (or stride 2 + 3x3/2 max-pool), BN, ReLU
  ShuffleNetV2 stages 2..4 (stride-2 unit, then stride-1 units), conv5 1x1
  decoder: 3 x [deformable block -> BN -> ReLU -> nearest 2x upsample]
  CenterNet heads hm / wh / reg: 1x1 -> ReLU -> depthwise 3x3 -> ReLU -> 1x1

Layer names here are the tensor names of the weights file
(<layer>.weight / <layer>.bias, plus <layer>.scale for W4A8); the C reader in
engine/codenet/ builds the same list and checks the file against it.
"""
import json

STD_CHANNELS = {"1.0x": [24, 116, 232, 464, 1024], "2.0x": [24, 244, 488, 976, 2048]}
STD_REPEATS = [4, 8, 4]
DCN_KINDS = ("conv3x3", "dwconv3x3", "full", "depthwise")
FIRST_LAYERS = ("stride4", "stride2_maxpool")
QUANTS = ("float", "w4a8")

VOC_LABELS = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
              "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
              "sheep", "sofa", "train", "tvmonitor"]


def default_arch(width="1.0x", size=256, first="stride4", kind="depthwise", mask=False,
                 square=False, rounded=False, bound=0.0, classes=20, quant="float"):
    a = {
        "format": "codenet",
        "version": 1,
        "backbone": "shufflenetv2",
        "width": width,
        "input": {"width": size, "height": size},
        "first_layer": first,
        "decoder_channels": [256, 128, 64],
        "head_channels": 64,
        "dcn": {"kind": kind, "mask": mask, "square": square, "rounded": rounded,
                "bound": bound},
        "classes": classes,
        "labels": (VOC_LABELS if classes == 20 else [str(i) for i in range(classes)]),
        "quantization": quant,
        "decode": {"max_detections": 100, "score_threshold": 0.1},
        "weights": "model.safetensors",
    }
    if width == "custom":
        raise ValueError("custom width: set stage_channels/stage_repeats yourself")
    return a


def check_arch(a):
    """Validate and normalize; returns a dict with derived fields filled in."""
    def need(c, msg):
        if not c:
            raise ValueError("codenet json: " + msg)
    need(a.get("format") == "codenet", "format must be \"codenet\"")
    need(a.get("version") == 1, "version must be 1")
    need(a.get("backbone") == "shufflenetv2", "backbone must be shufflenetv2")
    w = a.get("width")
    if w in STD_CHANNELS:
        ch = a.get("stage_channels", STD_CHANNELS[w])
        need(ch == STD_CHANNELS[w], "stage_channels do not match width " + w)
        rep = a.get("stage_repeats", STD_REPEATS)
        need(rep == STD_REPEATS, "stage_repeats do not match width " + w)
    else:
        need(w == "custom", "width must be 1.0x, 2.0x or custom")
        ch, rep = a.get("stage_channels"), a.get("stage_repeats")
    need(isinstance(ch, list) and len(ch) == 5 and all(isinstance(c, int) and 2 <= c <= 4096
                                                      and c % 2 == 0 for c in ch),
         "stage_channels: 5 even integers in [2,4096]")
    need(isinstance(rep, list) and len(rep) == 3 and all(isinstance(r, int) and 1 <= r <= 16
                                                        for r in rep),
         "stage_repeats: 3 integers in [1,16]")
    W, H = a["input"]["width"], a["input"]["height"]
    need(all(isinstance(v, int) and 32 <= v <= 2048 and v % 32 == 0 for v in (W, H)),
         "input width/height: multiples of 32 in [32,2048]")
    need(a.get("first_layer") in FIRST_LAYERS, "first_layer must be stride4 or stride2_maxpool")
    dec = a.get("decoder_channels", [256, 128, 64])
    need(isinstance(dec, list) and len(dec) == 3 and all(isinstance(c, int) and 1 <= c <= 4096
                                                        for c in dec), "decoder_channels")
    hc = a.get("head_channels", 64)
    need(isinstance(hc, int) and 1 <= hc <= 4096, "head_channels")
    d = a.get("dcn", {})
    need(d.get("kind") in DCN_KINDS, "dcn.kind must be one of " + ", ".join(DCN_KINDS))
    bound = float(d.get("bound", 0))
    need(0 <= bound <= 64, "dcn.bound in [0,64] (0: unbounded)")
    nc = a.get("classes")
    need(isinstance(nc, int) and 1 <= nc <= 1000, "classes in [1,1000]")
    labels = a.get("labels")
    need(labels is None or (isinstance(labels, list) and len(labels) == nc), "labels: one per class")
    need(a.get("quantization") in QUANTS, "quantization must be float or w4a8")
    deform = d["kind"] in ("full", "depthwise")
    if a["quantization"] == "w4a8":
        need(not (deform and d.get("mask", False)), "w4a8 has no DCNv2 mask (float only)")
    dd = a.get("decode", {})
    return {
        "channels": ch, "repeats": rep, "width": W, "height": H, "first": a["first_layer"],
        "dec": dec, "head": hc,
        "kind": d["kind"], "deform": deform,
        "mask": bool(d.get("mask", False)) and deform,
        "square": bool(d.get("square", False)) and deform,
        "rounded": bool(d.get("rounded", False)) and deform,
        "bound": bound if deform else 0.0,
        "classes": nc, "labels": labels, "quant": a["quantization"],
        "max_det": int(dd.get("max_detections", 100)),
        "thresh": float(dd.get("score_threshold", 0.1)),
    }


def load_arch(path):
    with open(path) as f:
        return json.load(f)


def network(A, ops, x):
    """The network, written once.  `ops` supplies the operators; `A` is the
    normalized arch.  Returns (hm, wh, reg) as the ops' tensors.

    conv(name, x, k, stride, groups, relu, key): `key` names the activation
    scale group (W4A8): tensors concatenated together must share one scale,
    so every branch output of a ShuffleNet stage uses the stage's key."""
    ch, rep = A["channels"], A["repeats"]
    x = ops.conv("first.conv", x, 3, 4 if A["first"] == "stride4" else 2, 1, True, "first.conv",
                 cout=ch[0])
    if A["first"] == "stride2_maxpool":
        x = ops.maxpool(x)
    cin = ch[0]
    for si in range(3):
        st = "stage%d" % (si + 2)
        cout = ch[si + 1]
        half = cout // 2
        for u in range(rep[si]):
            n = "%s.%d" % (st, u)
            if u == 0:
                b1 = ops.conv(n + ".branch1.dw", x, 3, 2, cin, False, n + ".branch1.dw")
                b1 = ops.conv(n + ".branch1.pw", b1, 1, 1, 1, True, st, cout=half)
                x2 = x
                c2 = cin
            else:
                b1, x2 = ops.split(x)
                c2 = half
            b2 = ops.conv(n + ".branch2.pw1", x2, 1, 1, 1, True, n + ".branch2.pw1", cout=half)
            b2 = ops.conv(n + ".branch2.dw", b2, 3, 2 if u == 0 else 1, half, False,
                          n + ".branch2.dw")
            b2 = ops.conv(n + ".branch2.pw2", b2, 1, 1, 1, True, st, cout=half)
            del c2
            x = ops.concat_shuffle(b1, b2)
        cin = cout
    x = ops.conv("conv5", x, 1, 1, 1, True, "conv5", cout=ch[4])
    for i, c in enumerate(A["dec"]):
        n = "dec.%d" % i
        if A["kind"] == "conv3x3":
            x = ops.conv(n + ".conv", x, 3, 1, 1, True, n + ".conv", cout=c)
        elif A["kind"] == "dwconv3x3":
            x = ops.conv(n + ".pw", x, 1, 1, 1, True, n + ".pw", cout=c)
            x = ops.conv(n + ".conv", x, 3, 1, c, True, n + ".conv")
        elif A["kind"] == "full":
            x = ops.dcn(n, x, c, False)
        else:
            x = ops.conv(n + ".pw", x, 1, 1, 1, True, n + ".pw", cout=c)
            x = ops.dcn(n, x, c, True)
        x = ops.upsample(x)
    outs = []
    for h, nout in (("hm", A["classes"]), ("wh", 2), ("reg", 2)):
        n = "head." + h
        y = ops.conv(n + ".pw", x, 1, 1, 1, True, n + ".pw", cout=A["head"])
        y = ops.conv(n + ".dw", y, 3, 1, A["head"], True, n + ".dw")
        y = ops.conv(n + ".out", y, 1, 1, 1, False, n + ".out", cout=nout)
        outs.append(y)
    return tuple(outs)


def offset_channels(A):
    if A["square"]:
        return 1
    return 27 if A["mask"] else 18


class SpecOps:
    """Shape-only executor: lists every layer with its parameter shapes.
    Tensors are (C, H, W) tuples."""

    def __init__(self, A):
        self.A = A
        self.layers = []  # dicts: name, cin, cout, k, stride, groups, relu, kind

    def conv(self, name, x, k, stride, groups, relu, key, cout=None):
        c, h, w = x
        cout = c if cout is None else cout
        self.layers.append(dict(name=name, type="conv", cin=c, cout=cout, k=k, stride=stride,
                                groups=groups, relu=relu, key=key))
        return (cout, (h + 2 * (k // 2) - k) // stride + 1, (w + 2 * (k // 2) - k) // stride + 1)

    def maxpool(self, x):
        c, h, w = x
        return (c, (h - 1) // 2 + 1, (w - 1) // 2 + 1)

    def split(self, x):
        c, h, w = x
        return (c // 2, h, w), (c // 2, h, w)

    def concat_shuffle(self, a, b):
        return (a[0] + b[0], a[1], a[2])

    def upsample(self, x):
        return (x[0], 2 * x[1], 2 * x[2])

    def dcn(self, n, x, cout, depthwise):
        c, h, w = x
        self.layers.append(dict(name=n + ".offset", type="offset", cin=c,
                                cout=offset_channels(self.A), k=3, stride=1, groups=1,
                                relu=False, key=n + ".offset"))
        self.layers.append(dict(name=n + ".dcn", type="dcn", cin=c, cout=c if depthwise else cout,
                                k=3, stride=1, groups=c if depthwise else 1, relu=True,
                                key=n + ".dcn"))
        return (c if depthwise else cout, h, w)


def layer_specs(A):
    s = SpecOps(A)
    network(A, s, (3, A["height"], A["width"]))
    return s.layers
