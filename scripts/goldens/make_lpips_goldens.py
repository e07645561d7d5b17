"""Goldens for elect's LPIPS (SqueezeNet, v0.1) - tests/Elect.Tests/Data/metrics/lpips-squeeze/.

The network is torchvision's own squeezenet1_1 (random weights, seed 0, rounded to float16 and saved as a
torch.save state_dict .pth, the layout of torchvision's squeezenet1_1-b8a52dc0.pth); the LPIPS heads are random
non-negative 1x1 convolutions saved as lpips' weights/v0.1/squeeze.pth (keys lin{k}.model.1.weight). The lpips
package is not installed in the reference chroot, so its forward is re-expressed line by line below
(lpips/lpips.py LPIPS.forward for version 0.1, ScalingLayer, normalize_tensor, spatial_average;
pretrained_networks.squeezenet's seven slices), as torchmetrics' LearnedPerceptualImagePatchSimilarity(
net_type='squeeze') runs it (normalize=False, inputs in [-1,1], mean over the batch). The inputs are prepared as
PnPInversion's matrics_calculator.calculate_lpips does: uint8/255 * mask, then *2-1.

Run: ../shared/reference/py scripts/goldens/make_lpips_goldens.py tests/Elect.Tests/Data/metrics/lpips-squeeze
"""
import os
import sys
import numpy as np
import torch
import torchvision
from safetensors.torch import save_file


def normalize_tensor(in_feat, eps=1e-10):
    norm_factor = torch.sqrt(torch.sum(in_feat ** 2, dim=1, keepdim=True))
    return in_feat / (norm_factor + eps)


def spatial_average(in_tens, keepdim=True):
    return in_tens.mean([2, 3], keepdim=keepdim)


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    net = torchvision.models.squeezenet1_1(weights=None)
    sd = {k: v.half() for k, v in net.state_dict().items()}
    torch.save(sd, os.path.join(out, "squeezenet1_1.pth"))
    net.load_state_dict({k: v.float() for k, v in sd.items()})
    net.eval()
    features = net.features
    slices = [range(0, 2), range(2, 5), range(5, 8), range(8, 10), range(10, 11), range(11, 12), range(12, 13)]
    chns = [64, 128, 256, 384, 384, 512, 512]
    lins = {f"lin{k}.model.1.weight": (torch.rand(1, c, 1, 1) * 0.1).half() for k, c in enumerate(chns)}
    torch.save(lins, os.path.join(out, "squeeze.pth"))
    shift = torch.Tensor([-.030, -.088, -.188])[None, :, None, None]
    scale = torch.Tensor([.458, .448, .450])[None, :, None, None]

    def net_forward(x):
        outs = []
        h = x
        for s in slices:
            for i in s:
                h = features[i](h)
            outs.append(h)
        return outs

    def lpips(in0, in1):
        in0_input, in1_input = (in0 - shift) / scale, (in1 - shift) / scale
        outs0, outs1 = net_forward(in0_input), net_forward(in1_input)
        res = []
        for kk in range(len(chns)):
            feats0, feats1 = normalize_tensor(outs0[kk]), normalize_tensor(outs1[kk])
            diff = (feats0 - feats1) ** 2
            res.append(spatial_average(torch.nn.functional.conv2d(diff, lins[f"lin{kk}.model.1.weight"].float()), keepdim=True))
        val = res[0]
        for r in res[1:]:
            val = val + r
        return val

    rng = np.random.default_rng(7)
    h = w = 64
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([(xx * 3 + yy) % 256, (yy * 4) % 256, (xx * 2 + 30) % 256], axis=2).astype(np.float64)
    src = np.round(smooth).astype(np.uint8)
    tgt = np.round(np.clip(smooth + rng.normal(0, 20, (h, w, 3)), 0, 255)).astype(np.uint8)
    mask = np.zeros((h, w, 3), np.float32)
    mask[20:40, 10:50] = 1
    tensors = {"src": torch.tensor(src), "tgt": torch.tensor(tgt), "mask": torch.tensor(mask[:, :, 0].copy())}
    with torch.no_grad():
        for name, m in (("whole", None), ("unedit", 1 - mask)):
            a = src.astype(np.float32) / 255
            b = tgt.astype(np.float32) / 255
            if m is not None:
                a, b = a * m, b * m
            ta = torch.tensor(a).permute(2, 0, 1).unsqueeze(0)
            tb = torch.tensor(b).permute(2, 0, 1).unsqueeze(0)
            # calculate_lpips(src_image, tgt_image): lpips(img_pred*2-1, img_gt*2-1); torchmetrics: sum / count
            v = lpips(ta * 2 - 1, tb * 2 - 1)
            tensors[f"lpips.{name}"] = (v.sum() / v.shape[0]).reshape(1).double()
            print(name, float(tensors[f"lpips.{name}"]))
    save_file(tensors, os.path.join(out, "golden.safetensors"))


if __name__ == "__main__":
    main(sys.argv[1])
