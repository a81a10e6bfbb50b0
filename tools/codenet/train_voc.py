#!/usr/bin/python3
"""Train CoDeNet on a Pascal-VOC-format dataset and export it in the
project's format (float, and W4A8 after calibration).  Not run in CI.

  /usr/bin/python3 tools/codenet/train_voc.py --voc /data/VOCdevkit/VOC2007 \\
      --out models/codenet256 --size 256 --width 1.0x --dcn depthwise --bound 8 \\
      --epochs 140 --batch 32 [--square] [--rounded] [--mask] [--first stride4]

Dataset layout (VOC): <voc>/JPEGImages/<id>.jpg, <voc>/Annotations/<id>.xml,
<voc>/ImageSets/Main/{train,trainval,val,test}.txt.  Objects flagged
"difficult" are skipped.  Images are resized (stretched) to --size, as the
daemon feeds frames to the model; training adds horizontal flips and a
random scale/crop jitter.

Loss (CenterNet, "Objects as Points"): penalty-reduced focal loss on the
class heatmap with Gaussian peaks at box centres (radius from the box size),
L1 on width/height (weight 0.1) and on the sub-pixel centre offset, both at
the centre pixels only.  Adam, lr 5e-4 (batch 32) with steps at 60% and 85%.

Outputs <out>.json + <out>.safetensors (float) and, with --w4a8 (default on),
<out>_q.json + <out>_q.safetensors quantized with 64 calibration images.
Quantization-aware fine-tuning is not implemented: the W4A8 export is
post-training, which loses accuracy with 4-bit weights.

No trained weights are reachable from this machine; nothing here has been run
to convergence in this repository.
"""
import argparse
import math
import os
import random
import sys
import xml.etree.ElementTree as ET

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import codenet_arch as ca  # noqa: E402
import codenet_format as cf  # noqa: E402
import codenet_quant as cq  # noqa: E402
import codenet_ref as cr  # noqa: E402


def load_image(path):
    from PIL import Image  # python3-pil; only the training script needs it
    return np.asarray(Image.open(path).convert("RGB"))


def resize(img, size):
    from PIL import Image
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def parse_ann(path, labels):
    root = ET.parse(path).getroot()
    out = []
    for o in root.iter("object"):
        if int(o.findtext("difficult", "0")):
            continue
        name = o.findtext("name").strip()
        if name not in labels:
            continue
        b = o.find("bndbox")
        box = [float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        out.append((labels.index(name), box))
    return out


class VOC(torch.utils.data.Dataset):
    def __init__(self, root, split, size, labels, train):
        with open(os.path.join(root, "ImageSets", "Main", split + ".txt")) as f:
            self.ids = [l.strip() for l in f if l.strip()]
        self.root, self.size, self.labels, self.train = root, size, labels, train

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        iid = self.ids[i]
        img = load_image(os.path.join(self.root, "JPEGImages", iid + ".jpg"))
        objs = parse_ann(os.path.join(self.root, "Annotations", iid + ".xml"), self.labels)
        h, w = img.shape[:2]
        if self.train:  # scale / crop jitter, then flip
            s = random.uniform(0.7, 1.0)
            ch, cw = int(h * s), int(w * s)
            y0, x0 = random.randint(0, h - ch), random.randint(0, w - cw)
            img = img[y0:y0 + ch, x0:x0 + cw]
            objs = [(c, [b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0]) for c, b in objs]
            h, w = ch, cw
            if random.random() < 0.5:
                img = img[:, ::-1]
                objs = [(c, [w - b[2], b[1], w - b[0], b[3]]) for c, b in objs]
        img = resize(np.ascontiguousarray(img), self.size)
        sx, sy = self.size / w, self.size / h
        boxes = []
        for c, b in objs:
            x1, y1 = max(0.0, b[0] * sx), max(0.0, b[1] * sy)
            x2, y2 = min(self.size - 1.0, b[2] * sx), min(self.size - 1.0, b[3] * sy)
            if x2 - x1 >= 2 and y2 - y1 >= 2:
                boxes.append((c, x1, y1, x2, y2))
        return img, targets(boxes, self.size // 4, len(self.labels))


def gaussian_radius(h, w, min_overlap=0.7):
    # CenterNet's radius: the largest shift keeping IoU >= min_overlap
    b1 = h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2 ** 2 - 16 * c2)) / 2
    b3 = -2 * min_overlap * (h + w)
    c3 = (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3 ** 2 - 16 * min_overlap * c3)) / 2
    return max(0, int(min(r1, r2, r3)))


def targets(boxes, S, C, max_obj=128):
    hm = np.zeros((C, S, S), np.float32)
    wh = np.zeros((max_obj, 2), np.float32)
    reg = np.zeros((max_obj, 2), np.float32)
    ind = np.zeros(max_obj, np.int64)
    msk = np.zeros(max_obj, np.float32)
    for k, (c, x1, y1, x2, y2) in enumerate(boxes[:max_obj]):
        x1, y1, x2, y2 = x1 / 4, y1 / 4, x2 / 4, y2 / 4
        bw, bh = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        ix, iy = min(int(cx), S - 1), min(int(cy), S - 1)
        r = gaussian_radius(math.ceil(bh), math.ceil(bw))
        ys, xs = np.ogrid[-r:r + 1, -r:r + 1]
        g = np.exp(-(xs * xs + ys * ys) / (2 * ((2 * r + 1) / 6) ** 2))
        t, b = min(iy, r), min(S - iy, r + 1)
        l, rr = min(ix, r), min(S - ix, r + 1)
        np.maximum(hm[c, iy - t:iy + b, ix - l:ix + rr], g[r - t:r + b, r - l:r + rr],
                   out=hm[c, iy - t:iy + b, ix - l:ix + rr])
        wh[k] = (bw, bh)
        reg[k] = (cx - ix, cy - iy)
        ind[k] = iy * S + ix
        msk[k] = 1
    return hm, wh, reg, ind, msk


def collate(batch):
    imgs = np.stack([b[0] for b in batch])
    t = [torch.from_numpy(np.stack([b[1][i] for b in batch])) for i in range(5)]
    return imgs, t


def focal(pred_logit, gt):
    p = torch.sigmoid(pred_logit).clamp(1e-4, 1 - 1e-4)
    pos = gt.eq(1).float()
    neg = 1 - pos
    pl = torch.log(p) * (1 - p) ** 2 * pos
    nl = torch.log(1 - p) * p ** 2 * (1 - gt) ** 4 * neg
    n = pos.sum()
    return -(pl.sum() + nl.sum()) / n.clamp(min=1)


def gather(feat, ind):
    B, C, H, W = feat.shape
    f = feat.view(B, C, H * W).permute(0, 2, 1)
    return f.gather(1, ind.unsqueeze(2).expand(B, ind.shape[1], C))


def reg_l1(pred, ind, msk, target):
    p = gather(pred, ind)
    m = msk.unsqueeze(2)
    return (F.l1_loss(p * m, target * m, reduction="sum") / (m.sum() * 2 + 1e-4))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voc", required=True)
    ap.add_argument("--split", default="trainval")
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--width", default="1.0x", choices=("1.0x", "2.0x"))
    ap.add_argument("--first", default="stride4", choices=ca.FIRST_LAYERS)
    ap.add_argument("--dcn", default="depthwise", choices=ca.DCN_KINDS)
    ap.add_argument("--bound", type=float, default=0.0)
    ap.add_argument("--square", action="store_true")
    ap.add_argument("--rounded", action="store_true")
    ap.add_argument("--mask", action="store_true")
    ap.add_argument("--epochs", type=int, default=140)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--no-w4a8", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()

    aj = ca.default_arch(width=a.width, size=a.size, first=a.first, kind=a.dcn, mask=a.mask,
                         square=a.square, rounded=a.rounded, bound=a.bound, classes=20)
    A = ca.check_arch(aj)
    net = cr.CoDeNet(A)
    net.init_random(torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.layers["head__hm__out"].conv.bias.fill_(-2.19)
        for L in net.specs:
            if L["type"] == "offset":
                m = net.layers[L["name"].replace(".", "__")].conv
                m.weight.zero_()
                m.bias.zero_()
    net.to(a.device)
    ds = VOC(a.voc, a.split, a.size, ca.VOC_LABELS, True)
    dl = torch.utils.data.DataLoader(ds, a.batch, shuffle=True, num_workers=a.workers,
                                     collate_fn=collate, drop_last=True)
    opt = torch.optim.Adam(net.parameters(), a.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(
        opt, [int(a.epochs * 0.6), int(a.epochs * 0.85)], 0.1)
    for ep in range(a.epochs):
        net.train()
        tot = 0.0
        for it, (imgs, (hm, wh, reg, ind, msk)) in enumerate(dl):
            x = cr.input_float(imgs).to(a.device)
            hm, wh, reg, ind, msk = (t.to(a.device) for t in (hm, wh, reg, ind, msk))
            phm, pwh, preg = net(x)
            loss = focal(phm, hm) + 0.1 * reg_l1(pwh, ind, msk, wh) + reg_l1(preg, ind, msk, reg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss)
            if it % 50 == 0:
                print("epoch %d it %d loss %.4f" % (ep, it, float(loss)), flush=True)
        sched.step()
        print("epoch %d mean loss %.4f" % (ep, tot / max(1, len(dl))), flush=True)

    net.eval().cpu()
    P = net.export_params()
    base = os.path.basename(a.out)
    aj["weights"] = base + ".safetensors"
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    cf.save_model(a.out + ".json", aj, P)
    print("wrote", a.out + ".json")
    if not a.no_w4a8 and not A["mask"]:
        calib = np.stack([ds[i][0] for i in range(min(64, len(ds)))])
        qj = dict(aj, quantization="w4a8", weights=base + "_q.safetensors")
        Q = cq.quantize(ca.check_arch(qj), P, calib)
        cf.save_model(a.out + "_q.json", qj, Q)
        print("wrote", a.out + "_q.json")


if __name__ == "__main__":
    main()
