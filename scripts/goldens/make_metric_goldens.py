"""Goldens for elect's PIE-Bench pixel metrics (tests/Elect.Tests/Data/metrics/pixel-metrics.safetensors).

torchmetrics is not installed in the reference chroot, so its formulas are re-expressed here line by line
(torchmetrics 1.x functional/image/psnr.py `_psnr_update/_psnr_compute`, functional/regression/mse.py,
functional/image/ssim.py `_ssim_update` with `_gaussian`/`_gaussian_kernel_2d`), in float32 as the modules run,
and the masking is cure-lab/PnPInversion evaluation/evaluate.py `mask_decode` + matrics_calculator.py
(`np.array(img).astype(np.float32)/255 * mask`, then the metric over the whole image).

Run: ../shared/reference/py scripts/goldens/make_metric_goldens.py tests/Elect.Tests/Data/metrics/pixel-metrics.safetensors
"""
import sys
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file


def mask_decode(encoded_mask, image_shape):  # PnPInversion evaluate.py, any shape
    length = image_shape[0] * image_shape[1]
    mask_array = np.zeros((length,))
    for i in range(0, len(encoded_mask), 2):
        splice_len = min(encoded_mask[i + 1], length - encoded_mask[i])
        for j in range(splice_len):
            mask_array[encoded_mask[i] + j] = 1
    mask_array = mask_array.reshape(image_shape[0], image_shape[1])
    mask_array[0, :] = 1
    mask_array[-1, :] = 1
    mask_array[:, 0] = 1
    mask_array[:, -1] = 1
    return mask_array


def to_tensor(img, mask=None):  # matrics_calculator.calculate_psnr's preparation
    x = img.astype(np.float32) / 255
    if mask is not None:
        x = x * mask.astype(np.float32)
    return torch.tensor(x).permute(2, 0, 1).unsqueeze(0)


def psnr(preds, target, data_range=1.0):  # _psnr_update + _psnr_compute (base 10)
    sum_squared_error = torch.sum(torch.pow(preds - target, 2))
    num_obs = torch.tensor(target.numel(), device=target.device)
    data_range = torch.tensor(data_range)
    psnr_base_e = 2 * torch.log(data_range) - torch.log(sum_squared_error / num_obs)
    return psnr_base_e * (10 / torch.log(torch.tensor(10.0)))


def mse(preds, target):  # _mean_squared_error_update + compute
    diff = preds - target
    return torch.sum(diff * diff) / target.numel()


def _gaussian(kernel_size, sigma, dtype):
    dist = torch.arange(start=(1 - kernel_size) / 2, end=(1 + kernel_size) / 2, step=1, dtype=dtype)
    gauss = torch.exp(-torch.pow(dist / sigma, 2) / 2)
    return (gauss / gauss.sum()).unsqueeze(dim=0)


def _gaussian_kernel_2d(channel, kernel_size, sigma, dtype):
    gaussian_kernel_x = _gaussian(kernel_size[0], sigma[0], dtype)
    gaussian_kernel_y = _gaussian(kernel_size[1], sigma[1], dtype)
    kernel = torch.matmul(gaussian_kernel_x.t(), gaussian_kernel_y)
    return kernel.expand(channel, 1, kernel_size[0], kernel_size[1])


def ssim(preds, target, data_range=1.0, kernel_size=11, sigma=1.5, k1=0.01, k2=0.03):  # _ssim_update, gaussian
    gauss_kernel_size = [kernel_size, kernel_size]
    sigma = [sigma, sigma]
    c1 = pow(k1 * data_range, 2)
    c2 = pow(k2 * data_range, 2)
    channel = preds.size(1)
    dtype = preds.dtype
    pad_h = (gauss_kernel_size[0] - 1) // 2
    pad_w = (gauss_kernel_size[1] - 1) // 2
    kernel = _gaussian_kernel_2d(channel, gauss_kernel_size, sigma, dtype)
    preds = F.pad(preds, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    target = F.pad(target, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    input_list = torch.cat((preds, target, preds * preds, target * target, preds * target))
    outputs = F.conv2d(input_list, kernel, groups=channel)
    output_list = outputs.split(preds.shape[0])
    mu_pred_sq = output_list[0].pow(2)
    mu_target_sq = output_list[1].pow(2)
    mu_pred_target = output_list[0] * output_list[1]
    sigma_pred_sq = output_list[2] - mu_pred_sq
    sigma_target_sq = output_list[3] - mu_target_sq
    sigma_pred_target = output_list[4] - mu_pred_target
    upper = 2 * sigma_pred_target.to(dtype) + c2
    lower = (sigma_pred_sq + sigma_target_sq).to(dtype) + c2
    ssim_idx_full_image = ((2 * mu_pred_target + c1) * upper) / ((mu_pred_sq + mu_target_sq + c1) * lower)
    ssim_idx = ssim_idx_full_image[..., pad_h:-pad_h, pad_w:-pad_w]
    return ssim_idx.reshape(ssim_idx.shape[0], -1).mean(-1).mean()


def main(out):
    rng = np.random.default_rng(1234)
    h = w = 96
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([(xx * 2 + yy) % 256, (yy * 3) % 256, (xx + 40) % 256], axis=2).astype(np.float64)
    pairs = {
        "noise": (rng.integers(0, 256, (h, w, 3)), rng.integers(0, 256, (h, w, 3))),
        "edit": (smooth, np.clip(smooth + rng.normal(0, 12, (h, w, 3)) + (xx[..., None] > 50) * 60, 0, 255)),
    }
    rle = [1000, 900, 4000, 1200, 7000, 37]
    mask = mask_decode(rle, [h, w])[:, :, np.newaxis].repeat([3], axis=2)
    tensors = {"rle": torch.tensor(rle, dtype=torch.int32)}
    for name, (a, b) in pairs.items():
        a = np.round(a).astype(np.uint8)
        b = np.round(b).astype(np.uint8)
        tensors[f"{name}.src"] = torch.tensor(a)
        tensors[f"{name}.tgt"] = torch.tensor(b)
        for part, m in (("", None), ("_unedit_part", 1 - mask), ("_edit_part", mask)):
            s, t = to_tensor(a, m), to_tensor(b, m)
            # the reference's argument order: calculate_psnr(src_image, tgt_image) -> metric(img_pred=src, img_gt=tgt)
            tensors[f"{name}.psnr{part}"] = psnr(s, t).reshape(1).double()
            tensors[f"{name}.mse{part}"] = mse(s, t).reshape(1).double()
            tensors[f"{name}.ssim{part}"] = ssim(s, t).reshape(1).double()
    save_file(tensors, out)
    for k, v in tensors.items():
        if v.numel() == 1:
            print(k, float(v))


if __name__ == "__main__":
    main(sys.argv[1])
